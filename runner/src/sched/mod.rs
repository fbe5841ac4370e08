//! Admission: a pool of slots, a bounded wait for one, and the `Executor` seam that `api` calls.
//!
//! `api` never sees jails or profiles: it hands a `Job` to an `Executor` and gets back a
//! `RunResult` (which may be outcome 21) or an `ExecError` that maps to an HTTP status.

use std::future::Future;
use std::pin::Pin;

use crate::job::{Job, RunResult};

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
    /// Compile and run `job`. Resolves to outcome 21 when no slot frees up in time.
    fn run(&self, job: Job) -> BoxFuture<'_, Result<RunResult, ExecError>>;
}
