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
    /// Whether compiling is still open: a deferred syntax check (docs/judge.md, "Deferred
    /// check") waits for a run to vouch for the program. The default: settled.
    fn compile_pending(&self) -> bool {
        false
    }
    /// Settles compiling once a case ran (the check runs now unless a run vouched for the
    /// program): `Some(output)` when the program does not compile after all (CE).
    fn settle_compile(&self) -> BoxFuture<'_, Result<Option<String>, BackendError>> {
        Box::pin(async { Ok(None) })
    }
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
    /// As [`compile`](Self::compile), with the compile step killed once `cancel` reads `true`
    /// (a cancelled submission). The default (fakes) ignores `cancel`.
    fn compile_cancellable(
        &self,
        req: CompileRequest,
        cancel: watch::Receiver<bool>,
    ) -> BoxFuture<'_, Result<CompileOutcome, BackendError>> {
        let _ = cancel;
        self.compile(req)
    }
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
        let settings = self.settings();
        let plan_config = &settings.config.plan;
        let profile = settings
            .registry()
            .get(&req.language)
            .ok_or_else(|| BackendError::UnknownLanguage(req.language.clone()))?;
        let (_, jail_dir) = Jail::new_run_dir_name();
        let mut job = job(req);
        job.params.cputime = job
            .params
            .cputime
            .map(|c| c.min(plan_config.cputime_max_secs));
        profile
            .plan(&job, plan_config, &jail_dir)
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
        Box::pin(compile_on(self, req, None))
    }

    fn compile_cancellable(
        &self,
        req: CompileRequest,
        cancel: watch::Receiver<bool>,
    ) -> BoxFuture<'_, Result<CompileOutcome, BackendError>> {
        Box::pin(compile_on(self, req, Some(cancel)))
    }
}

/// Compiles `req` on the scheduler's slots (the compile step killed once `cancel` reads `true`).
async fn compile_on(
    sched: &Scheduler<Jail>,
    req: CompileRequest,
    cancel: Option<watch::Receiver<bool>>,
) -> Result<CompileOutcome, BackendError> {
    match sched
        .compile_once(job(&req), req.output_limit, cancel)
        .await?
    {
        Compilation::Compiled(compiled) => {
            let program: Arc<dyn Program> = Arc::new(SchedProgram {
                sched: sched.clone(),
                compiled,
            });
            Ok(CompileOutcome::Compiled(program))
        }
        Compilation::Failed {
            outcome, cmpinfo, ..
        } => Ok(CompileOutcome::Failed {
            output: refusal_output(outcome, &cmpinfo),
        }),
    }
}

/// What the judge says of a compile step's refusal: Jobe's `cmpinfo`, or why it is empty.
fn refusal_output(outcome: Outcome, cmpinfo: &[u8]) -> String {
    let output = String::from_utf8_lossy(cmpinfo).into_owned();
    if outcome == Outcome::IllegalSyscall && output.is_empty() {
        return "the compiler made an illegal system call".into();
    }
    output
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

    fn compile_pending(&self) -> bool {
        self.compiled.compile_pending()
    }

    fn settle_compile(&self) -> BoxFuture<'_, Result<Option<String>, BackendError>> {
        Box::pin(async move {
            Ok(match self.sched.settle_compile(&self.compiled).await? {
                Compilation::Compiled(_) => None,
                Compilation::Failed {
                    outcome, cmpinfo, ..
                } => Some(refusal_output(outcome, &cmpinfo)),
            })
        })
    }
}
