//! Admission and execution: a pool of slots, a bounded wait for one, and the compile → run
//! pipeline that turns what the jail saw into a Jobe outcome.
//!
//! `api` never sees jails or profiles: it hands a `Job` to an `Executor` and gets back a
//! `RunResult` (which may be outcome 21) or an `ExecError` that maps to an HTTP status.
//! Owns: slot allocation (one run per slot at a time, FIFO among waiters), queue deadlines, the
//! order compile → run, Jobe's outcome rules. Must not: parse HTTP, touch cgroups or namespaces.
//!
//! Compile cache: with one set (`Scheduler::set_compile_cache`), a compile step or deferred
//! check whose key was seen before is answered from `compile_cache` (docs/performance.md,
//! "Compile cache"): a cached failure is the answer, a cached pass restores the files the
//! compile left into the run directory and only the run step runs.
//!
//! Reload: the languages and the queue and planning settings are one [`Settings`] snapshot,
//! read through a `live::Live` (a config reload publishes a new one); a run takes the snapshot
//! once, when it starts, and keeps it to its end. The slots are fixed for the daemon's life.
//!
//! Seams: `Executor` above (the HTTP layer's fakes), [`Sandbox`] below: what the scheduler needs
//! of a jail (run directories, one step at a time). `jail::Jail` implements it; the unit tests
//! here use a fake that records the calls and answers as scripted, so the scheduling logic is
//! tested without root (the real jail runs in the privileged tests).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::jail::{End, Jail, JailError, JailOutput, JailSpec, RunDir, Slot};
use crate::job::{Job, Outcome, RunResult};
use crate::live::Live;
use crate::metrics::{DeferredCheck, Metrics};
use crate::profile::plan::{CmpinfoRule, Plan, RunEvidence, Step};
use crate::profile::{PlanConfig, Registry, cmpinfo, filter_stderr};

use self::compile_cache::{Ending, Entry, Key, Lookup, Store, Toolchain, Use};

/// A boxed future, because `Executor` is used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a job could not be run at all (as opposed to an outcome of running it).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The client asked for something invalid for this language or server: HTTP 400, and the
    /// message goes to the client verbatim (it must not contain host paths).
    #[error("{0}")]
    BadRequest(String),
    /// The language is not served here: HTTP 400 `Language '<id>' is not known`.
    #[error("language '{0}' is not known")]
    UnknownLanguage(String),
    /// A fault of the daemon or host: HTTP 500 with a generic message; the chain goes to the log.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Runs jobs. Implemented by the real scheduler (slots + jails) and by fakes in tests.
pub trait Executor: Send + Sync + 'static {
    /// `(id, version)` pairs for `GET /languages`, in a stable order.
    fn languages(&self) -> Vec<(String, String)>;
    /// Whether `id` is one of `languages()` (without copying the list).
    fn has_language(&self, id: &str) -> bool {
        self.languages().iter().any(|(l, _)| l == id)
    }
    /// Compile and run `job`. Resolves to outcome 21 when no slot frees up in time.
    fn run(&self, job: Job) -> BoxFuture<'_, Result<RunResult, ExecError>>;
    /// Slots, free slots and waiting requests, for `X-Runner-Load` and `GET /peer/status`.
    /// Fakes that do not model slots report zeros.
    fn load(&self) -> Load {
        Load::default()
    }
    /// Starts `job` only if a slot is free right now (no queueing); otherwise gives it back.
    /// Peer mode uses it to run locally first and forward the overflow. The default (fakes)
    /// always runs.
    #[allow(
        clippy::result_large_err,
        reason = "the job is handed back, not an error"
    )]
    fn try_run(&self, job: Job) -> Result<BoxFuture<'_, Result<RunResult, ExecError>>, Job> {
        Ok(self.run(job))
    }
}

/// What the scheduler needs of a jail: a run directory on a slot, then one step at a time in a
/// fresh jail on that slot. Implemented by [`Jail`]; a program's behaviour comes back as
/// `JailOutput::end`, a fault of the host or daemon as `JailError` (HTTP 500).
pub trait Sandbox: Send + Sync + 'static {
    /// A slot's identity (uid, network namespace…), one run at a time.
    type Slot: Send + Sync + 'static;
    /// A request's run directory; removed when dropped.
    type RunDir: RunFiles + Send + Sync;

    /// Creates the run directory `name` (from `Jail::new_run_dir_name`) for `slot`, room for
    /// `size_bytes`.
    fn create_run_dir(
        &self,
        slot: &Self::Slot,
        name: &str,
        size_bytes: u64,
    ) -> Result<Self::RunDir, JailError>;

    /// Runs one step in a fresh jail and waits for it.
    fn spawn(
        &self,
        spec: JailSpec<'_, Self::RunDir, Self::Slot>,
    ) -> impl Future<Output = Result<JailOutput, JailError>> + Send;

    /// As [`spawn`](Self::spawn), but the step is killed once `cancel` reads `true` (or its
    /// sender is dropped): judge mode's compile step of a cancelled submission. The default
    /// (fakes) ignores `cancel`.
    fn spawn_cancellable(
        &self,
        spec: JailSpec<'_, Self::RunDir, Self::Slot>,
        cancel: tokio::sync::watch::Receiver<bool>,
    ) -> impl Future<Output = Result<JailOutput, JailError>> + Send {
        let _ = cancel;
        self.spawn(spec)
    }
}

