//! Tier: unit (docs/testing.md). The engine on a scripted fake backend (no jail, no root): event
//! order, case order under parallelism, stop_on_first_failure, cancel, idempotency and
//! redelivery, the journal across a restart, and the refusals of `submit`.
use std::io::Read;
use std::sync::atomic::AtomicUsize;

use super::*;
use crate::jail::End;
use crate::job::Usage;
use crate::judge::archive::ArchiveLimits;
use crate::judge::archive::tests::{file, tar};
use crate::judge::testset::{TESTSETS_DIR, TestsetStore};
use crate::sched::{BoxFuture, CaseOutput};

/// Programs by their source: `cat` echoes its input; `double` prints the input twice (WA);
/// `tle@<input>` runs out of CPU on that input, else echoes; `sleep` runs until cancelled;
/// `big` writes past the output limit; `CE…` does not compile; `deferred…` compiles with a
/// deferred check pending, which fails when the source says `syntax`.
struct Fake {
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
}

struct FakeProgram {
    source: String,
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
    /// Runs started, and whether compiling was settled.
    runs: AtomicUsize,
    settled: std::sync::atomic::AtomicBool,
}

impl Backend for Fake {
    fn serves(&self, language: &str) -> bool {
        language == "fake"
    }

    fn check(&self, req: &CompileRequest) -> Result<(), BackendError> {
        match req.sourcefilename.as_deref() {
            Some(n) if n.contains('/') => Err(BackendError::Invalid {
                field: "sourcefilename",
                reason: "not a plain file name".into(),
            }),
            _ => Ok(()),
        }
    }

    fn compile(&self, req: CompileRequest) -> BoxFuture<'_, Result<CompileOutcome, BackendError>> {
        Box::pin(async move {
            if req.sourcecode.starts_with("CE") {
                return Ok(CompileOutcome::Failed {
                    output: "prog.c:1: error".into(),
                });
            }
            let p: Arc<dyn Program> = Arc::new(FakeProgram {
                source: req.sourcecode,
                running: self.running.clone(),
                max_running: self.max_running.clone(),
                runs: AtomicUsize::new(0),
                settled: Default::default(),
            });
            Ok(CompileOutcome::Compiled(p))
        })
    }
}

impl Program for FakeProgram {
    fn limits(&self) -> crate::profile::plan::Limits {
        crate::profile::plan::Limits {
            cpu: Duration::from_secs(1),
            wall: Duration::from_secs(2),
            memory_bytes: 64 << 20,
            disk_bytes: 1 << 20,
            stream_bytes: 100,
            procs: 4,
            address_space_bytes: None,
        }
    }

    fn run(
        &self,
        mut stdin: std::fs::File,
        mut cancel: watch::Receiver<bool>,
    ) -> BoxFuture<'_, Result<CaseOutput, BackendError>> {
        Box::pin(async move {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(now, Ordering::SeqCst);
            let mut input = String::new();
            stdin.read_to_string(&mut input).unwrap();
            // Long enough for cases to overlap.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut out = CaseOutput {
                end: End::Exited(0),
                stdout: input.clone().into_bytes(),
                stdout_truncated: false,
                usage: Usage {
                    cpu_secs: 0.01 * input.len() as f64,
                    wall_secs: 0.02,
                    peak_memory_bytes: 1 << 20,
                    exit_code: Some(0),
                    ..Usage::default()
                },
            };
            match self.source.as_str() {
                "double" => out.stdout = input.repeat(2).into_bytes(),
                "sleep" => {
                    let _ = cancel.wait_for(|c| *c).await;
                    out.end = End::Signaled(libc::SIGKILL);
                }
                "big" => out.stdout_truncated = true,
                s if s.strip_prefix("tle@") == Some(input.trim()) => out.end = End::CpuTime,
                _ => {}
            }
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(out)
        })
    }

    fn compile_pending(&self) -> bool {
        self.source.starts_with("deferred") && !self.settled.load(Ordering::SeqCst)
    }

    /// An internal error (the submission's IE) unless settled once, after the first run alone.
    fn settle_compile(&self) -> BoxFuture<'_, Result<Option<String>, BackendError>> {
        Box::pin(async move {
            let runs = self.runs.load(Ordering::SeqCst);
            if self.settled.swap(true, Ordering::SeqCst) || runs != 1 {
                return Err(BackendError::Internal(format!(
                    "settled again or after {runs} runs"
                )));
            }
            Ok(self
                .source
                .contains("syntax")
                .then(|| "SyntaxError: invalid syntax".to_owned()))
        })
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    testsets: Testsets,
    max_running: Arc<AtomicUsize>,
}

