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
        address_space_bytes: None,
    };
    Plan {
        files: vec![],
        compile: None,
        deferred: None,
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
    /// Run directories not dropped yet, and the most there ever were at once.
    live_dirs: Arc<AtomicUsize>,
    max_live_dirs: AtomicUsize,
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

    fn snapshot_to(&self, to: &std::path::Path) -> Result<u64, JailError> {
        let mut bytes = 0;
        for (name, data) in self.files.lock().unwrap().iter() {
            std::fs::write(to.join(name), data).map_err(|_| JailError::Nul)?;
            bytes += data.len() as u64;
        }
        Ok(bytes)
    }

    fn restore_from(&self, from: &std::path::Path) -> Result<(), JailError> {
        for e in std::fs::read_dir(from).map_err(|_| JailError::Nul)? {
            let e = e.map_err(|_| JailError::Nul)?;
            let data = std::fs::read(e.path()).map_err(|_| JailError::Nul)?;
            self.write_file(&e.file_name().to_string_lossy(), &data)?;
        }
        Ok(())
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
        let live = self.live_dirs.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_live_dirs.fetch_max(live, Ordering::SeqCst);
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

// ---------------------------------------------------------------------------------------
// The deferred check (python3 and php: run first, check only when the run says so).

/// Runs `j` on a fake jail answering `outputs` in order; the result, the spawns as (argv0,
/// whether it got the job's stdin, i.e. is the run step) and the metrics text.
async fn deferred(j: Job, outputs: Vec<JailOutput>) -> (RunResult, Vec<(String, bool)>, String) {
    let jail = FakeJail::default();
    jail.outputs
        .lock()
        .unwrap()
        .extend(outputs.into_iter().map(Ok));
    let s = sched_with(jail, 1, 4);
    let r = s.run(j).await.expect("a result");
    let steps = calls(&s)
        .into_iter()
        .filter_map(|c| match c {
            Call::Spawn { argv0, stdin, .. } => Some((argv0, stdin.is_some())),
            _ => None,
        })
        .collect();
    assert!(all_slots_free(&s));
    assert_eq!(s.inner.jail.live_dirs.load(Ordering::SeqCst), 0);
    // The check gets a fresh run directory, made after the run's was removed.
    assert_eq!(s.inner.jail.max_live_dirs.load(Ordering::SeqCst), 1);
    (r, steps, s.metrics().render())
}

fn counted(metrics: &str, result: &str) -> bool {
    metrics.contains(&format!(
        "runner_deferred_checks_total{{result=\"{result}\"}} 1"
    ))
}

const PY: &str = "/usr/bin/python3";
const PHP: &str = "/usr/bin/php";

#[tokio::test]
async fn test_deferred_clean_run_is_one_step() {
    for lang in ["python3", "php"] {
        let (r, steps, m) = deferred(
            job(lang, "x", "in"),
            vec![jail_out(End::Exited(0), "hello\n", "")],
        )
        .await;
        assert_eq!(
            (r.outcome, r.stdout.as_slice()),
            (Outcome::Success, &b"hello\n"[..])
        );
        let argv0 = if lang == "php" { PHP } else { PY };
        assert_eq!(steps, [(argv0.to_owned(), true)], "{lang}: the run alone");
        assert!(counted(&m, "skipped"), "{lang}: {m}");
    }
}

#[tokio::test]
async fn test_deferred_check_failure_is_outcome_11_with_its_cmpinfo() {
    let syntax = "  File \"/home/jobe/runs/jobe_x/prog.py\", line 1\n    x = (\n        ^\nSyntaxError: '(' was never closed\n";
    let checked =
        "  File \"prog.py\", line 1\n    x = (\n        ^\nSyntaxError: '(' was never closed\n";
    let (r, steps, m) = deferred(
        job("python3", "x = (\n", "in"),
        vec![
            jail_out(End::Exited(1), "", syntax),
            jail_out(End::Exited(1), "", checked),
        ],
    )
    .await;
    assert_eq!(r.outcome, Outcome::CompilationError);
    assert_eq!(
        r.cmpinfo,
        checked.as_bytes(),
        "the check's words, not the run's"
    );
    assert!(r.stdout.is_empty() && r.stderr.is_empty());
    assert_eq!(steps, [(PY.to_owned(), true), (PY.to_owned(), false)]);
    assert!(counted(&m, "failed"), "{m}");
}

#[tokio::test]
async fn test_deferred_check_that_passes_keeps_the_run_verdict() {
    // A program that prints a fake syntax error itself: the check finds none.
    let fake = "  File \"prog.py\", line 1\nSyntaxError: invalid syntax\n";
    let (r, steps, m) = deferred(
        job("python3", "import sys; sys.exit(...)", "in"),
        vec![
            jail_out(End::Exited(1), "out\n", fake),
            jail_out(End::Exited(0), "", ""),
        ],
    )
    .await;
    assert_eq!(r.outcome, Outcome::RuntimeError);
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice()),
        (&b"out\n"[..], fake.as_bytes())
    );
    assert!(r.cmpinfo.is_empty());
    assert_eq!(steps.len(), 2);
    assert!(counted(&m, "passed"), "{m}");
}