/// The files of a run directory that the scheduler writes (the request's) and reads back (what
/// a compile step left: `cmpinfo`).
pub trait RunFiles {
    /// A file the job starts with; a new file, owned by the slot's user.
    fn write_file(&self, name: &str, contents: &[u8]) -> Result<(), JailError>;
    /// A regular file a step created, at most `limit` bytes (`None`: none, or not a regular
    /// file).
    fn read_file(&self, name: &str, limit: u64) -> Option<Vec<u8>>;
    /// Whether a regular file of that name exists.
    fn has_file(&self, name: &str) -> bool;
    /// Copies what the finished compile step left into the empty directory `to` (the compile
    /// cache's snapshot: regular files and directories only); the bytes copied.
    fn snapshot_to(&self, to: &Path) -> Result<u64, JailError>;
    /// Copies a snapshot into this new, empty run directory (the slot's files, modes kept).
    fn restore_from(&self, from: &Path) -> Result<(), JailError>;
}

impl Sandbox for Jail {
    type Slot = Slot;
    type RunDir = RunDir;

    fn create_run_dir(
        &self,
        slot: &Slot,
        name: &str,
        size_bytes: u64,
    ) -> Result<RunDir, JailError> {
        Jail::create_run_dir(self, slot, name, size_bytes)
    }

    fn spawn(
        &self,
        spec: JailSpec<'_>,
    ) -> impl Future<Output = Result<JailOutput, JailError>> + Send {
        Jail::spawn(self, spec)
    }

    fn spawn_cancellable(
        &self,
        spec: JailSpec<'_>,
        cancel: tokio::sync::watch::Receiver<bool>,
    ) -> impl Future<Output = Result<JailOutput, JailError>> + Send {
        let extras = crate::jail::StepExtras {
            cancel: Some(cancel),
            ..crate::jail::StepExtras::default()
        };
        Jail::spawn_with(self, spec, extras)
    }
}

impl RunFiles for RunDir {
    fn write_file(&self, name: &str, contents: &[u8]) -> Result<(), JailError> {
        RunDir::write_file(self, name, contents)
    }

    fn read_file(&self, name: &str, limit: u64) -> Option<Vec<u8>> {
        RunDir::read_file(self, name, limit)
    }

    fn has_file(&self, name: &str) -> bool {
        RunDir::has_file(self, name)
    }

    fn snapshot_to(&self, to: &Path) -> Result<u64, JailError> {
        crate::jail::copy_out(self, to)
    }

    fn restore_from(&self, from: &Path) -> Result<(), JailError> {
        self.copy_in(from)
    }
}

/// A runner's capacity at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub slots: usize,
    pub free: usize,
    pub queued: usize,
}

/// Scheduler settings (from `config`).
#[derive(Debug, Clone)]
pub struct SchedConfig {
    /// How long a request may wait for a free slot before outcome 21 (Jobe: 10 s).
    pub queue_timeout: Duration,
    /// How many requests may wait at once; beyond that, outcome 21 at once.
    pub max_queue: usize,
    pub plan: PlanConfig,
}

/// What runs are planned and queued with: the languages served (profiles with the versions
/// their toolchains reported) and the scheduler's settings. Replaced as a whole by a config
/// reload; each run keeps the snapshot it started with.
#[derive(Debug)]
pub struct Settings {
    registry: Registry,
    languages: Vec<(String, String)>,
    pub config: SchedConfig,
}

