//! The judge engine: accepts submissions, judges them (test set → compile once → every case in
//! a fresh jail → compare), streams their events, and keeps them in the journal
//! (docs/judge.md, "Submissions").
//!
//! [`Judge`] is the one API that both front ends call: the HTTP API (`/judge/v1/submissions`)
//! and queue mode (RabbitMQ deliveries). It is small on purpose and stable:
//! - [`Judge::submit`]: accept a submission. [`SubmitMode::Idempotent`] (HTTP): a known id
//!   answers with the existing submission. [`SubmitMode::Redelivered`] (queue mode,
//!   at-least-once): a finished submission with the same id is judged again (a new attempt);
//!   one still running is not started twice.
//! - [`Judge::get`]: the current or final result. [`Judge::wait`]: the final result, or the
//!   current one after a timeout.
//! - [`Judge::subscribe`]: the events from the start or after an [`EventId`]; a finished
//!   submission replays them; the stream ends after `done`.
//! - [`Judge::cancel`], [`Judge::begin_drain`] / [`Judge::drain`] (SIGTERM), [`Judge::shutdown`].
//!
//! Owns: the submissions in flight (in memory, bounded by `max_queue`), the order of events, the
//! precedence of limits, the case verdicts (run end → verdict, or compare), the journal writes,
//! the judge's metrics and the one log line per submission. Must not: know HTTP or AMQP, log
//! sources or outputs, or read a case's input into memory (it goes to the jail as an open file).
//!
//! Every submission has this sequence of events (ids `<attempt>-<seq>`, seq from 1):
//! `status queued`, `status compiling`, `compile`, `status running` (only if it compiled), one
//! `case` per case in case order (SK for the ones not run), `status done` (or `cancelled`),
//! `done`. A submission whose test set cannot be had ends after `status compiling` with a
//! `compile` event of verdict IE that says why, and no cases.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use tokio::task::{AbortHandle, JoinSet};

use self::case::{run_case, skipped};
use super::backend::{Backend, BackendError, CompileOutcome, CompileRequest, Program};
use super::compare::CompareSpec;
use super::config::JudgeConfig;
use super::journal::{Journal, JournalError, Record, now_unix};
use super::metrics::JudgeMetrics;
use super::provider::Testsets;
use super::submission::{
    Accepted, CaseResult, CompileResult, Event, Links, Status, SubmissionRequest, SubmissionResult,
    Summary, is_valid_id,
};
use super::testset::{Lease, TestsetId};
use super::verdict::{Progress, Verdict};
use crate::sync::lock;
use crate::telemetry::error_chain;

/// Where the HTTP API serves submissions (the `links` of [`Accepted`]).
pub const SUBMISSIONS_PATH: &str = "/judge/v1/submissions";

/// How the engine runs (from `[judge]` and the slot count).
#[derive(Debug, Clone)]
pub struct JudgeSettings {
    /// Cases of one submission run at once.
    pub parallel_cases: usize,
    /// Submissions judged at once; the others wait in the judge queue.
    pub concurrent: usize,
    /// Accepted, unfinished submissions beyond which a new one is refused.
    pub max_queue: usize,
    pub result_ttl: Duration,
    /// Longest `?wait=true` (the HTTP API's).
    pub wait_max: Duration,
}

impl JudgeSettings {
    pub fn new(cfg: &JudgeConfig, slots: usize) -> JudgeSettings {
        JudgeSettings {
            parallel_cases: cfg.parallel_cases.max(1),
            concurrent: slots.max(1),
            max_queue: cfg.max_queue,
            result_ttl: cfg.result_ttl,
            wait_max: cfg.wait_max,
        }
    }
}

/// The id of an event: the submission's attempt (1, and +1 each time it is judged again after
/// a restart or a redelivery) and the event's position in that attempt (from 1). Written
/// `<attempt>-<seq>` (the SSE `id:` and `Last-Event-ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventId {
    pub attempt: u32,
    pub seq: u64,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.attempt, self.seq)
    }
}

impl FromStr for EventId {
    type Err = ();

    fn from_str(s: &str) -> Result<EventId, ()> {
        let (a, q) = s.trim().split_once('-').ok_or(())?;
        Ok(EventId {
            attempt: a.parse().map_err(|_| ())?,
            seq: q.parse().map_err(|_| ())?,
        })
    }
}

