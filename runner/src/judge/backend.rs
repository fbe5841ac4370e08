//! What the judge needs of whatever runs programs: compile a submission once, then run the
//! compiled program once per test case. [`Backend`] is that seam; the daemon's backend is the
//! scheduler (`sched::Scheduler<Jail>`: the same slots, profiles, limits and jail as Jobe runs),
//! and the engine's unit tests use a scripted fake, so the judging logic (order, parallelism,
//! cancel, events, durability) is tested without root.
//!
//! Owns: the trait, the request it takes, and the scheduler's implementation (the precedence of
//! limits is applied by the engine before it calls in). Must not: decide verdicts or compare
//! outputs (the engine does), or know about HTTP.

use std::fs::File;
use std::sync::Arc;

use tokio::sync::watch;

use crate::jail::Jail;
use crate::job::{Job, Outcome, Params};
use crate::profile::PlanError;
use crate::profile::plan::Limits;
use crate::sched::{BoxFuture, CaseOutput, Compilation, Compiled, ExecError, Executor, Scheduler};

/// What to compile, with the limits already chosen (docs/judge.md, "Limits").
#[derive(Debug, Clone, PartialEq)]
pub struct CompileRequest {
    pub language: String,
    pub sourcecode: String,
    pub sourcefilename: Option<String>,
    /// CPU seconds per case; `None`: the language's default.
    pub cputime: Option<f64>,
    /// MB per case; `None`: the language's default.
    pub memorylimit: Option<f64>,
    /// Bytes of stdout per case; `None`: the language's default stream size.
    pub output_limit: Option<u64>,
}

/// How compiling went.
pub enum CompileOutcome {
    Compiled(Arc<dyn Program>),
    /// The compiler refused the program: what it said (Jobe's `cmpinfo`).
    Failed {
        output: String,
    },
}

/// A compiled program: run it once per case.
pub trait Program: Send + Sync + 'static {
    /// The limits of each run (for messages: "CPU time limit (1 s)").
    fn limits(&self) -> Limits;
    /// Runs the program with `stdin` as its standard input. Once `cancel` reads `true` (or its
    /// sender is dropped) the run is killed.
    fn run(
        &self,
        stdin: File,
        cancel: watch::Receiver<bool>,
    ) -> BoxFuture<'_, Result<CaseOutput, BackendError>>;
}

/// A fault of the backend, never the program's doing (the case or submission gets IE).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The request cannot be planned for its language (e.g. a bad source file name): the
    /// request field at fault and why.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("language '{0}' is not known")]
    UnknownLanguage(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ExecError> for BackendError {
    fn from(e: ExecError) -> BackendError {
        match e {
            ExecError::BadRequest(reason) => BackendError::Invalid {
                field: "body",
                reason,
            },
            ExecError::UnknownLanguage(l) => BackendError::UnknownLanguage(l),
            ExecError::Internal(m) => BackendError::Internal(m),
        }
    }
}

/// Compiles and runs programs for the judge.
pub trait Backend: Send + Sync + 'static {
    /// Whether programs in `language` (lower-case) can be judged here.
    fn serves(&self, language: &str) -> bool;
    /// Checks that `req` can be planned (source file name, limits), without running anything:
    /// a submission that cannot is refused with 400 before it is accepted.
    fn check(&self, req: &CompileRequest) -> Result<(), BackendError>;
    /// Compiles `req` once.
    fn compile(&self, req: CompileRequest) -> BoxFuture<'_, Result<CompileOutcome, BackendError>>;
}

fn job(req: &CompileRequest) -> Job {
    Job {
        language: req.language.clone(),
        source: req.sourcecode.clone(),
        source_name: req.sourcefilename.clone(),
        input: String::new(),
        files: Vec::new(),
        params: Params {
            cputime: req.cputime,
            memorylimit: req.memorylimit,
            ..Params::default()
        },
        debug: false,
        details: false,
    }
}

/// The daemon's backend: the scheduler, its slots and the jail.
impl Backend for Scheduler<Jail> {
    fn serves(&self, language: &str) -> bool {
        self.has_language(language)
    }

    fn check(&self, req: &CompileRequest) -> Result<(), BackendError> {
        let profile = self
            .registry()
            .get(&req.language)
            .ok_or_else(|| BackendError::UnknownLanguage(req.language.clone()))?;
        let (_, jail_dir) = Jail::new_run_dir_name();
        let mut job = job(req);
        job.params.cputime = job
            .params
            .cputime
            .map(|c| c.min(self.plan_config().cputime_max_secs));
        profile
            .plan(&job, self.plan_config(), &jail_dir)
            .map(|_| ())
            .map_err(|e| {
                let field = match &e {
                    PlanError::BadSourceName { .. } => "sourcefilename",
                    PlanError::InvalidParam {
                        param: "memorylimit",
                        ..
                    } => "limits.memorylimit",
                    PlanError::InvalidParam { .. } | PlanError::CputimeTooLarge { .. } => {
                        "limits.cputime"
                    }
                    _ => "body",
                };
                BackendError::Invalid {
                    field,
                    reason: e.to_string(),
                }
            })
    }

    fn compile(&self, req: CompileRequest) -> BoxFuture<'_, Result<CompileOutcome, BackendError>> {
        Box::pin(async move {
            match self.compile_once(job(&req), req.output_limit).await? {
                Compilation::Compiled(compiled) => {
                    let program: Arc<dyn Program> = Arc::new(SchedProgram {
                        sched: self.clone(),
                        compiled,
                    });
                    Ok(CompileOutcome::Compiled(program))
                }
                Compilation::Failed {
                    outcome, cmpinfo, ..
                } => {
                    let mut output = String::from_utf8_lossy(&cmpinfo).into_owned();
                    if outcome == Outcome::IllegalSyscall && output.is_empty() {
                        output = "the compiler made an illegal system call".into();
                    }
                    Ok(CompileOutcome::Failed { output })
                }
            }
        })
    }
}

struct SchedProgram {
    sched: Scheduler<Jail>,
    compiled: Compiled,
}

impl Program for SchedProgram {
    fn limits(&self) -> Limits {
        self.compiled.limits()
    }

    fn run(
        &self,
        stdin: File,
        cancel: watch::Receiver<bool>,
    ) -> BoxFuture<'_, Result<CaseOutput, BackendError>> {
        Box::pin(async move {
            Ok(self
                .sched
                .run_compiled(&self.compiled, stdin, cancel)
                .await?)
        })
    }
}