impl Settings {
    pub fn new(registry: Registry, config: SchedConfig) -> Settings {
        Settings {
            languages: registry.languages(),
            registry,
            config,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// `(id, version)` of every language served, sorted by id.
    pub fn languages(&self) -> &[(String, String)] {
        &self.languages
    }
}

/// The real executor: profiles, a jail and its slots. Cheap to clone (shared state).
pub struct Scheduler<J: Sandbox = Jail> {
    inner: Arc<Inner<J>>,
}

impl<J: Sandbox> Clone for Scheduler<J> {
    fn clone(&self) -> Self {
        Scheduler {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<J: Sandbox> {
    /// Languages and settings; a run takes one snapshot when it starts.
    settings: Live<Settings>,
    // Slots before the jail: fields drop in order, and a slot's cgroups must be removed before
    // the jail removes its subtree.
    free: Mutex<Vec<J::Slot>>,
    jail: Arc<J>,
    permits: Semaphore,
    waiting: std::sync::atomic::AtomicUsize,
    /// Queue and slot gauges go here; `api` shares it (`Scheduler::metrics`).
    metrics: Arc<Metrics>,
    /// Per-daemon run counter: the `run` field of the per-run log line.
    run_seq: AtomicU64,
    slots_total: usize,
    /// The compile cache, once `server` set it (none: `[compile_cache] enabled = false`).
    compile_cache: OnceLock<Arc<CompileCache>>,
}

impl<J: Sandbox> Scheduler<J> {
    /// A scheduler whose languages and settings never change.
    pub fn new(registry: Registry, jail: Arc<J>, slots: Vec<J::Slot>, cfg: SchedConfig) -> Self {
        Self::with_settings(jail, slots, Live::fixed(Settings::new(registry, cfg)))
    }

    /// A scheduler that follows `settings` (a config reload publishes new ones).
    pub fn with_settings(jail: Arc<J>, slots: Vec<J::Slot>, settings: Live<Settings>) -> Self {
        let metrics = Arc::new(Metrics::new());
        metrics.set_slots_total(slots.len());
        let slots_total = slots.len();
        let inner = Inner {
            settings,
            jail,
            permits: Semaphore::new(slots.len()),
            free: Mutex::new(slots),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            metrics,
            run_seq: AtomicU64::new(1),
            slots_total,
            compile_cache: OnceLock::new(),
        };
        Scheduler {
            inner: Arc::new(inner),
        }
    }

    /// The current languages and settings.
    pub fn settings(&self) -> Arc<Settings> {
        self.inner.settings.get()
    }

    /// Slots in the pool.
    pub fn slots(&self) -> usize {
        self.inner.slots_total
    }

    /// Turns the compile cache on (docs/performance.md, "Compile cache"); once, at start.
    pub fn set_compile_cache(&self, cache: Arc<CompileCache>) {
        let (bytes, entries) = cache.size();
        self.inner.metrics.set_compile_cache_size(bytes, entries);
        let _ = self.inner.compile_cache.set(cache);
    }

    /// The metrics registry the scheduler updates (queue, slots); give it to
    /// `AppState::with_metrics` so `GET /metrics` shows one registry.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }
}

impl<J: Sandbox> Inner<J> {
    /// Waits for a free slot, up to the queue timeout. `None`: overload.
    async fn acquire(&self, cfg: &SchedConfig) -> Option<SlotGuard<'_, J>> {
        let started = Instant::now();
        self.metrics.queue_enter();
        let waiting = self.waiting.fetch_add(1, Ordering::SeqCst);
        let permit = if waiting >= cfg.max_queue + self.free_count() {
            None
        } else {
            // tokio's semaphore is fair (FIFO), so waiters are served in arrival order.
            tokio::time::timeout(cfg.queue_timeout, self.permits.acquire())
                .await
                .ok()
                .and_then(Result::ok)
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.metrics.queue_leave(started.elapsed());
        // The guard gives the permit back (`add_permits`) when dropped.
        permit?.forget();
        Some(self.claim())
    }

    /// Waits for a free slot as long as it takes, in the same FIFO as Jobe runs, without
    /// counting against `max_queue` or `queue_timeout` (judge mode bounds its own queue).
    async fn acquire_unbounded(&self) -> SlotGuard<'_, J> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the slot semaphore is never closed");
        permit.forget();
        self.claim()
    }

    /// Takes a slot for a permit already acquired and forgotten.
    fn claim(&self) -> SlotGuard<'_, J> {
        let slot = self
            .free
            .lock()
            .expect("slot list lock is never poisoned: no panics while held")
            .pop()
            .expect("a permit guarantees a free slot");
        self.metrics.slot_taken();
        SlotGuard {
            sched: self,
            slot: Some(slot),
        }
    }

    fn free_count(&self) -> usize {
        self.permits.available_permits()
    }

    /// The whole job on one slot: files, compile, run, outcome. `claimed`: a permit already
    /// taken (and forgotten) by `try_run`; otherwise the job waits in the queue for one.
    async fn execute(&self, job: Job, claimed: bool) -> Result<RunResult, ExecError> {
        // Claim first, so that an early return below gives the slot back.
        let claimed = claimed.then(|| self.claim());
        // One snapshot for the whole run: a reload meanwhile applies from the next run on.
        let settings = self.settings.get();
        let profile = settings
            .registry
            .get(&job.language)
            .ok_or_else(|| ExecError::UnknownLanguage(job.language.clone()))?;
        // Plan before taking a slot: a bad request costs no slot and gets its 400 at once.
        let (dir_name, jail_dir) = Jail::new_run_dir_name();
        let plan = profile
            .plan(&job, &settings.config.plan, &jail_dir)
            .map_err(|e| ExecError::BadRequest(e.to_string()))?;
        let guard = match claimed {
            Some(g) => g,
            None => match self.acquire(&settings.config).await {
                Some(g) => g,
                None => return Ok(RunResult::overload()),
            },
        };
        let slot = guard.slot();
        let at = At {
            slot,
            dir_name: &dir_name,
            jail_dir: &jail_dir,
            lang: &job.language,
        };
        let use_ = match plan.deferred {
            None => Use::Compile,
            Some(_) => Use::Check,
        };
        let cached = self.cache_key(&settings, &job.language, &plan, use_, &jail_dir);
        // Each order removes its run directories before the slot goes back (the guard's drop).
        let result = match &plan.deferred {
            None => self.compile_and_run(&plan, &at, cached).await,
            Some(_) => self.run_then_check(&plan, &at, cached).await,
        };
        drop(guard);
        result
    }

    /// The compile cache and the key of `plan`'s compile step, if the cache is on and there is
    /// a compile step.
    fn cache_key(
        &self,
        settings: &Settings,
        lang: &str,
        plan: &Plan,
        use_: Use,
        jail_dir: &str,
    ) -> Option<(Arc<CompileCache>, Key)> {
        let cache = self.compile_cache.get()?;
        let step = plan.compile.as_ref()?;
        let (_, version) = settings.languages.iter().find(|(l, _)| l == lang)?;
        let tool = Toolchain {
            profile: lang,
            version,
        };
        let key = compile_cache::key(use_, tool, plan, step, jail_dir);
        Some((cache.clone(), key))
    }

    /// Stores what a leader's compile step ended with, if it is worth keeping: the step exited
    /// (not killed by a limit or a signal, no internal error).
    fn store_compile(
        &self,
        cache: &CompileCache,
        leader: &compile_cache::Leader<'_>,
        compiled: &CompileEnd,
        jail_dir: &str,
        snapshot: Option<compile_cache::Snapshot<'_>>,
    ) -> Option<Arc<Entry>> {
        if !compiled.exited {
            return None;
        }
        let stored = match &compiled.failed {
            Some(f) => cache.store(
                leader,
                Store::Failed {
                    outcome: f.outcome,
                    cmpinfo: &f.cmpinfo,
                    usage: &f.usage,
                    jail_dir,
                },
            ),
            None => cache.store(leader, Store::Passed { snapshot }),
        };
        let (bytes, entries) = cache.size();
        self.metrics.set_compile_cache_size(bytes, entries);
        stored
    }

    /// A new run directory `name` on `slot` holding the request's files.
    fn fresh_run_dir(
        &self,
        slot: &J::Slot,
        name: &str,
        plan: &Plan,
    ) -> Result<J::RunDir, ExecError> {
        let run_dir = self
            .jail
            .create_run_dir(slot, name, run_dir_size(plan))
            .map_err(internal("create run directory"))?;
        for (name, data) in &plan.files {
            run_dir
                .write_file(name, data)
                .map_err(internal("write job file"))?;
        }
        Ok(run_dir)
    }

    /// The two-step order: the compile step (if any), then the run step unless it failed.
    /// With the compile cache, a hit answers a failed compile at once, or restores the files
    /// the compile step left into a fresh run directory and runs; a miss compiles (once for
    /// concurrent identical requests) and stores the result.
    async fn compile_and_run(
        &self,
        plan: &Plan,
        at: &At<'_, J::Slot>,
        cached: Option<(Arc<CompileCache>, Key)>,
    ) -> Result<RunResult, ExecError> {
        let Some(step) = &plan.compile else {
            let run_dir = self.fresh_run_dir(at.slot, at.dir_name, plan)?;
            let out = self.run(plan, &run_dir, at.slot).await?;
            return Ok(verdict(plan, out));
        };
        let leader = match self.lookup_compile(cached.as_ref(), at).await {
            Cached::Failed(failed) => return Ok(failed),
            Cached::Files { entry, files } => {
                // Room for what the compile left, whatever this run's disk limit.
                let size = run_dir_size(plan).saturating_add(entry.bytes());
                let run_dir = self
                    .jail
                    .create_run_dir(at.slot, at.dir_name, size)
                    .map_err(internal("create run directory"))?;
                run_dir
                    .restore_from(&files)
                    .map_err(internal("restore a compile cache entry"))?;
                drop(entry);
                let out = self.run(plan, &run_dir, at.slot).await?;
                return Ok(verdict(plan, out));
            }
            Cached::Compile(leader) => leader,
        };
        let run_dir = self.fresh_run_dir(at.slot, at.dir_name, plan)?;
        let compiled = self.compile(plan, step, &run_dir, at.slot, None).await?;
        if let (Some((cache, _)), Some(leader)) = (&cached, &leader) {
            let snapshot = |to: &Path| run_dir.snapshot_to(to);
            self.store_compile(cache, leader, &compiled, at.jail_dir, Some(&snapshot));
        }
        // Waiters look again now, before this run's own run step.
        drop(leader);
        if let Some(failed) = compiled.failed {
            return Ok(failed);
        }
        let out = self.run(plan, &run_dir, at.slot).await?;
        Ok(verdict(plan, out))
    }

    /// What the compile cache has for a compile step (`cached`: the cache and the key, when
    /// it is on), counted as a hit or a miss of `at.lang`.
    async fn lookup_compile<'c>(
        &self,
        cached: Option<&'c (Arc<CompileCache>, Key)>,
        at: &At<'_, J::Slot>,
    ) -> Cached<'c> {
        let Some((cache, key)) = cached else {
            return Cached::Compile(None);
        };
        match cache.lookup(key).await {
            Lookup::Hit(entry) => {
                self.metrics.compile_cache_lookup(at.lang, true);
                if let Some(failed) = cached_failure(&entry, at.jail_dir) {
                    return Cached::Failed(failed);
                }
                match entry.files() {
                    Some(files) => Cached::Files { entry, files },
                    // A pass without files cannot stand for a compile: compile, store nothing.
                    None => Cached::Compile(None),
                }
            }
            Lookup::Lead(l) => {
                self.metrics.compile_cache_lookup(at.lang, false);
                Cached::Compile(Some(l))
            }
        }
    }

    /// The deferred order (docs/profiles.md, "Deferred check"): the run step first; then, only
    /// if its output says the check could fail or speak, the check in a fresh run directory of
    /// the same name, as it would have run before the run. A check that fails is the answer
    /// (outcome 11, the same cmpinfo as the two-step order); otherwise the run's verdict is.
    ///
    /// With the compile cache, a cached failed check is the answer at once (the two-step order
    /// would not have run the program either), a cached pass runs the program alone; a check
    /// that runs stores its result.
    async fn run_then_check(
        &self,
        plan: &Plan,
        at: &At<'_, J::Slot>,
        cached: Option<(Arc<CompileCache>, Key)>,
    ) -> Result<RunResult, ExecError> {
        let known = match self.known_check(cached.as_ref(), at) {
            Known::Failed(failed) => return Ok(failed),
            Known::Passed => true,
            Known::Unknown => false,
        };
        let run_dir = self.fresh_run_dir(at.slot, at.dir_name, plan)?;
        let out = self.run(plan, &run_dir, at.slot).await?;
        drop(run_dir);
        let (Some(step), Some(deferred)) = (&plan.compile, &plan.deferred) else {
            return Ok(verdict(plan, out));
        };
        if known {
            return Ok(verdict(plan, out));
        }
        if !deferred.needed(&evidence(plan, &out)) {
            self.metrics.deferred_check(DeferredCheck::Skipped);
            return Ok(verdict(plan, out));
        }
        match self.deferred_check(plan, step, at, cached.as_ref()).await? {
            Some(failed) => Ok(failed),
            None => Ok(verdict(plan, out)),
        }
    }

    /// What the compile cache already knows of `plan`'s deferred check, without waiting for an
    /// identical request's check (counted as a lookup, and a known result as `cached`).
    fn known_check(
        &self,
        cached: Option<&(Arc<CompileCache>, Key)>,
        at: &At<'_, J::Slot>,
    ) -> Known {
        let Some(entry) = cached.and_then(|(cache, key)| {
            let hit = cache.get(key);
            self.metrics.compile_cache_lookup(at.lang, hit.is_some());
            hit
        }) else {
            return Known::Unknown;
        };
        self.metrics.deferred_check(DeferredCheck::Cached);
        match cached_failure(&entry, at.jail_dir) {
            Some(failed) => Known::Failed(failed),
            None => Known::Passed,
        }
    }

    /// Runs the deferred check `step` of `plan` in a fresh run directory `at.dir_name` (as it
    /// would have run before the run step), once for identical concurrent requests with the
    /// compile cache, which keeps its result; counted in the metrics. Its refusal, or `None`
    /// when it passed.
    async fn deferred_check(
        &self,
        plan: &Plan,
        step: &Step,
        at: &At<'_, J::Slot>,
        cached: Option<&(Arc<CompileCache>, Key)>,
    ) -> Result<Option<RunResult>, ExecError> {
        let mut leader = None;
        if let Some((cache, key)) = cached {
            match cache.lookup(key).await {
                // Stored meanwhile by an identical request.
                Lookup::Hit(entry) => {
                    self.metrics.deferred_check(DeferredCheck::Cached);
                    return Ok(cached_failure(&entry, at.jail_dir));
                }
                Lookup::Lead(l) => leader = Some(l),
            }
        }
        let check_dir = self.fresh_run_dir(at.slot, at.dir_name, plan)?;
        let compiled = self.compile(plan, step, &check_dir, at.slot, None).await?;
        drop(check_dir);
        if let (Some((cache, _)), Some(leader)) = (cached, &leader) {
            self.store_compile(cache, leader, &compiled, at.jail_dir, None);
        }
        drop(leader);
        self.metrics.deferred_check(if compiled.failed.is_some() {
            DeferredCheck::Failed
        } else {
            DeferredCheck::Passed
        });
        Ok(compiled.failed)
    }

    /// Runs the compile step; `failed` is the answer when it failed (outcome 11, or 19 for a
    /// denied system call), `None` when the run may go on. With `cancel` (judge mode), the step
    /// is killed once it reads `true`.
    async fn compile(
        &self,
        plan: &Plan,
        step: &Step,
        run_dir: &J::RunDir,
        slot: &J::Slot,
        cancel: Option<tokio::sync::watch::Receiver<bool>>,
    ) -> Result<CompileEnd, ExecError> {
        let spec = JailSpec {
            step,
            policy: &plan.seccomp,
            run_dir,
            slot,
            stdin: None,
            extra_ro: &plan.extra_ro_paths,
        };
        let out = match cancel {
            Some(c) => self.jail.spawn_cancellable(spec, c).await,
            None => self.jail.spawn(spec).await,
        }
        .map_err(internal("compile step"))?;
        let limit = step.limits.stream_bytes;
        let mut info = cmpinfo(&plan.cmpinfo, &out.stdout, &out.stderr, |f| {
            run_dir.read_file(f, limit)
        });
        let failed = compile_failed(&plan.cmpinfo, &out, run_dir);
        if info.is_empty() && failed {
            // Jobe would go on and run nothing; say why the compile failed instead.
            info = compile_failure_message(&out.end).into_bytes();
        }
        let exited = matches!(out.end, End::Exited(_));
        if info.is_empty() {
            return Ok(CompileEnd {
                failed: None,
                exited,
            });
        }
        let outcome = if matches!(out.end, End::Syscall(_)) {
            Outcome::IllegalSyscall
        } else {
            Outcome::CompilationError
        };
        Ok(CompileEnd {
            failed: Some(RunResult {
                outcome,
                cmpinfo: info,
                stdout: Vec::new(),
                stderr: Vec::new(),
                usage: out.usage,
            }),
            exited,
        })
    }

    /// Runs the run step.
    async fn run(
        &self,
        plan: &Plan,
        run_dir: &J::RunDir,
        slot: &J::Slot,
    ) -> Result<JailOutput, ExecError> {
        self.jail
            .spawn(JailSpec {
                step: &plan.run,
                policy: &plan.seccomp,
                run_dir,
                slot,
                stdin: plan.stdin.as_deref(),
                extra_ro: &plan.extra_ro_paths,
            })
            .await
            .map_err(internal("run step"))
    }
}

/// Where a job runs: its slot, its run directory's name and path in the jail, its language.
struct At<'a, S> {
    slot: &'a S,
    dir_name: &'a str,
    jail_dir: &'a str,
    lang: &'a str,
}

