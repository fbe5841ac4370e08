//! Tier: unit (docs/testing.md). Outcome rules, and the scheduling logic on a fake jail
//! (`FakeJail`, below); the pipeline on real jails runs in the privileged tests.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicUsize;

use super::*;
use crate::job::{JobFile, Params, Usage};
use crate::profile::plan::{Limits, StderrFilter, Step};
use crate::profile::{ProbeError, embedded_profiles};

fn plan() -> Plan {
    let limits = Limits {
        cpu: Duration::from_secs(1),
        wall: Duration::from_secs(2),
        memory_bytes: 1 << 20,
        disk_bytes: 1 << 20,
        stream_bytes: 1 << 20,
        procs: 1,
    };
    Plan {
        files: vec![],
        compile: None,
        cmpinfo: CmpinfoRule::Stderr {
            stdout_separator: None,
        },
        run: Step {
            argv: vec!["./prog".into()],
            env: vec![],
            limits,
        },
        stderr_filter: StderrFilter::default(),
        stdin: None,
        seccomp: "default".into(),
        extra_ro_paths: vec![],
    }
}

fn out(end: End, stderr: &str) -> JailOutput {
    JailOutput {
        stdout: b"partial".to_vec(),
        stdout_truncated: false,
        stderr: stderr.as_bytes().to_vec(),
        end,
        usage: Usage::default(),
        ebpf: None,
    }
}

#[test]
fn test_success_ignores_exit_status() {
    let r = verdict(&plan(), out(End::Exited(3), ""));
    assert_eq!(r.outcome, Outcome::Success);
}

#[test]
fn test_stderr_means_runtime_error() {
    let r = verdict(&plan(), out(End::Exited(0), "warning\n"));
    assert_eq!(r.outcome, Outcome::RuntimeError);
}

#[test]
fn test_time_limit_blanks_stderr_keeps_stdout() {
    for end in [End::CpuTime, End::WallTime] {
        let r = verdict(&plan(), out(end, "noise"));
        assert_eq!(r.outcome, Outcome::TimeLimit);
        assert!(r.stderr.is_empty());
        assert_eq!(r.stdout, b"partial");
    }
}

#[test]
fn test_segfault_message_like_sh() {
    let r = verdict(&plan(), out(End::Signaled(libc::SIGSEGV), ""));
    assert_eq!(r.outcome, Outcome::RuntimeError);
    assert_eq!(r.stderr, b"Segmentation fault\n");
}

#[test]
fn test_memory_and_syscall_outcomes() {
    assert_eq!(
        verdict(&plan(), out(End::Memory, "")).outcome,
        Outcome::MemoryLimit
    );
    let r = verdict(&plan(), out(End::Syscall("ptrace".into()), ""));
    assert_eq!(r.outcome, Outcome::IllegalSyscall);
    assert_eq!(r.stderr, b"Illegal system call: ptrace\n");
}

#[test]
fn test_exec_failure_is_runtime_error() {
    let r = verdict(&plan(), out(End::ExecFailed(libc::ENOENT), ""));
    assert_eq!(r.outcome, Outcome::RuntimeError);
    assert!(String::from_utf8_lossy(&r.stderr).starts_with("./prog: No such file"));
}

#[test]
fn test_compile_failure_messages() {
    assert!(compile_failure_message(&End::CpuTime).contains("time limit"));
    assert!(compile_failure_message(&End::Exited(1)).contains("exit status 1"));
}

// ---------------------------------------------------------------------------------------
// The scheduling logic on a fake jail.

/// What the fake jail was asked, in order.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    RunDir {
        slot: usize,
        size: u64,
    },
    Write {
        name: String,
    },
    Spawn {
        slot: usize,
        argv0: String,
        stdin: Option<Vec<u8>>,
    },
}