#[tokio::test]
async fn test_deferred_check_runs_after_limits_and_exit_status() {
    for end in [
        End::CpuTime,
        End::Memory,
        End::Signaled(libc::SIGSEGV),
        End::Exited(3),
    ] {
        let (r, steps, _) = deferred(
            job("python3", "x", "in"),
            vec![
                jail_out(end.clone(), "", ""),
                jail_out(End::Exited(0), "", ""),
            ],
        )
        .await;
        assert_eq!(steps.len(), 2, "{end:?}: checked");
        assert_ne!(r.outcome, Outcome::CompilationError, "{end:?}");
    }
}

/// A run that ended as `end` after `cpu_secs` of CPU time.
fn killed_out(end: End, cpu_secs: f64, stdout: &str, stderr: &str) -> JailOutput {
    let mut out = jail_out(end, stdout, stderr);
    out.usage.cpu_secs = cpu_secs;
    out
}

#[tokio::test]
async fn test_killed_run_that_got_past_compiling_is_not_checked() {
    // The shipped bound: 60 ms + 20 ms per started KiB of main source (80 ms here), up to
    // 16 KiB.
    for lang in ["python3", "php"] {
        for (end, cpu, stdout) in [
            (End::CpuTime, 0.1, ""),
            (End::WallTime, 0.081, ""),
            (End::Memory, 0.5, ""),
            (End::Signaled(libc::SIGSEGV), 0.09, ""),
            (End::Syscall("ptrace".into()), 1.0, ""),
            (End::Exited(3), 0.1, ""),
            // Output proves it too, whatever the CPU time.
            (End::WallTime, 0.0, "started\n"),
            (End::Signaled(libc::SIGKILL), 0.001, "x"),
        ] {
            let (r, steps, m) = deferred(
                job(lang, "x", "in"),
                vec![killed_out(end.clone(), cpu, stdout, "")],
            )
            .await;
            assert_eq!(
                steps.len(),
                1,
                "{lang} {end:?} {cpu} {stdout:?}: not checked"
            );
            assert!(counted(&m, "skipped"), "{lang} {end:?}: {m}");
            assert_ne!(r.outcome, Outcome::CompilationError);
        }
    }
}

#[tokio::test]
async fn test_killed_run_that_may_have_died_compiling_is_checked() {
    let big = "#".repeat(16 * 1024 + 1);
    let kib8 = "#".repeat(8 * 1024);
    for lang in ["python3", "php"] {
        let cases: [(&str, End, f64, &str, &str); 6] = [
            // Not enough CPU time for the source's size (60 ms + 20 ms per KiB).
            ("x", End::CpuTime, 0.059, "", ""),
            (&kib8, End::CpuTime, 0.2, "", ""),
            // Too large a source for the bound, however long it ran.
            (&big, End::CpuTime, 100.0, "", ""),
            // A word on stderr, or a diagnostic on stdout, or cut output.
            ("x", End::CpuTime, 1.0, "", "warning\n"),
            ("x", End::CpuTime, 1.0, "\nWarning: w in x on line 1\n", ""),
            ("x", End::CpuTime, 1.0, "", ""),
        ];
        for (i, (src, end, cpu, stdout, stderr)) in cases.into_iter().enumerate() {
            let mut j = job(lang, src, "in");
            if i == 5 {
                // A run cut at its stream limit vouches for nothing.
                j.params.streamsize = Some(0.0);
            }
            let (_, steps, m) = deferred(
                j,
                vec![
                    killed_out(end.clone(), cpu, stdout, stderr),
                    jail_out(End::Exited(0), "", ""),
                ],
            )
            .await;
            if lang == "python3" && i == 4 {
                // python3 has no stdout diagnostic: output proves the source compiled.
                assert_eq!(steps.len(), 1, "{lang} case {i}");
                continue;
            }
            assert_eq!(steps.len(), 2, "{lang} case {i}: checked");
            assert!(counted(&m, "passed"), "{lang} case {i}: {m}");
        }
    }
    // A memory limit too small for the bound (near it, reclaim burns CPU time).
    let mut j = job("python3", "x", "in");
    j.params.memorylimit = Some(50.0);
    let (_, steps, _) = deferred(
        j,
        vec![
            killed_out(End::Memory, 1.0, "", ""),
            jail_out(End::Exited(0), "", ""),
        ],
    )
    .await;
    assert_eq!(steps.len(), 2, "memory limit below 64 MB: checked");
}