/// What the compile cache knows of a deferred check before any run.
enum Known {
    /// A cached refusal: the answer, with this run's path in its cmpinfo.
    Failed(RunResult),
    /// A cached pass: no check is needed.
    Passed,
    Unknown,
}

/// What a run step's output tells the deferred check (`DeferredCheck::needed`).
fn evidence<'a>(plan: &Plan, out: &'a JailOutput) -> RunEvidence<'a> {
    RunEvidence {
        exited_0: out.end == End::Exited(0),
        cpu: Duration::from_secs_f64(out.usage.cpu_secs.max(0.0)),
        stdout: &out.stdout,
        stderr: &out.stderr,
        cap: plan.run.limits.stream_bytes,
    }
}

/// What the compile cache has for a compile step.
enum Cached<'c> {
    /// A cached refusal: the answer, with this run's path in its cmpinfo.
    Failed(RunResult),
    /// A cached pass and the files the compile left (the entry stays on disk while held).
    Files { entry: Arc<Entry>, files: PathBuf },
    /// Nothing to use: compile, and store through the leader if there is one.
    Compile(Option<compile_cache::Leader<'c>>),
}

/// How a compile step ended.
struct CompileEnd {
    /// The answer when it failed.
    failed: Option<RunResult>,
    /// It exited (not killed by a limit or a signal): its result may be cached.
    exited: bool,
}