/// Test set `p/v` with cases 1..=n whose output is their input.
fn setup(n: usize) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let store = TestsetStore::open(
        dir.join(TESTSETS_DIR),
        1 << 20,
        ArchiveLimits {
            max_bytes: 1 << 20,
            max_cases: 100,
        },
    )
    .unwrap();
    let names: Vec<(String, String, Vec<u8>)> = (1..=n)
        .map(|i| {
            (
                format!("{i}.in"),
                format!("{i}.out"),
                format!("{i}\n").into_bytes(),
            )
        })
        .collect();
    let mut entries = Vec::new();
    for (i, o, d) in &names {
        entries.push(file(i, d));
        entries.push(file(o, d));
    }
    store
        .put_archive(&TestsetId::new("p", "v").unwrap(), tar(&entries).as_slice())
        .unwrap();
    Setup {
        _tmp: tmp,
        dir,
        testsets: Testsets::new(store, None),
        max_running: Arc::new(AtomicUsize::new(0)),
    }
}

fn settings(parallel: usize) -> JudgeSettings {
    JudgeSettings {
        parallel_cases: parallel,
        concurrent: 2,
        max_queue: 3,
        result_ttl: Duration::from_secs(3600),
        wait_max: Duration::from_secs(5),
    }
}

async fn judge(s: &Setup, parallel: usize) -> Judge {
    let backend = Arc::new(Fake {
        running: Arc::new(AtomicUsize::new(0)),
        max_running: s.max_running.clone(),
    });
    Judge::start(backend, s.testsets.clone(), &s.dir, settings(parallel))
        .await
        .unwrap()
}

fn request(source: &str, id: Option<&str>, stop: bool) -> SubmissionRequest {
    let mut v = serde_json::json!({
        "problem": "p", "version": "v", "language_id": "fake", "sourcecode": source,
        "stop_on_first_failure": stop,
    });
    if let Some(id) = id {
        v["id"] = id.into();
    }
    SubmissionRequest::from_json(v.to_string().as_bytes()).unwrap()
}

async fn run(j: &Judge, source: &str, stop: bool) -> SubmissionResult {
    let s = j
        .submit(request(source, None, stop), SubmitMode::Idempotent)
        .await
        .unwrap();
    let r = j
        .wait(&s.accepted.id, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(r.status.is_final(), "{r:?}");
    r
}

fn verdicts(r: &SubmissionResult) -> Vec<Verdict> {
    r.cases.iter().map(|c| c.verdict).collect()
}

async fn all_events(j: &Judge, id: &str, after: Option<EventId>) -> Vec<(EventId, Event)> {
    let mut sub = j.subscribe(id, after).await.expect("known");
    let mut out = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(20), sub.next())
        .await
        .expect("events in time")
    {
        out.push(e);
    }
    out
}

/// The names of `events`, in order.
fn names(events: &[(EventId, Event)]) -> Vec<&'static str> {
    events.iter().map(|(_, e)| e.name()).collect()
}