#[tokio::test]
async fn test_python_traceback_proves_the_source_compiled() {
    let tb = "Traceback (most recent call last):\n  File \"x\", line 1, in <module>\nZeroDivisionError: division by zero\n";
    let (r, steps, m) = deferred(
        job("python3", "1/0", "in"),
        vec![jail_out(End::Exited(1), "", tb)],
    )
    .await;
    assert_eq!(
        (r.outcome, r.stderr.as_slice()),
        (Outcome::RuntimeError, tb.as_bytes())
    );
    assert_eq!(steps.len(), 1, "no check");
    assert!(counted(&m, "skipped"), "{m}");
    // A warning printed before the traceback means the compile spoke: checked.
    let warned = format!("prog.py:1: SyntaxWarning: \"is\" with a literal\n{tb}");
    let (_, steps, _) = deferred(
        job("python3", "1/0", "in"),
        vec![jail_out(End::Exited(1), "", &warned)],
    )
    .await;
    assert_eq!(steps.len(), 2);
}

#[tokio::test]
async fn test_php_diagnostic_on_stdout_is_checked() {
    let warning = "\nWarning: \"continue\" targeting switch is equivalent to \"break\" in /x/prog.php on line 2\nx\n";
    let lint = "PHP Warning:  \"continue\" targeting switch is equivalent to \"break\" in prog.php on line 2\n";
    let (r, steps, _) = deferred(
        job("php", "<?php ...", "in"),
        vec![
            jail_out(End::Exited(0), warning, ""),
            jail_out(
                End::Exited(0),
                "No syntax errors detected in prog.php\n",
                lint,
            ),
        ],
    )
    .await;
    assert_eq!(r.outcome, Outcome::CompilationError);
    assert_eq!(
        r.cmpinfo,
        format!("No syntax errors detected in prog.php\n\n{lint}").as_bytes()
    );
    assert_eq!(steps, [(PHP.to_owned(), true), (PHP.to_owned(), false)]);
    // Ordinary output that merely starts with a newline is not a diagnostic.
    let (r, steps, _) = deferred(
        job("php", "<?php echo \"\\nok\";", "in"),
        vec![jail_out(End::Exited(0), "\nok", "")],
    )
    .await;
    assert_eq!((r.outcome, steps.len()), (Outcome::Success, 1));
}

#[tokio::test]
async fn test_two_step_order_when_not_deferred() {
    // The client's own interpreter arguments: the check runs first, as Jobe.
    let mut j = job("python3", "print(1)", "in");
    j.params.interpreterargs = Some(vec!["-W".into(), "ignore".into()]);
    let (_, steps, m) = deferred(j, vec![]).await;
    assert_eq!(steps, [(PY.to_owned(), false), (PY.to_owned(), true)]);
    for result in ["skipped", "passed", "failed"] {
        assert!(
            m.contains(&format!(
                "runner_deferred_checks_total{{result=\"{result}\"}} 0"
            )),
            "not a deferred run: {m}"
        );
    }
    // A support file the check would import from the run directory.
    let mut j = job("python3", "print(1)", "in");
    j.files = vec![JobFile {
        name: "argparse.py".into(),
        contents: b"raise SystemExit('x')".to_vec(),
    }];
    let (_, steps, _) = deferred(j, vec![]).await;
    assert_eq!(steps, [(PY.to_owned(), false), (PY.to_owned(), true)]);
}

/// A scheduler with a compile cache in `dir`.
fn cached_sched(jail: FakeJail, slots: usize, dir: &std::path::Path) -> Scheduler<FakeJail> {
    let s = sched_with(jail, slots, 8);
    let cache = CompileCache::open(dir.join("cc"), 1 << 20).expect("open the cache");
    s.set_compile_cache(Arc::new(cache));
    s
}