/// The answer of a cached failed compile, for a run whose run directory is `jail_dir`
/// (`None`: the entry is a pass).
fn cached_failure(entry: &Entry, jail_dir: &str) -> Option<RunResult> {
    let Ending::Failed {
        outcome,
        cmpinfo,
        usage,
    } = entry.ending()
    else {
        return None;
    };
    Some(RunResult {
        outcome: *outcome,
        cmpinfo: Entry::cmpinfo_for(cmpinfo, jail_dir),
        stdout: Vec::new(),
        stderr: Vec::new(),
        usage: *usage,
    })
}

/// Size of the run directory's tmpfs: the larger disk limit of the two steps (one file may grow
/// to it) plus the request's files, each rounded up to whole pages.
fn run_dir_size(plan: &Plan) -> u64 {
    let disk = plan
        .compile
        .as_ref()
        .map_or(0, |c| c.limits.disk_bytes)
        .max(plan.run.limits.disk_bytes);
    let files: u64 = plan
        .files
        .iter()
        .map(|(_, data)| (data.len() as u64).div_ceil(4096) * 4096)
        .sum();
    disk.saturating_add(files)
}

fn internal(what: &'static str) -> impl FnOnce(JailError) -> ExecError {
    move |err| {
        tracing::error!(err = ?crate::telemetry::error_chain(&err), "{what} failed");
        ExecError::Internal(what.to_owned())
    }
}