/// How a submission arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitMode {
    /// HTTP: a submission with a known id is that submission (running or finished, also
    /// across restarts while its result is kept).
    Idempotent,
    /// Queue mode (at-least-once delivery): a submission with the id of a finished one is
    /// judged again, as a new attempt; one with the id of a running one is that one.
    Redelivered,
}

/// An accepted submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub accepted: Accepted,
    /// The id was known: this is the existing submission, not a new one.
    pub existing: bool,
}

/// Why a submission was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Shutting down (HTTP 503).
    #[error("the judge is shutting down")]
    Draining,
    /// `max_queue` unfinished submissions already (HTTP 503).
    #[error("the judge queue is full ({0} submissions)")]
    QueueFull(usize),
    /// Not a language served here (HTTP 400, Jobe's text).
    #[error("language '{0}' is not known")]
    UnknownLanguage(String),
    /// Not stored, and no origin to fetch it from (HTTP 404).
    #[error("unknown test set {0}")]
    UnknownTestset(TestsetId),
    /// A field that cannot be used for its language (HTTP 400).
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The journal could not record it (HTTP 500).
    #[error("the submission could not be journaled")]
    Journal(#[source] JournalError),
}

/// What `cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was queued or running: it ends as cancelled.
    Cancelled,
    /// It had finished already; nothing changed.
    Finished,
}

/// A submission being judged (or queued), in memory.
struct Live {
    id: String,
    request: SubmissionRequest,
    attempt: u32,
    accepted_unix: u64,
    state: Mutex<LiveState>,
    /// The number of events so far (subscribers wait on it).
    count: watch::Sender<usize>,
    cancel: watch::Sender<bool>,
    task: Mutex<Option<AbortHandle>>,
}

struct LiveState {
    result: SubmissionResult,
    events: Vec<Event>,
    /// The case names, once the test set is known.
    names: Vec<String>,
}

impl Live {
    fn snapshot(&self) -> SubmissionResult {
        lock(&self.state).result.clone()
    }

    /// Appends `event`, applying it to the result, and wakes subscribers.
    fn emit(&self, event: Event) {
        let n = {
            let mut st = lock(&self.state);
            match &event {
                Event::Status(s) => st.result.status = *s,
                Event::Compile(c) => st.result.compile = Some(c.clone()),
                Event::Case(c) => {
                    st.result.cases.push(c.clone());
                    let total = st.result.summary.total;
                    st.result.summary = Summary::of(&st.result.cases, total);
                }
                Event::Done(_) => {}
            }
            st.events.push(event);
            st.events.len()
        };
        self.count.send_replace(n);
    }

    fn event(&self, index: usize) -> Option<Event> {
        lock(&self.state).events.get(index).cloned()
    }

    fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }
}

struct Inner {
    backend: Arc<dyn Backend>,
    testsets: Testsets,
    journal: Arc<Journal>,
    settings: JudgeSettings,
    live: Mutex<HashMap<String, Arc<Live>>>,
    running: Semaphore,
    draining: watch::Sender<bool>,
    metrics: JudgeMetrics,
    id_seq: AtomicU64,
    purge_task: Mutex<Option<AbortHandle>>,
}

/// The judge engine. Cheap to clone.
#[derive(Clone)]
pub struct Judge {
    inner: Arc<Inner>,
}

impl fmt::Debug for Judge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Judge")
            .field("queue", &self.queue_len())
            .finish_non_exhaustive()
    }
}

impl Judge {
    /// Opens the journal in `data_dir`, purges expired results, and judges again every
    /// submission that was accepted but not finished (a restart after SIGTERM or SIGKILL).
    pub async fn start(
        backend: Arc<dyn Backend>,
        testsets: Testsets,
        data_dir: &Path,
        settings: JudgeSettings,
    ) -> Result<Judge, JournalError> {
        let dir = data_dir.to_owned();
        let ttl = settings.result_ttl;
        let (journal, purged, unfinished) = blocking(move || {
            let j = Journal::open(&dir)?;
            let purged = j.purge(ttl, now_unix())?;
            let unfinished = j.unfinished()?;
            Ok::<_, JournalError>((j, purged, unfinished))
        })
        .await?;
        let judge = Judge {
            inner: Arc::new(Inner {
                backend,
                testsets,
                journal: Arc::new(journal),
                running: Semaphore::new(settings.concurrent),
                settings,
                live: Mutex::new(HashMap::new()),
                draining: watch::channel(false).0,
                metrics: JudgeMetrics::default(),
                id_seq: AtomicU64::new(0),
                purge_task: Mutex::new(None),
            }),
        };
        let resumed = unfinished.len();
        for (id, record) in unfinished {
            let Some(request) = record.request() else {
                tracing::warn!(submission = %id, "dropping an unreadable journaled submission");
                continue;
            };
            let live = judge.new_live(id, request, record.attempt + 1, record.accepted_unix);
            let journaled = judge.journal_pending(&live).await;
            if let Err(e) = journaled {
                tracing::error!(error = %error_chain(&e), "journal failed while resuming");
            }
            lock(&judge.inner.live).insert(live.id.clone(), live.clone());
            judge.begin(live);
        }
        tracing::info!(resumed, purged, "judge started");
        judge.spawn_purger();
        Ok(judge)
    }