/// The event order of a submission that ran `cases` cases: `head`, the cases, `status`, `done`.
fn order(head: &[&'static str], cases: usize) -> Vec<&'static str> {
    let mut want = head.to_vec();
    want.extend(std::iter::repeat_n("case", cases));
    want.extend(["status", "done"]);
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_accepted_events_in_order_and_replayed_from_the_journal() {
    let s = setup(6);
    let j = judge(&s, 3).await;
    let r = run(&j, "cat", false).await;
    assert_eq!(r.status, Status::Done);
    assert_eq!(r.verdict, Some(Verdict::Ac));
    assert_eq!(verdicts(&r), [Verdict::Ac; 6]);
    assert_eq!(
        r.cases.iter().map(|c| c.index).collect::<Vec<_>>(),
        (0..6).collect::<Vec<_>>()
    );
    assert_eq!(r.summary.passed, 6);
    assert_eq!(r.summary.total, 6);
    assert!(r.testset_sha256.is_some());
    assert!(s.max_running.load(Ordering::SeqCst) <= 3);
    // Finished: out of memory, read back from the journal.
    assert_eq!(j.queue_len(), 0);
    let events = all_events(&j, &r.id, None).await;
    assert_eq!(
        names(&events),
        order(&["status", "status", "compile", "status"], 6)
    );
    assert_eq!(events[0].0.to_string(), "1-1");
    assert_eq!(events.last().unwrap().0.to_string(), "1-12");
    match &events.last().unwrap().1 {
        Event::Done(done) => assert_eq!(**done, r),
        other => panic!("{other:?}"),
    }
    // Resume after event 1-9: the rest only.
    let rest = all_events(&j, &r.id, Some("1-9".parse().unwrap())).await;
    assert_eq!(rest.len(), 3);
    assert_eq!(
        rest[0].0,
        EventId {
            attempt: 1,
            seq: 10
        }
    );
    // An id of another attempt: from the start.
    assert_eq!(
        all_events(&j, &r.id, Some("7-3".parse().unwrap()))
            .await
            .len(),
        12
    );
    assert_eq!(j.get(&r.id).await.unwrap(), r);
    assert!(j.get("nope").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_verdicts_ce_wa_tle_ole_and_stop_on_first_failure() {
    let s = setup(5);
    let j = judge(&s, 2).await;
    let r = run(&j, "CE here", false).await;
    assert_eq!(r.verdict, Some(Verdict::Ce));
    assert_eq!(r.compile.as_ref().unwrap().output, "prog.c:1: error");
    assert_eq!(verdicts(&r), [Verdict::Sk; 5]);
    let r = run(&j, "double", false).await;
    assert_eq!(r.verdict, Some(Verdict::Wa));
    assert!(
        r.cases[0]
            .message
            .as_deref()
            .unwrap()
            .contains("expected end of output")
    );
    let r = run(&j, "tle@3", false).await;
    assert_eq!(r.verdict, Some(Verdict::Tle));
    assert_eq!(
        verdicts(&r),
        [
            Verdict::Ac,
            Verdict::Ac,
            Verdict::Tle,
            Verdict::Ac,
            Verdict::Ac
        ]
    );
    assert_eq!(
        r.cases[2].message.as_deref(),
        Some("CPU time limit exceeded (1 s)")
    );
    let r = run(&j, "tle@3", true).await;
    assert_eq!(
        verdicts(&r),
        [
            Verdict::Ac,
            Verdict::Ac,
            Verdict::Tle,
            Verdict::Sk,
            Verdict::Sk
        ]
    );
    assert_eq!(r.summary.passed, 2);
    let r = run(&j, "big", false).await;
    assert_eq!(r.verdict, Some(Verdict::Ole));
    assert!(r.cases[0].message.as_deref().unwrap().contains("100 bytes"));
}

/// A deferred check (docs/judge.md, "Deferred check"): the first case runs alone (status
/// `running`), the `compile` event waits for it, and a check that fails makes the submission CE
/// with every case SK, the one that ran too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_deferred_check_settles_after_the_first_case_alone() {
    let s = setup(5);
    let j = judge(&s, 3).await;
    let r = run(&j, "deferred", false).await;
    assert_eq!(r.verdict, Some(Verdict::Ac));
    assert_eq!(verdicts(&r), [Verdict::Ac; 5]);
    let events = all_events(&j, &r.id, None).await;
    let deferred = order(&["status", "status", "status", "compile"], 5);
    assert_eq!(names(&events), deferred);
    assert_eq!(events[2].1, Event::Status(Status::Running));
    assert_eq!(
        events[3].1,
        Event::Compile(CompileResult {
            verdict: Verdict::Ac,
            output: String::new()
        })
    );

    let r = run(&j, "deferred syntax", false).await;
    assert_eq!(r.verdict, Some(Verdict::Ce));
    assert_eq!(names(&all_events(&j, &r.id, None).await), deferred);
    let compile = r.compile.as_ref().unwrap();
    assert_eq!(compile.verdict, Verdict::Ce);
    assert_eq!(compile.output, "SyntaxError: invalid syntax");
    assert_eq!(verdicts(&r), [Verdict::Sk; 5]);
    assert!(r.cases.iter().all(|c| c.wall_ms == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_cancel_kills_running_cases_and_skips_the_rest() {
    let s = setup(4);
    let j = judge(&s, 2).await;
    let sub = j
        .submit(request("sleep", Some("c1"), false), SubmitMode::Idempotent)
        .await
        .unwrap();
    // Wait until it runs.
    let mut events = j.subscribe("c1", None).await.unwrap();
    loop {
        let (_, e) = events.next().await.unwrap();
        if e == Event::Status(Status::Running) {
            break;
        }
    }
    assert_eq!(j.cancel("c1").await, Some(CancelOutcome::Cancelled));
    let r = j
        .wait(&sub.accepted.id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Cancelled);
    assert_eq!(r.verdict, None);
    assert_eq!(verdicts(&r), [Verdict::Sk; 4]);
    assert_eq!(j.cancel("c1").await, Some(CancelOutcome::Finished));
    assert_eq!(j.cancel("unknown").await, None);
    // Queued behind two running ones (two judging places): cancelled without waiting its turn.
    for id in ["busy1", "busy2", "queued"] {
        j.submit(request("sleep", Some(id), false), SubmitMode::Idempotent)
            .await
            .unwrap();
    }
    assert_eq!(j.get("queued").await.unwrap().status, Status::Queued);
    assert_eq!(j.cancel("queued").await, Some(CancelOutcome::Cancelled));
    let r = j.wait("queued", Duration::from_secs(10)).await.unwrap();
    assert_eq!(r.status, Status::Cancelled);
    assert!(r.cases.is_empty(), "its test set was never opened: {r:?}");
    for id in ["busy1", "busy2"] {
        j.cancel(id).await;
        let r = j.wait(id, Duration::from_secs(10)).await.unwrap();
        assert_eq!(r.status, Status::Cancelled);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_idempotent_by_id_and_redelivery_judges_again() {
    let s = setup(2);
    let j = judge(&s, 2).await;
    let a = j
        .submit(request("cat", Some("same"), false), SubmitMode::Idempotent)
        .await
        .unwrap();
    assert!(!a.existing);
    let b = j
        .submit(
            request("double", Some("same"), false),
            SubmitMode::Idempotent,
        )
        .await
        .unwrap();
    assert!(b.existing);
    assert_eq!(b.accepted.id, "same");
    let r = j.wait("same", Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        r.verdict,
        Some(Verdict::Ac),
        "the first request is the one judged"
    );
    let c = j
        .submit(request("cat", Some("same"), false), SubmitMode::Idempotent)
        .await
        .unwrap();
    assert!(c.existing);
    assert_eq!(c.accepted.status, Status::Done);
    // Queue mode: judged again, a new attempt.
    let d = j
        .submit(
            request("double", Some("same"), false),
            SubmitMode::Redelivered,
        )
        .await
        .unwrap();
    assert!(!d.existing);
    let r = j.wait("same", Duration::from_secs(10)).await.unwrap();
    assert_eq!(r.verdict, Some(Verdict::Wa));
    let events = all_events(&j, "same", None).await;
    assert_eq!(events[0].0.attempt, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_unfinished_submissions_run_again_after_a_restart() {
    let s = setup(2);
    {
        let j = judge(&s, 2).await;
        j.submit(request("sleep", Some("r1"), false), SubmitMode::Idempotent)
            .await
            .unwrap();
        let mut events = j.subscribe("r1", None).await.unwrap();
        while events.next().await.unwrap().1 != Event::Status(Status::Running) {}
        // A crash: the tasks go, the journal keeps the submission.
        j.shutdown();
    }
    // The aborted tasks let go of the journal file at their next poll.
    let backend = || {
        Arc::new(Fake {
            running: Arc::new(AtomicUsize::new(0)),
            max_running: s.max_running.clone(),
        })
    };
    let mut tries = 0;
    let j = loop {
        match Judge::start(backend(), s.testsets.clone(), &s.dir, settings(2)).await {
            Ok(j) => break j,
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(j.queue_len(), 1);
    let r = j.get("r1").await.unwrap();
    assert!(!r.status.is_final());
    // It runs again ("sleep" waits for a cancel): cancel it and see it end.
    let mut events = j.subscribe("r1", None).await.unwrap();
    let (first, _) = events.next().await.unwrap();
    assert_eq!(first.attempt, 2);
    j.cancel("r1").await;
    let r = j.wait("r1", Duration::from_secs(10)).await.unwrap();
    assert_eq!(r.status, Status::Cancelled);
    // Idempotent across the restart.
    let again = j
        .submit(request("cat", Some("r1"), false), SubmitMode::Idempotent)
        .await
        .unwrap();
    assert!(again.existing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_refusals() {
    let s = setup(1);
    let j = judge(&s, 1).await;
    let mut r = request("cat", None, false);
    r.language_id = "cobol".into();
    assert!(matches!(
        j.submit(r, SubmitMode::Idempotent).await,
        Err(SubmitError::UnknownLanguage(l)) if l == "cobol"
    ));
    let mut r = request("cat", None, false);
    r.testset = TestsetId::new("p", "v2").unwrap();
    assert!(matches!(
        j.submit(r, SubmitMode::Idempotent).await,
        Err(SubmitError::UnknownTestset(_))
    ));
    let mut r = request("cat", None, false);
    r.sourcefilename = Some("a/b".into());
    assert!(matches!(
        j.submit(r, SubmitMode::Idempotent).await,
        Err(SubmitError::Invalid {
            field: "sourcefilename",
            ..
        })
    ));
    // max_queue is 3: three sleepers fill it.
    for i in 0..3 {
        j.submit(
            request("sleep", Some(&format!("q{i}")), false),
            SubmitMode::Idempotent,
        )
        .await
        .unwrap();
    }
    assert!(matches!(
        j.submit(request("cat", None, false), SubmitMode::Idempotent)
            .await,
        Err(SubmitError::QueueFull(3))
    ));
    j.begin_drain();
    assert!(matches!(
        j.submit(request("cat", None, false), SubmitMode::Idempotent)
            .await,
        Err(SubmitError::Draining)
    ));
    j.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_subscription_through_the_drain_reads_on_to_done() {
    let s = setup(1);
    let j = judge(&s, 1).await;
    j.submit(request("sleep", Some("d1"), false), SubmitMode::Idempotent)
        .await
        .unwrap();
    let mut plain = j.subscribe("d1", None).await.unwrap();
    let mut through = j.subscribe("d1", None).await.unwrap().through_drain();
    while plain.next().await.unwrap().1 != Event::Status(Status::Running) {}
    while through.next().await.unwrap().1 != Event::Status(Status::Running) {}
    j.begin_drain();
    // The HTTP client's stream ends with the drain; queue mode's reads on.
    assert!(plain.next().await.is_none());
    j.cancel("d1").await;
    let last = tokio::time::timeout(Duration::from_secs(10), async {
        let mut last = None;
        while let Some((_, e)) = through.next().await {
            last = Some(e);
        }
        last
    })
    .await
    .expect("the stream ended");
    match last {
        Some(Event::Done(r)) => assert_eq!(r.status, Status::Cancelled),
        other => panic!("ended with {other:?}, not done"),
    }
    j.shutdown();
}