/// Answers the scheduler as a jail would, without one: it records what it is asked and
/// returns what the test queued. It runs nothing and decides nothing.
#[derive(Default)]
struct FakeJail {
    calls: Arc<Mutex<Vec<Call>>>,
    /// What the next `spawn`s return, in order; an empty clean exit once none is left.
    outputs: Mutex<VecDeque<Result<JailOutput, JailError>>>,
    /// Set: every `spawn` waits for a permit before it returns (the test lets steps end).
    gate: Option<Arc<Semaphore>>,
    fail_run_dir: bool,
    fail_write: bool,
    /// Run directories not dropped yet.
    live_dirs: Arc<AtomicUsize>,
    /// Steps that returned.
    finished: AtomicUsize,
}

struct FakeDir {
    calls: Arc<Mutex<Vec<Call>>>,
    files: Mutex<HashMap<String, Vec<u8>>>,
    fail_write: bool,
    live: Arc<AtomicUsize>,
}

impl Drop for FakeDir {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl RunFiles for FakeDir {
    fn write_file(&self, name: &str, contents: &[u8]) -> Result<(), JailError> {
        if self.fail_write {
            return Err(JailError::Nul);
        }
        self.calls.lock().unwrap().push(Call::Write {
            name: name.to_owned(),
        });
        self.files
            .lock()
            .unwrap()
            .insert(name.to_owned(), contents.to_vec());
        Ok(())
    }

    fn read_file(&self, name: &str, limit: u64) -> Option<Vec<u8>> {
        let files = self.files.lock().unwrap();
        let data = files.get(name)?;
        Some(data[..data.len().min(limit as usize)].to_vec())
    }

    fn has_file(&self, name: &str) -> bool {
        self.files.lock().unwrap().contains_key(name)
    }
}

impl Sandbox for FakeJail {
    type Slot = usize;
    type RunDir = FakeDir;

    fn create_run_dir(
        &self,
        slot: &usize,
        _name: &str,
        size_bytes: u64,
    ) -> Result<FakeDir, JailError> {
        if self.fail_run_dir {
            return Err(JailError::EmptyCommand);
        }
        self.calls.lock().unwrap().push(Call::RunDir {
            slot: *slot,
            size: size_bytes,
        });
        self.live_dirs.fetch_add(1, Ordering::SeqCst);
        Ok(FakeDir {
            calls: self.calls.clone(),
            files: Mutex::new(HashMap::new()),
            fail_write: self.fail_write,
            live: self.live_dirs.clone(),
        })
    }

    fn spawn(
        &self,
        spec: JailSpec<'_, FakeDir, usize>,
    ) -> impl Future<Output = Result<JailOutput, JailError>> + Send {
        self.calls.lock().unwrap().push(Call::Spawn {
            slot: *spec.slot,
            argv0: spec.step.argv[0].clone(),
            stdin: spec.stdin.map(<[u8]>::to_vec),
        });
        let out = self
            .outputs
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Ok(jail_out(End::Exited(0), "", "")));
        let gate = self.gate.clone();
        async move {
            if let Some(gate) = gate {
                gate.acquire().await.expect("gate open").forget();
            }
            self.finished.fetch_add(1, Ordering::SeqCst);
            out
        }
    }
}

fn jail_out(end: End, stdout: &str, stderr: &str) -> JailOutput {
    JailOutput {
        stdout: stdout.as_bytes().to_vec(),
        stdout_truncated: false,
        stderr: stderr.as_bytes().to_vec(),
        end,
        usage: Usage::default(),
        ebpf: None,
    }
}

/// The shipped profiles, all "installed" (no toolchain is probed).
fn registry() -> Registry {
    let probe = |_: &[String]| -> Result<String, ProbeError> { Ok("1.0".to_owned()) };
    Registry::from_profiles(embedded_profiles().expect("profiles"), &probe)
}

const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

fn sched_with(jail: FakeJail, slots: usize, max_queue: usize) -> Scheduler<FakeJail> {
    let cfg = SchedConfig {
        queue_timeout: QUEUE_TIMEOUT,
        max_queue,
        plan: PlanConfig::default(),
    };
    Scheduler::new(registry(), Arc::new(jail), (0..slots).collect(), cfg)
}

fn gated() -> (FakeJail, Arc<Semaphore>) {
    let gate = Arc::new(Semaphore::new(0));
    let jail = FakeJail {
        gate: Some(gate.clone()),
        ..FakeJail::default()
    };
    (jail, gate)
}