    /// The test sets (uploads, deletes and reads of the HTTP API go straight to them).
    pub fn testsets(&self) -> &Testsets {
        &self.inner.testsets
    }

    pub fn settings(&self) -> &JudgeSettings {
        &self.inner.settings
    }

    /// Accepted submissions not finished yet (the judge queue).
    pub fn queue_len(&self) -> usize {
        lock(&self.inner.live).len()
    }

    /// Accepts `req` and starts judging it (see [`SubmitMode`] for a known id).
    pub async fn submit(
        &self,
        req: SubmissionRequest,
        mode: SubmitMode,
    ) -> Result<Submitted, SubmitError> {
        let inner = &self.inner;
        if *inner.draining.borrow() {
            return Err(SubmitError::Draining);
        }
        let mut attempt = 1;
        if let Some(id) = &req.id {
            if let Some(live) = lock(&inner.live).get(id).cloned() {
                return Ok(submitted(&live.id, live.snapshot().status, true));
            }
            let journal = inner.journal.clone();
            let key = id.clone();
            let known = blocking(move || journal.get(&key))
                .await
                .map_err(SubmitError::Journal)?
                .filter(|r| !r.expired(inner.settings.result_ttl, now_unix()));
            if let Some(record) = known {
                if mode == SubmitMode::Idempotent {
                    let status = record.result.as_ref().map_or(Status::Queued, |r| r.status);
                    return Ok(submitted(id, status, true));
                }
                attempt = record.attempt + 1;
            }
        }
        if !inner.backend.serves(&req.language_id) {
            return Err(SubmitError::UnknownLanguage(req.language_id));
        }
        inner
            .backend
            .check(&compile_request(&req, None))
            .map_err(|e| match e {
                BackendError::Invalid { field, reason } => SubmitError::Invalid { field, reason },
                BackendError::UnknownLanguage(l) => SubmitError::UnknownLanguage(l),
                BackendError::Internal(reason) => SubmitError::Invalid {
                    field: "body",
                    reason,
                },
            })?;
        if !inner.testsets.has_origin() && !inner.testsets.store().contains(&req.testset) {
            return Err(SubmitError::UnknownTestset(req.testset));
        }
        let id = req.id.clone().unwrap_or_else(|| self.new_id());
        let live = self.new_live(id.clone(), req, attempt, now_unix());
        {
            let mut map = lock(&inner.live);
            if let Some(other) = map.get(&id) {
                // The same id raced in a moment ago.
                return Ok(submitted(&other.id, other.snapshot().status, true));
            }
            if map.len() >= inner.settings.max_queue {
                return Err(SubmitError::QueueFull(inner.settings.max_queue));
            }
            map.insert(id.clone(), live.clone());
        }
        if let Err(e) = self.journal_pending(&live).await {
            lock(&inner.live).remove(&id);
            return Err(SubmitError::Journal(e));
        }
        self.begin(live);
        Ok(submitted(&id, Status::Queued, false))
    }

    /// The submission's result so far (final once its status is done or cancelled). `None`:
    /// unknown, or its result has expired.
    pub async fn get(&self, id: &str) -> Option<SubmissionResult> {
        if let Some(live) = lock(&self.inner.live).get(id).cloned() {
            return Some(live.snapshot());
        }
        let record = self.record(id).await?;
        let req = record.request();
        Some(record.result.unwrap_or_else(|| {
            // Accepted before a restart and not resumed yet: queued.
            empty_result(id, req.as_ref())
        }))
    }