fn compile_failed(rule: &CmpinfoRule, out: &JailOutput, run_dir: &impl RunFiles) -> bool {
    match rule {
        CmpinfoRule::FileUnlessExists { unless_exists, .. } => !run_dir.has_file(unless_exists),
        CmpinfoRule::Stderr { .. } => out.end != End::Exited(0),
    }
}

fn compile_failure_message(end: &End) -> String {
    match end {
        End::CpuTime | End::WallTime => "Compilation failed: time limit exceeded\n".to_owned(),
        End::Memory => "Compilation failed: memory limit exceeded\n".to_owned(),
        End::Syscall(name) => format!("Compilation failed: illegal system call: {name}\n"),
        End::Signaled(sig) => format!("Compilation failed: {}\n", signal_message(*sig)),
        End::ExecFailed(errno) => format!(
            "Compilation failed: cannot run the compiler: {}\n",
            std::io::Error::from_raw_os_error(*errno)
        ),
        End::Exited(code) => format!("Compilation failed with exit status {code}\n"),
    }
}

/// Jobe's outcome rules for the run step (docs/jobe-api.md §1.9), plus the verdicts Jobe never
/// gives.
fn verdict(plan: &Plan, out: JailOutput) -> RunResult {
    let JailOutput {
        stdout,
        stderr,
        end,
        usage,
        ..
    } = out;
    let mut stderr = filter_stderr(&plan.stderr_filter, stderr);
    let outcome = match &end {
        // Jobe blanks stderr on a time limit and keeps stdout.
        End::CpuTime | End::WallTime => {
            stderr.clear();
            Outcome::TimeLimit
        }
        End::Memory => Outcome::MemoryLimit,
        End::Syscall(name) => {
            stderr.extend_from_slice(format!("Illegal system call: {name}\n").as_bytes());
            Outcome::IllegalSyscall
        }
        End::Signaled(sig) => {
            // What `sh` prints when its child dies of a signal (Jobe runs programs via sh -c).
            stderr.extend_from_slice(format!("{}\n", signal_message(*sig)).as_bytes());
            Outcome::RuntimeError
        }
        End::ExecFailed(errno) => {
            let cmd = plan.run.argv.first().map_or("", String::as_str);
            stderr.extend_from_slice(
                format!("{cmd}: {}\n", std::io::Error::from_raw_os_error(*errno)).as_bytes(),
            );
            Outcome::RuntimeError
        }
        // The exit status is ignored: only stderr decides (Jobe; CodeRunner does the same).
        End::Exited(_) if stderr.is_empty() => Outcome::Success,
        End::Exited(_) => Outcome::RuntimeError,
    };
    RunResult {
        outcome,
        cmpinfo: Vec::new(),
        stdout,
        stderr,
        usage,
    }
}

