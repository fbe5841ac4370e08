//! Compile once, run many: what judge mode needs of the scheduler (docs/judge.md, "Running a
//! submission"). The same slots, profiles, limits and jail as Jobe runs.
//!
//! [`Scheduler::compile_once`] plans a job exactly as a Jobe run (the profile's argv, clamped
//! limits), compiles it in a jail on a slot, and keeps what the compile step left as a read-only
//! [`Artifact`]; the slot is free again as soon as the compile is over.
//! [`Scheduler::run_compiled`] then runs it once per test case, each time on a free slot in a
//! fresh jail with a fresh run directory at the plan's path, the artifact's files bound
//! read-only into it, stdin from an open file, and stdout kept up to the output limit (with a
//! flag when more came).
//!
//! Slots are shared with Jobe runs (one FIFO), but judge mode's waits are not bounded by
//! `max_queue` or `queue_timeout`: the judge bounds its own queue. Every step runs in a task of
//! its own, so a caller that goes away never leaves a half-torn-down jail.
//!
//! With the compile cache (docs/performance.md, "Compile cache"), a submission whose compile
//! step was seen before takes the cached snapshot as its artifact ([`Artifact::adopt`]; the
//! entry stays on disk while the submission holds it) or its cached failure, and a new one is
//! stored: a rejudge compiles nothing.
//!
//! A language whose compile step is a deferred syntax check (python3, php: docs/profiles.md,
//! "Deferred check") is not checked up front: its artifact is the source, and the first run
//! that proves the main file compiled without a word settles it
//! ([`DeferredCheck::needed`](crate::profile::plan::DeferredCheck::needed), the rule Jobe runs
//! use). Otherwise [`Scheduler::settle_compile`] runs the check once, as the two-step order
//! would have before the first run (docs/judge.md, "Deferred check").
//!
//! Must not: know verdicts, test sets or comparison (the judge does).

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{OnceCell, watch};

use super::compile_cache::{CompileCache, Entry, Key, Use};
use super::{At, Cached, ExecError, Inner, Known, Scheduler, evidence, internal, run_dir_size};
use crate::jail::{Artifact, End, Jail, JailOutput, JailSpec, StepExtras};
use crate::job::{Job, Outcome, RunResult, Usage};
use crate::metrics::DeferredCheck;
use crate::profile::plan::{Limits, Plan};

/// A program compiled for judge mode: the plan of its run step and the artifact. Cheap to
/// clone; the artifact is removed when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Compiled {
    parts: Arc<Parts>,
}

#[derive(Debug)]
struct Parts {
    plan: Plan,
    /// The run directory's path in the jail at compile time: every case runs at the same path.
    jail_dir: String,
    artifact: Artifact,
    /// The compile cache entry the artifact is adopted from: kept on disk while held.
    entry: Option<Arc<Entry>>,
    /// A deferred syntax check not settled at compile time (`None`: nothing to settle).
    check: Option<PendingCheck>,
}

/// A deferred check that waits for the runs (see the module docs).
#[derive(Debug)]
struct PendingCheck {
    lang: String,
    /// The run directory name the submission was planned with (its path in the jail is the
    /// plan's): free again once the source was kept, the check runs in it.
    dir_name: String,
    /// Where its result goes in the compile cache (the key a Jobe run of the source uses).
    cached: Option<(Arc<CompileCache>, Key)>,
    /// A run proved the main file compiled without a word: the check would pass silently.
    proved: AtomicBool,
    /// The check's answer once it ran: `None` it passed, `Some` its refusal.
    ran: OnceCell<Option<RunResult>>,
}

impl Compiled {
    /// The limits of each run (CPU, wall, memory, and `stream_bytes`: the output limit).
    pub fn limits(&self) -> Limits {
        self.parts.plan.run.limits
    }

    /// Bytes of the compiled artifact.
    pub fn artifact_bytes(&self) -> u64 {
        // An adopted artifact does not count its files: the cache entry did.
        self.parts
            .entry
            .as_ref()
            .map_or(self.parts.artifact.bytes(), |e| e.bytes())
    }