    /// Waits up to `timeout` for the submission to finish (or the judge to begin draining); its
    /// result then (or what it has by then). `None`: unknown.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Option<SubmissionResult> {
        let live = lock(&self.inner.live).get(id).cloned();
        let Some(live) = live else {
            return self.get(id).await;
        };
        let mut rx = live.count.subscribe();
        let mut draining = self.inner.draining.subscribe();
        let finished = rx.wait_for(|_| live.snapshot().status.is_final());
        // A drain ends the wait too, so that the connection can close.
        tokio::select! {
            _ = tokio::time::timeout(timeout, finished) => {}
            () = until_true(&mut draining) => {}
        }
        Some(live.snapshot())
    }

    /// The submission's events after `after` (`None`: from the first); a finished
    /// submission's are replayed. An id of another attempt starts from the first event of the
    /// current one. `None`: unknown.
    pub async fn subscribe(&self, id: &str, after: Option<EventId>) -> Option<Subscription> {
        let draining = self.inner.draining.subscribe();
        if let Some(live) = lock(&self.inner.live).get(id).cloned() {
            let next = start_index(after, live.attempt);
            let count = live.count.subscribe();
            return Some(Subscription {
                attempt: live.attempt,
                next,
                source: Source::Live(live, count),
                draining,
                ended: false,
            });
        }
        let record = self.record(id).await?;
        let events = if record.result.is_some() {
            record.events()
        } else {
            // Not resumed yet: nothing happened in this attempt so far.
            Vec::new()
        };
        Some(Subscription {
            attempt: record.attempt,
            next: start_index(after, record.attempt),
            source: Source::Finished(events),
            draining,
            ended: false,
        })
    }

    /// Cancels the submission: running cases are killed, the rest are SK, its status becomes
    /// cancelled. `None`: unknown.
    pub async fn cancel(&self, id: &str) -> Option<CancelOutcome> {
        if let Some(live) = lock(&self.inner.live).get(id).cloned() {
            live.cancel.send_replace(true);
            return Some(CancelOutcome::Cancelled);
        }
        self.record(id).await.map(|_| CancelOutcome::Finished)
    }

    /// Stops accepting (`submit` answers `Draining`) and ends every event stream; submissions
    /// that have not started stay journaled for the next start.
    pub fn begin_drain(&self) {
        self.inner.draining.send_replace(true);
    }

    /// [`begin_drain`](Self::begin_drain), then waits up to `timeout` for the submissions being
    /// judged to finish. Returns how many did not (they are judged again after a restart).
    pub async fn drain(&self, timeout: Duration) -> usize {
        self.begin_drain();
        let deadline = Instant::now() + timeout;
        loop {
            let busy = self.busy();
            if busy == 0 || Instant::now() >= deadline {
                if busy > 0 {
                    tracing::warn!(
                        submissions = busy,
                        "drain timeout: unfinished submissions stay journaled"
                    );
                }
                return busy;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Aborts every judging task (after `drain`, when the daemon exits): their running jails
    /// are killed (a step whose canceller is gone ends) and cleaned up by the scheduler's own
    /// tasks; the submissions stay journaled as unfinished, to be judged again at the next start.
    pub fn shutdown(&self) {
        self.begin_drain();
        for live in lock(&self.inner.live).values() {
            if let Some(t) = lock(&live.task).take() {
                t.abort();
            }
        }
        if let Some(t) = lock(&self.inner.purge_task).take() {
            t.abort();
        }
    }

    /// Appends the judge's metric families (docs/operations.md) to a `GET /metrics` body.
    pub fn render_metrics(&self, out: &mut String) {
        let stats = self.inner.testsets.store().stats();
        let counters = self.inner.testsets.counters();
        self.inner
            .metrics
            .render(out, self.queue_len(), stats.bytes, counters);
    }

    /// Submissions compiling or running now.
    fn busy(&self) -> usize {
        lock(&self.inner.live)
            .values()
            .filter(|l| {
                matches!(
                    lock(&l.state).result.status,
                    Status::Compiling | Status::Running
                )
            })
            .count()
    }

    async fn record(&self, id: &str) -> Option<Record> {
        if !is_valid_id(id) {
            return None;
        }
        let journal = self.inner.journal.clone();
        let key = id.to_owned();
        match blocking(move || journal.get(&key)).await {
            Ok(r) => r.filter(|r| !r.expired(self.inner.settings.result_ttl, now_unix())),
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "journal read failed");
                None
            }
        }
    }

    fn new_id(&self) -> String {
        use std::hash::{BuildHasher, Hasher};
        let seq = self.inner.id_seq.fetch_add(1, Ordering::Relaxed);
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(seq);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        h.write_u128(nanos);
        format!("s{:x}-{:016x}", nanos / 1_000_000, h.finish())
    }

    fn new_live(
        &self,
        id: String,
        request: SubmissionRequest,
        attempt: u32,
        accepted_unix: u64,
    ) -> Arc<Live> {
        let result = empty_result(&id, Some(&request));
        Arc::new(Live {
            id,
            request,
            attempt,
            accepted_unix,
            state: Mutex::new(LiveState {
                result,
                events: Vec::new(),
                names: Vec::new(),
            }),
            count: watch::channel(0).0,
            cancel: watch::channel(false).0,
            task: Mutex::new(None),
        })
    }

    async fn journal_pending(&self, live: &Live) -> Result<(), JournalError> {
        let record = Record {
            request: live.request.to_json(),
            attempt: live.attempt,
            accepted_unix: live.accepted_unix,
            finished_unix: None,
            result: None,
            events: Vec::new(),
        };
        let journal = self.inner.journal.clone();
        let id = live.id.clone();
        blocking(move || journal.put(&id, &record)).await
    }

    /// Emits `status queued` and starts the judging task.
    fn begin(&self, live: Arc<Live>) {
        live.emit(Event::Status(Status::Queued));
        let judge = self.clone();
        let l = live.clone();
        let task = tokio::spawn(async move { judge.judge(l).await });
        *lock(&live.task) = Some(task.abort_handle());
    }

    fn spawn_purger(&self) {
        let journal = self.inner.journal.clone();
        let ttl = self.inner.settings.result_ttl;
        let every = (ttl / 10).clamp(Duration::from_secs(10), Duration::from_secs(600));
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let j = journal.clone();
                match blocking(move || j.purge(ttl, now_unix())).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "expired judge results purged"),
                    Err(e) => tracing::warn!(error = %error_chain(&e), "journal purge failed"),
                }
            }
        });
        *lock(&self.inner.purge_task) = Some(task.abort_handle());
    }

    /// Judges one submission to its end.
    async fn judge(&self, live: Arc<Live>) {
        let started = Instant::now();
        // A queued submission can be cancelled without waiting for its turn.
        let mut cancel = live.cancel.subscribe();
        let permit = tokio::select! {
            p = self.inner.running.acquire() => p.ok(),
            () = until_true(&mut cancel) => None,
        };
        if permit.is_none() && !live.cancelled() {
            return;
        }
        if *self.inner.draining.borrow() {
            // Not started: it stays journaled and runs after the restart.
            return;
        }
        let outcome = self.judge_started(&live).await;
        drop(permit);
        self.finish(&live, outcome, started).await;
    }

    async fn judge_started(&self, live: &Arc<Live>) -> Ending {
        if live.cancelled() {
            return Ending::Cancelled;
        }
        live.emit(Event::Status(Status::Compiling));
        let req = &live.request;
        let mut cancel = live.cancel.subscribe();
        let lease = tokio::select! {
            r = self.inner.testsets.ensure(&req.testset) => r,
            () = until_true(&mut cancel) => return Ending::Cancelled,
        };
        let lease = match lease {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(submission = %live.id, error = %error_chain(&e), "no test set for a submission");
                let output = e.public_message();
                live.emit(Event::Compile(CompileResult {
                    verdict: Verdict::Ie,
                    output,
                }));
                return Ending::Internal;
            }
        };
        let manifest = lease.manifest().clone();
        {
            let mut st = lock(&live.state);
            st.result.testset_sha256 = Some(manifest.sha256.clone());
            st.result.summary.total = manifest.cases.len();
            st.names = manifest.cases.iter().map(|c| c.name.clone()).collect();
        }
        let creq = compile_request(req, Some(&manifest.limits));
        let compiled = tokio::select! {
            r = self.inner.backend.compile_cancellable(creq, live.cancel.subscribe()) => r,
            () = until_true(&mut cancel) => return Ending::Cancelled,
        };
        let program = match compiled {
            Ok(CompileOutcome::Compiled(p)) => p,
            Ok(CompileOutcome::Failed { output }) => {
                let mut progress = Progress::new(manifest.cases.len(), false);
                return compile_refused(live, &mut progress, &manifest.cases, output);
            }
            Err(e) => return compile_broke(live, &e),
        };
        if !program.compile_pending() {
            compiled_ok(live);
        }
        self.run_cases(live, program, lease, &manifest.compare)
            .await
    }

    /// With a deferred check pending (docs/judge.md, "Deferred check"): the status is
    /// `running` while the first case runs alone, then compiling is settled and the `compile`
    /// event goes out. `Ok(first case)` to go on with the others, `Err(ending)` when the
    /// submission ends here (CE, IE, cancel).
    async fn settle_compile(
        &self,
        live: &Arc<Live>,
        program: &Arc<dyn Program>,
        lease: &Lease,
        spec: &CompareSpec,
        progress: &mut Progress,
    ) -> Result<Option<CaseResult>, Ending> {
        let cases = &lease.manifest().cases;
        let mut cancel = live.cancel.subscribe();
        let mut first = None;
        live.emit(Event::Status(Status::Running));
        if let Some(case) = cases.first().filter(|_| progress.should_run(0)) {
            // Dropping the sender (a cancel below) kills the run.
            let (_stop, stop_rx) = watch::channel(false);
            let run = run_case(
                program.clone(),
                lease.clone(),
                *spec,
                0,
                case.name.clone(),
                stop_rx,
            );
            first = tokio::select! {
                c = run => Some(c),
                () = until_true(&mut cancel) => return Err(Ending::Cancelled),
            };
        }
        let settled = tokio::select! {
            r = program.settle_compile() => r,
            () = until_true(&mut cancel) => return Err(Ending::Cancelled),
        };
        match settled {
            Ok(None) => {
                live.emit(Event::Compile(CompileResult {
                    verdict: Verdict::Ac,
                    output: String::new(),
                }));
                Ok(first)
            }
            Ok(Some(output)) => Err(compile_refused(live, progress, cases, output)),
            Err(e) => Err(compile_broke(live, &e)),
        }
    }

    /// Runs the cases, `parallel_cases` at a time, releasing their results in case order.
    async fn run_cases(
        &self,
        live: &Arc<Live>,
        program: Arc<dyn Program>,
        lease: Lease,
        spec: &CompareSpec,
    ) -> Ending {
        let cases = lease.manifest().cases.clone();
        let n = cases.len();
        let mut progress = Progress::new(n, live.request.stop_on_first_failure);
        let mut results: Vec<Option<CaseResult>> = vec![None; n];
        let mut running: HashMap<usize, watch::Sender<bool>> = HashMap::new();
        let mut set: JoinSet<CaseResult> = JoinSet::new();
        let mut next = 0;
        if program.compile_pending() {
            let first = match self
                .settle_compile(live, &program, &lease, spec, &mut progress)
                .await
            {
                Ok(first) => first,
                Err(ending) => return ending,
            };
            next = 1;
            if let Some(case) = first {
                self.inner.metrics.case(&case);
                let released = progress.record(0, case.verdict);
                results[0] = Some(case);
                emit_released(live, &progress, released, &cases, &mut results);
            }
        }
        let mut cancel = live.cancel.subscribe();
        let parallel = self.inner.settings.parallel_cases;
        loop {
            while running.len() < parallel && next < n && !live.cancelled() {
                let i = next;
                next += 1;
                if !progress.should_run(i) {
                    continue;
                }
                let (stop, stop_rx) = watch::channel(false);
                running.insert(i, stop);
                let (program, lease, spec) = (program.clone(), lease.clone(), *spec);
                let name = cases[i].name.clone();
                set.spawn(async move { run_case(program, lease, spec, i, name, stop_rx).await });
            }
            if set.is_empty() {
                break;
            }
            tokio::select! {
                joined = set.join_next() => {
                    let Some(joined) = joined else { break };
                    let case = match joined {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::error!(error = %e, "a case task failed");
                            continue;
                        }
                    };
                    let i = case.index;
                    running.remove(&i);
                    self.inner.metrics.case(&case);
                    let released = progress.record(i, case.verdict);
                    results[i] = Some(case);
                    emit_released(live, &progress, released, &cases, &mut results);
                    // Cases that became SK need not finish.
                    for (j, stop) in &running {
                        if !progress.should_run(*j) && progress.verdict(*j).is_none() {
                            stop.send_replace(true);
                        }
                    }
                }
                () = until_true(&mut cancel) => {
                    for stop in running.values() {
                        stop.send_replace(true);
                    }
                    while set.join_next().await.is_some() {}
                    let released = progress.skip_rest();
                    emit_released(live, &progress, released, &cases, &mut results);
                    return Ending::Cancelled;
                }
            }
        }
        if live.cancelled() {
            let released = progress.skip_rest();
            emit_released(live, &progress, released, &cases, &mut results);
            return Ending::Cancelled;
        }
        // Every case is decided by now; anything left is SK.
        let released = progress.skip_rest();
        emit_released(live, &progress, released, &cases, &mut results);
        Ending::Done(progress.overall().unwrap_or(Verdict::Ie))
    }

    /// The last events, the journal record, the metrics and the log line.
    async fn finish(&self, live: &Arc<Live>, ending: Ending, started: Instant) {
        let (status, verdict) = match ending {
            Ending::Done(v) => (Status::Done, Some(v)),
            Ending::Internal => (Status::Done, Some(Verdict::Ie)),
            Ending::Cancelled => (Status::Cancelled, None),
        };
        if status == Status::Cancelled {
            // Cases not released yet (cancelled before running them) are SK.
            let st = lock(&live.state);
            let (done, names) = (st.result.cases.len(), st.names.clone());
            drop(st);
            for (index, name) in names.into_iter().enumerate().skip(done) {
                live.emit(Event::Case(skipped(index, name)));
            }
        }
        // The final result and its last two events are journaled first, then the submission
        // leaves memory, then the events go out: whoever sees `done` finds it in the journal.
        let (result, mut events) = {
            let st = lock(&live.state);
            let mut result = st.result.clone();
            result.verdict = verdict;
            result.status = status;
            let events: Vec<(String, String)> = st
                .events
                .iter()
                .map(|e| (e.name().to_owned(), e.data()))
                .collect();
            (result, events)
        };
        let last = [Event::Status(status), Event::Done(Box::new(result.clone()))];
        events.extend(last.iter().map(|e| (e.name().to_owned(), e.data())));
        let record = Record {
            request: live.request.to_json(),
            attempt: live.attempt,
            accepted_unix: live.accepted_unix,
            finished_unix: Some(now_unix()),
            result: Some(result.clone()),
            events,
        };
        let journal = self.inner.journal.clone();
        let id = live.id.clone();
        let written = blocking(move || journal.put(&id, &record)).await;
        match written {
            Ok(()) => {
                lock(&self.inner.live).remove(&live.id);
            }
            Err(e) => {
                tracing::error!(submission = %live.id, error = %error_chain(&e),
                    "journal write failed; the result stays in memory only");
            }
        }
        lock(&live.state).result.verdict = verdict;
        for e in last {
            live.emit(e);
        }
        self.inner.metrics.submission(&result);
        let s = &result.summary;
        tracing::info!(
            submission = %live.id,
            problem = %result.problem,
            version = %result.version,
            lang = %result.language_id,
            attempt = live.attempt,
            status = ?status,
            verdict = verdict.map_or("-", Verdict::code),
            passed = s.passed,
            total = s.total,
            max_cpu_ms = s.max_cpu_ms,
            max_wall_ms = s.max_wall_ms,
            max_memory_kb = s.max_memory_kb,
            ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "submission finished"
        );
    }
}