/// The messages dash and bash print for a child killed by a signal.
pub fn signal_message(sig: i32) -> String {
    match sig {
        libc::SIGHUP => "Hangup".into(),
        libc::SIGINT => String::new(),
        libc::SIGQUIT => "Quit".into(),
        libc::SIGILL => "Illegal instruction".into(),
        libc::SIGTRAP => "Trace/breakpoint trap".into(),
        libc::SIGABRT => "Aborted".into(),
        libc::SIGBUS => "Bus error".into(),
        libc::SIGFPE => "Floating point exception".into(),
        libc::SIGKILL => "Killed".into(),
        libc::SIGUSR1 => "User defined signal 1".into(),
        libc::SIGSEGV => "Segmentation fault".into(),
        libc::SIGUSR2 => "User defined signal 2".into(),
        libc::SIGPIPE => "Broken pipe".into(),
        libc::SIGALRM => "Alarm clock".into(),
        libc::SIGTERM => "Terminated".into(),
        libc::SIGXCPU => "CPU time limit exceeded".into(),
        libc::SIGXFSZ => "File size limit exceeded".into(),
        libc::SIGSYS => "Bad system call".into(),
        other => format!("Killed by signal {other}"),
    }
}

/// A slot in use; returns it, then its (forgotten) semaphore permit, to the pool when dropped.
struct SlotGuard<'a, J: Sandbox> {
    sched: &'a Inner<J>,
    slot: Option<J::Slot>,
}