fn job(lang: &str, source: &str, input: &str) -> Job {
    Job {
        language: lang.to_owned(),
        source: source.to_owned(),
        source_name: None,
        input: input.to_owned(),
        files: vec![],
        params: Params::default(),
        debug: false,
        details: false,
    }
}

fn calls(s: &Scheduler<FakeJail>) -> Vec<Call> {
    s.inner.jail.calls.lock().unwrap().clone()
}

fn spawned(s: &Scheduler<FakeJail>) -> Vec<String> {
    calls(s)
        .into_iter()
        .filter_map(|c| match c {
            Call::Spawn { argv0, .. } => Some(argv0),
            _ => None,
        })
        .collect()
}

/// Waits (bounded) until `cond` holds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn all_slots_free(s: &Scheduler<FakeJail>) -> bool {
    let l = s.load();
    l.free == l.slots && s.inner.free.lock().unwrap().len() == l.slots
}

#[tokio::test]
async fn test_compile_failure_is_outcome_11_without_run_step() {
    let jail = FakeJail::default();
    jail.outputs.lock().unwrap().push_back(Ok(jail_out(
        End::Exited(1),
        "",
        "prog.c:1: error: expected ';'\n",
    )));
    let s = sched_with(jail, 1, 4);
    let r = s.run(job("c", "int main(void) { return 0 }", "")).await;
    let r = r.expect("a result");
    assert_eq!(r.outcome, Outcome::CompilationError);
    assert_eq!(r.cmpinfo, b"prog.c:1: error: expected ';'\n");
    assert!(r.stdout.is_empty() && r.stderr.is_empty());
    assert_eq!(spawned(&s), ["/usr/bin/gcc"], "no run step");
    assert!(all_slots_free(&s));
    assert_eq!(s.inner.jail.live_dirs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn test_compile_failure_without_cmpinfo_says_why() {
    let jail = FakeJail::default();
    jail.outputs
        .lock()
        .unwrap()
        .push_back(Ok(jail_out(End::Syscall("ptrace".into()), "", "")));
    let s = sched_with(jail, 1, 4);
    let r = s.run(job("c", "int main(void) {}", "")).await.unwrap();
    assert_eq!(r.outcome, Outcome::IllegalSyscall);
    assert_eq!(
        r.cmpinfo,
        b"Compilation failed: illegal system call: ptrace\n"
    );
    assert_eq!(spawned(&s), ["/usr/bin/gcc"]);
}

#[tokio::test]
async fn test_compile_ok_then_run_on_the_same_slot_and_dir() {
    let jail = FakeJail::default();
    jail.outputs.lock().unwrap().extend([
        Ok(jail_out(End::Exited(0), "", "")),
        Ok(jail_out(End::Exited(0), "hi\n", "")),
    ]);
    let s = sched_with(jail, 1, 4);
    let mut j = job("c", "int main(void) {}", "42\n");
    j.files = vec![JobFile {
        name: "data.txt".into(),
        contents: b"x".to_vec(),
    }];
    let r = s.run(j).await.unwrap();
    assert_eq!(r.outcome, Outcome::Success);
    assert_eq!(r.stdout, b"hi\n");
    let c = calls(&s);
    let size = match c[0] {
        Call::RunDir { slot: 0, size } => size,
        ref other => panic!("first call {other:?}"),
    };
    assert!(size > 0);
    // The request's files before the compile step; stdin only for the run step.
    let mut writes: Vec<&Call> = c[1..3].iter().collect();
    writes.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        writes,
        [
            &Call::Write {
                name: "data.txt".into()
            },
            &Call::Write {
                name: "prog.c".into()
            },
        ]
    );
    assert_eq!(
        c[3..],
        [
            Call::Spawn {
                slot: 0,
                argv0: "/usr/bin/gcc".into(),
                stdin: None
            },
            Call::Spawn {
                slot: 0,
                argv0: "./prog.c.exe".into(),
                stdin: Some(b"42\n".to_vec())
            },
        ]
    );
    assert_eq!(s.inner.jail.live_dirs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn test_run_dir_sized_from_the_plan() {
    let s = sched_with(FakeJail::default(), 1, 4);
    let mb = 1_024_000u64; // Jobe's MB
    let sized = |disklimit: f64, files: Vec<JobFile>| {
        let mut j = job("c", "int main(void) {}\n", "");
        j.params.disklimit = Some(disklimit);
        j.files = files;
        j
    };
    // The compile step's minimum (20 MB) is larger than the run's 1 MB.
    s.run(sized(1.0, vec![])).await.unwrap();
    // The run's 50 MB, and each file rounded up to whole pages: the source and a 1-byte file
    // one page each, a 4097-byte file two.
    let files = vec![
        JobFile {
            name: "a".into(),
            contents: vec![b'a'; 1],
        },
        JobFile {
            name: "b".into(),
            contents: vec![b'b'; 4097],
        },
    ];
    s.run(sized(50.0, files)).await.unwrap();
    let sizes: Vec<u64> = calls(&s)
        .into_iter()
        .filter_map(|c| match c {
            Call::RunDir { size, .. } => Some(size),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, [20 * mb + 4096, 50 * mb + 4096 + 4096 + 2 * 4096]);
}

#[tokio::test]
async fn test_slot_given_back_on_every_path() {
    let internal = |r: Result<RunResult, ExecError>, what: &str| match r {
        Err(ExecError::Internal(w)) => assert_eq!(w, what),
        other => panic!("{what}: {other:?}"),
    };
    // The jail cannot make the run directory.
    let s = sched_with(
        FakeJail {
            fail_run_dir: true,
            ..FakeJail::default()
        },
        1,
        4,
    );
    internal(s.run(job("c", "x", "")).await, "create run directory");
    assert!(all_slots_free(&s));
    // … or write a file into it.
    let s = sched_with(
        FakeJail {
            fail_write: true,
            ..FakeJail::default()
        },
        1,
        4,
    );
    internal(s.run(job("c", "x", "")).await, "write job file");
    assert!(all_slots_free(&s));
    assert_eq!(s.inner.jail.live_dirs.load(Ordering::SeqCst), 0);
    // A fault in the compile step, then in the run step.
    for (what, outputs) in [
        ("compile step", vec![Err(JailError::EmptyCommand)]),
        (
            "run step",
            vec![
                Ok(jail_out(End::Exited(0), "", "")),
                Err(JailError::EmptyCommand),
            ],
        ),
    ] {
        let jail = FakeJail::default();
        jail.outputs.lock().unwrap().extend(outputs);
        let s = sched_with(jail, 1, 4);
        internal(s.run(job("c", "x", "")).await, what);
        assert!(all_slots_free(&s), "{what}");
        assert_eq!(s.inner.jail.live_dirs.load(Ordering::SeqCst), 0, "{what}");
        // The slot works for the next job.
        let r = s.run(job("nodejs", "1", "")).await.unwrap();
        assert_eq!(r.outcome, Outcome::Success, "{what}");
    }
    // Rejected before a slot: unknown language, a bad request; also when try_run had
    // already claimed one.
    let s = sched_with(FakeJail::default(), 1, 4);
    assert!(matches!(
        s.run(job("cobol", "x", "")).await,
        Err(ExecError::UnknownLanguage(_))
    ));
    let Ok(fut) = s.try_run(job("cobol", "x", "")) else {
        panic!("a slot is free");
    };
    assert!(matches!(fut.await, Err(ExecError::UnknownLanguage(_))));
    let mut bad = job("c", "x", "");
    bad.params.cputime = Some(1e9);
    assert!(matches!(s.run(bad).await, Err(ExecError::BadRequest(_))));
    assert!(all_slots_free(&s));
    assert!(calls(&s).is_empty(), "{:?}", calls(&s));
}

#[tokio::test(start_paused = true)]
async fn test_queue_full_is_outcome_21_at_once() {
    let (jail, gate) = gated();
    let s = sched_with(jail, 1, 0);
    let first = s.run(job("nodejs", "1", "a"));
    until("the first job runs", || spawned(&s).len() == 1).await;
    let t = tokio::time::Instant::now();
    let r = s.run(job("nodejs", "2", "b")).await.unwrap();
    assert_eq!(r.outcome, Outcome::ServerOverload);
    assert_eq!(
        t.elapsed(),
        Duration::ZERO,
        "no wait when the queue is full"
    );
    gate.add_permits(1);
    assert_eq!(first.await.unwrap().outcome, Outcome::Success);
    assert_eq!(spawned(&s).len(), 1, "the rejected job never ran");
}

#[tokio::test(start_paused = true)]
async fn test_queue_timeout_is_outcome_21() {
    let (jail, gate) = gated();
    let s = sched_with(jail, 1, 4);
    let first = s.run(job("nodejs", "1", "a"));
    until("the first job runs", || spawned(&s).len() == 1).await;
    let t = tokio::time::Instant::now();
    let r = s.run(job("nodejs", "2", "b")).await.unwrap();
    assert_eq!(r.outcome, Outcome::ServerOverload);
    assert_eq!(t.elapsed(), QUEUE_TIMEOUT);
    assert_eq!(s.load().queued, 0);
    gate.add_permits(1);
    assert_eq!(first.await.unwrap().outcome, Outcome::Success);
    assert_eq!(spawned(&s).len(), 1);
    assert!(all_slots_free(&s));
}

#[tokio::test]
async fn test_waiters_served_in_arrival_order() {
    let (jail, gate) = gated();
    let s = sched_with(jail, 1, 8);
    // Inputs j0…j5 tell the jobs apart (each run step gets its job's input as stdin).
    let mut runs = vec![s.run(job("nodejs", "1", "j0"))];
    until("the first job runs", || spawned(&s).len() == 1).await;
    for i in 1..=5 {
        runs.push(s.run(job("nodejs", "1", &format!("j{i}"))));
        until("the job waits", || s.load().queued == i).await;
    }
    gate.add_permits(6);
    for r in runs {
        assert_eq!(r.await.unwrap().outcome, Outcome::Success);
    }
    let order: Vec<Vec<u8>> = calls(&s)
        .into_iter()
        .filter_map(|c| match c {
            Call::Spawn { stdin, .. } => stdin,
            _ => None,
        })
        .collect();
    let want: Vec<Vec<u8>> = (0..=5).map(|i| format!("j{i}").into_bytes()).collect();
    assert_eq!(order, want);
}

#[tokio::test]
async fn test_try_run_without_a_free_slot_hands_the_job_back() {
    let (jail, gate) = gated();
    let s = sched_with(jail, 1, 4);
    let first = s.try_run(job("nodejs", "1", "a")).expect("a free slot");
    until("the first job runs", || spawned(&s).len() == 1).await;
    let back = s
        .try_run(job("nodejs", "2", "b"))
        .err()
        .expect("no free slot: the job comes back");
    assert_eq!((back.source.as_str(), back.input.as_str()), ("2", "b"));
    assert_eq!(s.load().queued, 0, "it did not queue");
    gate.add_permits(1);
    assert_eq!(first.await.unwrap().outcome, Outcome::Success);
    assert_eq!(spawned(&s).len(), 1);
    assert!(all_slots_free(&s));
}

#[tokio::test]
async fn test_dropped_client_future_does_not_cancel_the_job() {
    let (jail, gate) = gated();
    let s = sched_with(jail, 1, 4);
    // The client goes away at once, before the job even has its slot.
    drop(s.run(job("c", "int main(void) {}", "")));
    gate.add_permits(2);
    let jail = s.inner.jail.clone();
    until("both steps ran", || {
        jail.finished.load(Ordering::SeqCst) == 2
    })
    .await;
    until("the slot is back", || all_slots_free(&s)).await;
    assert_eq!(spawned(&s), ["/usr/bin/gcc", "./prog.c.exe"]);
    assert_eq!(jail.live_dirs.load(Ordering::SeqCst), 0);
}