/// How judging ended.
enum Ending {
    Done(Verdict),
    /// The test set or the compile step failed on the judge's side.
    Internal,
    Cancelled,
}

/// A submission's events as they come (see [`Judge::subscribe`]).
pub struct Subscription {
    attempt: u32,
    /// Index of the next event to hand out.
    next: usize,
    source: Source,
    draining: watch::Receiver<bool>,
    ended: bool,
}

enum Source {
    Live(Arc<Live>, watch::Receiver<usize>),
    Finished(Vec<Event>),
}

impl Subscription {
    /// The same stream, not ended by the judge's drain: for a reader that stops as it decides
    /// itself (queue mode's `on_stop`, docs/queue.md "Stopping"), not an HTTP client. It ends
    /// after `done`, or when the engine shuts down.
    pub fn through_drain(mut self) -> Subscription {
        // A receiver whose sender is gone: `until_true` never resolves on it.
        self.draining = watch::channel(false).1;
        self
    }

    /// The next event; `None` after `done`, or when the judge begins to drain (the client may
    /// resume elsewhere or later with the last id it got).
    pub async fn next(&mut self) -> Option<(EventId, Event)> {
        if self.ended {
            return None;
        }
        loop {
            let event = match &self.source {
                Source::Live(live, _) => live.event(self.next),
                Source::Finished(events) => events.get(self.next).cloned(),
            };
            if let Some(event) = event {
                self.next += 1;
                self.ended = matches!(event, Event::Done(_));
                let id = EventId {
                    attempt: self.attempt,
                    seq: self.next as u64,
                };
                return Some((id, event));
            }
            let Source::Live(_, count) = &mut self.source else {
                self.ended = true;
                return None;
            };
            tokio::select! {
                changed = count.changed() => if changed.is_err() {
                    self.ended = true;
                    return None;
                },
                () = until_true(&mut self.draining) => {
                    self.ended = true;
                    return None;
                }
            }
        }
    }
}