    /// Whether compiling is still to be settled by [`Scheduler::settle_compile`]: a deferred
    /// check that no run has vouched for yet and that has not run.
    pub fn compile_pending(&self) -> bool {
        self.parts
            .check
            .as_ref()
            .is_some_and(|c| !c.proved.load(Ordering::Acquire) && !c.ran.initialized())
    }
}

/// How compiling went.
#[derive(Debug)]
pub enum Compilation {
    Compiled(Compiled),
    /// The compile step refused the program: Jobe's `cmpinfo`, with outcome 11 (or 19 for an
    /// illegal system call during the compile).
    Failed {
        outcome: Outcome,
        cmpinfo: Vec<u8>,
        usage: Usage,
    },
}

impl Compilation {
    /// The compile step's refusal, as Jobe answers it.
    fn failed(r: RunResult) -> Compilation {
        Compilation::Failed {
            outcome: r.outcome,
            cmpinfo: r.cmpinfo,
            usage: r.usage,
        }
    }

    /// A compile cache entry with files as the artifact, held while the submission runs.
    fn adopt(
        plan: Plan,
        jail_dir: String,
        entry: Arc<Entry>,
        files: &std::path::Path,
    ) -> Result<Compilation, ExecError> {
        let artifact = Artifact::adopt(files).map_err(internal("adopt a cached artifact"))?;
        Ok(Compilation::Compiled(Compiled {
            parts: Arc::new(Parts {
                plan,
                jail_dir,
                artifact,
                entry: Some(entry),
                check: None,
            }),
        }))
    }
}

/// What one run of a compiled program did.
#[derive(Debug, Clone)]
pub struct CaseOutput {
    pub end: End,
    /// At most the output limit.
    pub stdout: Vec<u8>,
    /// The program wrote more than the output limit (the rest was dropped).
    pub stdout_truncated: bool,
    pub usage: Usage,
}

impl Scheduler<Jail> {
    /// Plans `job` (its `input` is ignored: each case brings its own) as a Jobe run of its
    /// language, with the run step's stdout capped at `output_limit` bytes (clamped to the
    /// profile's largest stream; `None`: the profile's default), and compiles it on a free slot.
    /// A `cputime` above the server's maximum is lowered to it (judge mode clamps; a Jobe run is
    /// refused instead).
    /// With `cancel`, the compile step is killed once it reads `true` (or its sender is
    /// dropped): a cancelled submission frees its slot at once.
    pub async fn compile_once(
        &self,
        mut job: Job,
        output_limit: Option<u64>,
        cancel: Option<watch::Receiver<bool>>,
    ) -> Result<Compilation, ExecError> {
        let inner = self.inner.clone();
        let max = inner.settings.get().config.plan.cputime_max_secs;
        job.params.cputime = job.params.cputime.map(|c| c.min(max));
        let task = tokio::spawn(async move { inner.compile_once(job, output_limit, cancel).await });
        task.await
            .map_err(|e| ExecError::Internal(format!("compile task failed: {e}")))?
    }

    /// Runs `compiled` once with `stdin` as its standard input, on a free slot in a fresh jail.
    /// Once `cancel` reads `true`, or its sender is dropped, the run is killed (and ends as
    /// `End::Signaled(SIGKILL)`).
    pub async fn run_compiled(
        &self,
        compiled: &Compiled,
        stdin: File,
        cancel: watch::Receiver<bool>,
    ) -> Result<CaseOutput, ExecError> {
        let inner = self.inner.clone();
        let compiled = compiled.clone();
        let task = tokio::spawn(async move { inner.run_compiled(&compiled, &stdin, cancel).await });
        task.await
            .map_err(|e| ExecError::Internal(format!("run task failed: {e}")))?
    }

    /// Settles how compiling `compiled` went (see the module docs): its refusal when a
    /// deferred check that no run vouched for fails (the check runs once, on a free slot, however
    /// many callers ask), otherwise `compiled` itself. At once when nothing is pending.
    pub async fn settle_compile(&self, compiled: &Compiled) -> Result<Compilation, ExecError> {
        let inner = self.inner.clone();
        let parts = compiled.parts.clone();
        let task = tokio::spawn(async move { inner.settle_check(&parts).await });
        let refusal = task
            .await
            .map_err(|e| ExecError::Internal(format!("check task failed: {e}")))??;
        Ok(match refusal {
            Some(r) => Compilation::failed(r),
            None => Compilation::Compiled(compiled.clone()),
        })
    }
}