fn cache_lookups(s: &Scheduler<FakeJail>) -> String {
    s.metrics()
        .render()
        .lines()
        .filter(|l| {
            l.starts_with("runner_compile_cache_") && !l.starts_with("runner_compile_cache_bytes")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn test_compile_cache_hit_skips_the_compile_step() {
    let tmp = tempfile::tempdir().unwrap();
    let jail = FakeJail::default();
    jail.outputs.lock().unwrap().extend([
        Ok(jail_out(End::Exited(0), "", "")),
        Ok(jail_out(End::Exited(0), "hi\n", "")),
        Ok(jail_out(End::Exited(0), "hi\n", "")),
    ]);
    let s = cached_sched(jail, 1, tmp.path());
    let first = s.run(job("c", "int main(void) {}", "")).await.unwrap();
    let second = s.run(job("c", "int main(void) {}", "")).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(
        spawned(&s),
        ["/usr/bin/gcc", "./prog.c.exe", "./prog.c.exe"]
    );
    let m = cache_lookups(&s);
    assert!(
        m.contains("runner_compile_cache_hits_total{lang=\"c\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("runner_compile_cache_misses_total{lang=\"c\"} 1"),
        "{m}"
    );
    assert!(m.contains("runner_compile_cache_entries 1"), "{m}");
    assert_eq!(s.inner.jail.live_dirs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn test_compile_cache_keeps_exited_failures_not_killed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let jail = FakeJail::default();
    jail.outputs.lock().unwrap().extend([
        Ok(jail_out(
            End::Exited(1),
            "",
            "prog.c:1: error: expected ';'\n",
        )),
        Ok(jail_out(End::CpuTime, "", "")),
        Ok(jail_out(End::CpuTime, "", "")),
    ]);
    let s = cached_sched(jail, 1, tmp.path());
    let bad = "int main(void) { return 0 }";
    let first = s.run(job("c", bad, "")).await.unwrap();
    let second = s.run(job("c", bad, "")).await.unwrap();
    assert_eq!(first.outcome, Outcome::CompilationError);
    assert_eq!(second.cmpinfo, first.cmpinfo);
    assert_eq!(second.outcome, first.outcome);
    assert_eq!(
        spawned(&s),
        ["/usr/bin/gcc"],
        "a repeated syntax error compiles nothing"
    );
    // A compile killed by a limit is never kept: it runs again.
    let slow = "int main(void) { return 1; }";
    for _ in 0..2 {
        let r = s.run(job("c", slow, "")).await.unwrap();
        assert_eq!(r.outcome, Outcome::CompilationError);
    }
    assert_eq!(spawned(&s), ["/usr/bin/gcc"; 3]);
}

#[tokio::test]
async fn test_compile_cache_single_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let (jail, gate) = gated();
    let s = cached_sched(jail, 4, tmp.path());
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.run(job("c", "int main(void) {}", "")).await })
        })
        .collect();
    until("the leader compiles", || spawned(&s).len() == 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        spawned(&s),
        ["/usr/bin/gcc"],
        "the others wait for the leader"
    );
    gate.add_permits(100);
    for r in runs {
        assert_eq!(r.await.unwrap().unwrap().outcome, Outcome::Success);
    }
    let gcc = spawned(&s).iter().filter(|a| *a == "/usr/bin/gcc").count();
    assert_eq!(gcc, 1, "{:?}", spawned(&s));
    assert!(cache_lookups(&s).contains("runner_compile_cache_misses_total{lang=\"c\"} 1"));
    assert!(all_slots_free(&s));
}

#[tokio::test]
async fn test_compile_cache_keeps_a_failed_deferred_check() {
    let tmp = tempfile::tempdir().unwrap();
    let jail = FakeJail::default();
    let err =
        "  File \"prog.py\", line 1\n    print(\n         ^\nSyntaxError: '(' was never closed\n";
    jail.outputs.lock().unwrap().extend([
        Ok(jail_out(End::Exited(1), "", err)),
        Ok(jail_out(End::Exited(1), "", err)),
    ]);
    let s = cached_sched(jail, 1, tmp.path());
    let first = s.run(job("python3", "print(", "")).await.unwrap();
    assert_eq!(first.outcome, Outcome::CompilationError);
    assert_eq!(spawned(&s).len(), 2, "run, then the check");
    let second = s.run(job("python3", "print(", "")).await.unwrap();
    assert_eq!(second, first);
    assert_eq!(
        spawned(&s).len(),
        2,
        "the cached check answers: nothing runs"
    );
}