/// Resolves once `rx` reads `true` (never, if its sender goes without).
async fn until_true(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn start_index(after: Option<EventId>, attempt: u32) -> usize {
    match after {
        Some(a) if a.attempt == attempt => usize::try_from(a.seq).unwrap_or(usize::MAX),
        _ => 0,
    }
}

fn submitted(id: &str, status: Status, existing: bool) -> Submitted {
    let self_ = format!("{SUBMISSIONS_PATH}/{id}");
    Submitted {
        accepted: Accepted {
            id: id.to_owned(),
            status,
            links: Links {
                events: format!("{self_}/events"),
                self_,
            },
        },
        existing,
    }
}

fn empty_result(id: &str, req: Option<&SubmissionRequest>) -> SubmissionResult {
    SubmissionResult {
        id: id.to_owned(),
        problem: req.map_or_else(String::new, |r| r.testset.problem().to_owned()),
        version: req.map_or_else(String::new, |r| r.testset.version().to_owned()),
        testset_sha256: None,
        language_id: req.map_or_else(String::new, |r| r.language_id.clone()),
        status: Status::Queued,
        verdict: None,
        compile: None,
        cases: Vec::new(),
        summary: Summary::default(),
    }
}

/// The limits of a submission (docs/judge.md, "Limits"): the submission's own `limits` first,
/// then the test set's `problem.toml`, then the language's defaults; the scheduler then clamps
/// each to the language profile's bounds (and `cputime` to `limits.cputime_max_secs`).
fn compile_request(
    req: &SubmissionRequest,
    testset: Option<&super::problem::Limits>,
) -> CompileRequest {
    #[allow(clippy::cast_precision_loss, reason = "MB values far below 2^52")]
    let memory = testset.and_then(|l| l.memorylimit).map(|m| m as f64);
    CompileRequest {
        language: req.language_id.clone(),
        sourcecode: req.sourcecode.clone(),
        sourcefilename: req.sourcefilename.clone(),
        cputime: req.limits.cputime.or(testset.and_then(|l| l.cputime)),
        memorylimit: req.limits.memorylimit.or(memory),
        output_limit: testset.and_then(|l| l.output_limit),
    }
}

/// A program that does not compile: the `compile` event with what the compiler (or check)
/// said, and every case SK.
fn compile_refused(
    live: &Live,
    progress: &mut Progress,
    cases: &[super::testset::ManifestCase],
    output: String,
) -> Ending {
    live.emit(Event::Compile(CompileResult {
        verdict: Verdict::Ce,
        output,
    }));
    let released = progress.compile_failed();
    emit_released(live, progress, released, cases, &mut []);
    Ending::Done(Verdict::Ce)
}

/// A compile step (or deferred check) the backend could not run: IE.
fn compile_broke(live: &Live, e: &BackendError) -> Ending {
    tracing::error!(submission = %live.id, error = %error_chain(e), "compile step failed");
    live.emit(Event::Compile(CompileResult {
        verdict: Verdict::Ie,
        output: "the compile step could not run (an internal error of the judge)".into(),
    }));
    Ending::Internal
}

/// The `compile` event of a program that compiled, and the switch to running.
fn compiled_ok(live: &Live) {
    live.emit(Event::Compile(CompileResult {
        verdict: Verdict::Ac,
        output: String::new(),
    }));
    live.emit(Event::Status(Status::Running));
}

/// Emits the `case` events of the cases `released` (in order), taking their results (SK for
/// cases that did not run, or ran but were overruled by `stop_on_first_failure`).
fn emit_released(
    live: &Live,
    progress: &Progress,
    released: std::ops::Range<usize>,
    cases: &[super::testset::ManifestCase],
    results: &mut [Option<CaseResult>],
) {
    for i in released {
        let verdict = progress.verdict(i).unwrap_or(Verdict::Sk);
        let ran = results.get_mut(i).and_then(Option::take);
        let case = match ran {
            Some(c) if c.verdict == verdict => c,
            _ => skipped(i, cases[i].name.clone()),
        };
        live.emit(Event::Case(case));
    }
}

/// Runs blocking journal work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, JournalError> + Send + 'static,
) -> Result<T, JournalError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(JournalError::Task(e.to_string())))
}

mod case;

#[cfg(test)]
mod tests;