impl Inner<Jail> {
    async fn compile_once(
        &self,
        job: Job,
        output_limit: Option<u64>,
        cancel: Option<watch::Receiver<bool>>,
    ) -> Result<Compilation, ExecError> {
        let settings = self.settings.get();
        let profile = settings
            .registry()
            .get(&job.language)
            .ok_or_else(|| ExecError::UnknownLanguage(job.language.clone()))?;
        let (dir_name, jail_dir) = Jail::new_run_dir_name();
        let mut plan = profile
            .plan(&job, &settings.config.plan, &jail_dir)
            .map_err(|e| ExecError::BadRequest(e.to_string()))?;
        plan.stdin = None;
        // The limits a submission or a test set chooses are per case: the compile step keeps
        // the language's own (a 0.5 s problem must not make javac fail).
        let mut defaults = job.clone();
        defaults.params.cputime = None;
        defaults.params.memorylimit = None;
        plan.compile = profile
            .plan(&defaults, &settings.config.plan, &jail_dir)
            .map_err(|e| ExecError::BadRequest(e.to_string()))?
            .compile;
        // A case's memory is limited by the cgroup alone, so a program over its limit ends as
        // MLE (the cgroup's OOM count) instead of failing a `malloc` and ending as RE: judge mode
        // does not take the Jobe-compatible `RLIMIT_AS` of the native-code profiles
        // (docs/judge.md, "Verdicts").
        plan.run.limits.address_space_bytes = None;
        if let Some(limit) = output_limit {
            plan.run.limits.stream_bytes = limit.clamp(1, profile.stream_bytes_max());
        }
        let guard = self.acquire_unbounded().await;
        let slot = guard.slot();
        let at = At {
            slot,
            dir_name: &dir_name,
            jail_dir: &jail_dir,
            lang: &job.language,
        };
        if plan.deferred.is_some() {
            let cached = self.cache_key(&settings, &job.language, &plan, Use::Check, &jail_dir);
            let check = match self.known_check(cached.as_ref(), &at) {
                Known::Failed(failed) => return Ok(Compilation::failed(failed)),
                Known::Passed => None,
                Known::Unknown => Some(PendingCheck {
                    lang: job.language.clone(),
                    dir_name: dir_name.clone(),
                    cached,
                    proved: AtomicBool::new(false),
                    ran: OnceCell::new(),
                }),
            };
            // The artifact is the source itself.
            let run_dir = self.fresh_run_dir(slot, &dir_name, &plan)?;
            let artifact = self
                .jail
                .make_artifact(&run_dir)
                .map_err(internal("keep the source as the artifact"))?;
            drop(run_dir);
            drop(guard);
            return Ok(Compilation::Compiled(Compiled {
                parts: Arc::new(Parts {
                    plan,
                    jail_dir,
                    artifact,
                    entry: None,
                    check,
                }),
            }));
        }
        let cached = self.cache_key(&settings, &job.language, &plan, Use::Compile, &jail_dir);
        let leader = match self.lookup_compile(cached.as_ref(), &at).await {
            Cached::Failed(failed) => return Ok(Compilation::failed(failed)),
            Cached::Files { entry, files } => {
                drop(guard);
                return Compilation::adopt(plan, jail_dir, entry, &files);
            }
            Cached::Compile(leader) => leader,
        };
        let run_dir = self
            .jail
            .create_run_dir(slot, &dir_name, run_dir_size(&plan))
            .map_err(internal("create run directory"))?;
        for (name, data) in &plan.files {
            run_dir
                .write_file(name, data)
                .map_err(internal("write job file"))?;
        }
        if let Some(step) = &plan.compile {
            let compiled = self.compile(&plan, step, &run_dir, slot, cancel).await?;
            let stored = match (&cached, &leader) {
                (Some((cache, _)), Some(leader)) => {
                    let snapshot = |to: &std::path::Path| crate::jail::copy_out(&run_dir, to);
                    self.store_compile(cache, leader, &compiled, &jail_dir, Some(&snapshot))
                }
                _ => None,
            };
            drop(leader);
            if let Some(failed) = compiled.failed {
                return Ok(Compilation::failed(failed));
            }
            // The stored snapshot is the artifact: one copy, not two.
            if let Some((entry, files)) = stored.and_then(|e| e.files().map(|f| (e, f))) {
                drop(run_dir);
                drop(guard);
                return Compilation::adopt(plan, jail_dir, entry, &files);
            }
        }
        let artifact = self
            .jail
            .make_artifact(&run_dir)
            .map_err(internal("keep the compiled artifact"))?;
        drop(run_dir);
        drop(guard);
        Ok(Compilation::Compiled(Compiled {
            parts: Arc::new(Parts {
                plan,
                jail_dir,
                artifact,
                entry: None,
                check: None,
            }),
        }))
    }