impl<J: Sandbox> SlotGuard<'_, J> {
    fn slot(&self) -> &J::Slot {
        self.slot.as_ref().expect("present until drop")
    }
}

impl<J: Sandbox> Drop for SlotGuard<'_, J> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            // Back before the permit (dropped after this body) lets the next waiter in.
            self.sched
                .free
                .lock()
                .expect("slot list lock is never poisoned: no panics while held")
                .push(slot);
            self.sched.metrics.slot_released();
            self.sched.permits.add_permits(1);
        }
    }
}

impl<J: Sandbox> Executor for Scheduler<J> {
    fn languages(&self) -> Vec<(String, String)> {
        self.inner.settings.get().languages.clone()
    }

    fn has_language(&self, id: &str) -> bool {
        self.inner
            .settings
            .get()
            .languages
            .iter()
            .any(|(l, _)| l == id)
    }

    fn run(&self, job: Job) -> BoxFuture<'_, Result<RunResult, ExecError>> {
        spawn_run(self.inner.clone(), job, false)
    }

    fn load(&self) -> Load {
        let slots = self.inner.slots_total;
        Load {
            slots,
            free: self.inner.free_count(),
            queued: self.inner.waiting.load(Ordering::SeqCst),
        }
    }

    fn try_run(&self, job: Job) -> Result<BoxFuture<'_, Result<RunResult, ExecError>>, Job> {
        // tokio's semaphore hands released permits to queued waiters first, so this never
        // jumps the queue.
        match self.inner.permits.try_acquire() {
            Ok(permit) => {
                permit.forget();
                Ok(spawn_run(self.inner.clone(), job, true))
            }
            Err(_) => Err(job),
        }
    }
}

/// Runs `job` in a task of its own and logs the run line. `claimed`: a permit is already held.
fn spawn_run<J: Sandbox>(
    inner: Arc<Inner<J>>,
    job: Job,
    claimed: bool,
) -> BoxFuture<'static, Result<RunResult, ExecError>> {
    let run = inner.run_seq.fetch_add(1, Ordering::Relaxed);
    let lang = job.language.clone();
    let metrics = inner.metrics.clone();
    // Its own task, started now: if the client goes away and the request future is dropped, the
    // job still runs to its end and cleans up (no half-torn-down jail, no unreaped init), and a
    // claimed slot is always given back.
    let task = tokio::spawn(async move { inner.execute(job, claimed).await });
    Box::pin(async move {
        let result = task.await.unwrap_or_else(|err| {
            tracing::error!(?err, "run task failed");
            Err(ExecError::Internal("run task failed".into()))
        });
        if let Ok(r) = &result {
            // Only what ran here has a usage (an overload never ran).
            if r.outcome != Outcome::ServerOverload {
                metrics.record_usage(&r.usage);
            }
            tracing::info!(
                run,
                lang = %lang,
                outcome = r.outcome.code(),
                cpu_ms = (r.usage.cpu_secs * 1000.0).round(),
                wall_ms = (r.usage.wall_secs * 1000.0).round(),
                peak_kib = r.usage.peak_memory_bytes / 1024,
                "run finished"
            );
        }
        result
    })
}

pub mod compile_cache;
mod compiled;

pub use self::compile_cache::{COMPILE_CACHE_DIR, CompileCache, CompileCacheError};
pub use self::compiled::{CaseOutput, Compilation, Compiled};

#[cfg(test)]
mod tests;