    async fn run_compiled(
        &self,
        compiled: &Compiled,
        stdin: &File,
        cancel: watch::Receiver<bool>,
    ) -> Result<CaseOutput, ExecError> {
        let parts = &compiled.parts;
        let plan = &parts.plan;
        let guard = self.acquire_unbounded().await;
        let slot = guard.slot();
        let (dir_name, _) = Jail::new_run_dir_name();
        let size = plan.run.limits.disk_bytes + parts.artifact.entries().len() as u64 * 4096;
        let mut run_dir = self
            .jail
            .create_run_dir(slot, &dir_name, size)
            .map_err(internal("create run directory"))?;
        // A fresh directory on the host, seen at the compile step's path in the jail (the
        // plan's argv and environment name it; parallel cases each have their own mount
        // namespace).
        run_dir.jail.clone_from(&parts.jail_dir);
        let out = self
            .jail
            .spawn_with(
                JailSpec {
                    step: &plan.run,
                    policy: &plan.seccomp,
                    run_dir: &run_dir,
                    slot,
                    stdin: None,
                    extra_ro: &plan.extra_ro_paths,
                },
                StepExtras {
                    stdin_file: Some(stdin),
                    artifact: Some(&parts.artifact),
                    cancel: Some(cancel),
                    kill_on_stdout_overflow: true,
                },
            )
            .await
            .map_err(internal("run a test case"))?;
        drop(run_dir);
        drop(guard);
        self.vouch(parts, &out);
        Ok(CaseOutput {
            end: out.end,
            stdout: out.stdout,
            stdout_truncated: out.stdout_truncated,
            usage: out.usage,
        })
    }

    /// A finished run of a submission with a pending check: if it proves the main file
    /// compiled without a word, the check is settled as passed (the Jobe rule).
    fn vouch(&self, parts: &Parts, out: &JailOutput) {
        let (Some(check), Some(deferred)) = (&parts.check, &parts.plan.deferred) else {
            return;
        };
        if check.proved.load(Ordering::Acquire) || check.ran.initialized() {
            return;
        }
        if !deferred.needed(&evidence(&parts.plan, out))
            && !check.proved.swap(true, Ordering::AcqRel)
        {
            self.metrics.deferred_check(DeferredCheck::Skipped);
        }
    }

    /// The pending check's answer (see [`Scheduler::settle_compile`]).
    async fn settle_check(&self, parts: &Parts) -> Result<Option<RunResult>, ExecError> {
        let Some(check) = &parts.check else {
            return Ok(None);
        };
        if check.proved.load(Ordering::Acquire) {
            return Ok(None);
        }
        check
            .ran
            .get_or_try_init(|| self.run_check(parts, check))
            .await
            .cloned()
    }

    /// Runs the deferred check on a free slot in a fresh run directory at the plan's path, as
    /// the two-step order would have before the first run.
    async fn run_check(
        &self,
        parts: &Parts,
        check: &PendingCheck,
    ) -> Result<Option<RunResult>, ExecError> {
        let Some(step) = &parts.plan.compile else {
            return Ok(None);
        };
        let guard = self.acquire_unbounded().await;
        let at = At {
            slot: guard.slot(),
            dir_name: &check.dir_name,
            jail_dir: &parts.jail_dir,
            lang: &check.lang,
        };
        let failed = self
            .deferred_check(&parts.plan, step, &at, check.cached.as_ref())
            .await?;
        drop(guard);
        Ok(failed)
    }
}
