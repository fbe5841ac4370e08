//! The seam between the HTTP front end and whatever runs a parsed run.
//!
//! `api` reads, routes and parses requests and encodes answers; it hands every parsed run to a
//! [`Dispatch`] and never learns whether the run ran here or on another runner. Whether a
//! request comes from a client or from a peer (a sibling runner) and whether that claim is
//! proven, the load a runner reports on its responses, and its status for peers are the
//! dispatcher's business too: the API only asks. The daemon's dispatcher is peer mode's (wired
//! in `server`); any `sched::Executor` is also a plain dispatcher (every request a client's,
//! every run local), which is what the HTTP tests' fakes are.
//!
//! Owns: the `Dispatch` trait, `Run`, `Caller`, `Refused`, the status path, and the plain
//! dispatcher. Must not: read bodies, route, depend on `peer` (which implements this seam) or
//! know its headers, or run anything itself.

use bytes::Bytes;
use hyper::HeaderMap;

use crate::job::{Job, RunResult};
use crate::sched::{BoxFuture, ExecError, Executor};

/// The path of the status a dispatcher gives its peers ([`Dispatch::status`]); `api` routes it.
pub const STATUS_PATH: &str = "/peer/status";

/// Who sent a request, as the dispatcher judged its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A client: API keys apply, and its runs may go elsewhere.
    Client,
    /// A peer (a sibling runner) that proved who it is. API keys do not apply: the runner a run
    /// first reached checked the client's key.
    Peer,
    /// A peer handing over a run it was sent: the run stays here.
    Forwarded,
}

/// A request claims to come from a peer without proving it (HTTP 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("peer headers without the peer key")]
pub struct Refused;

/// A parsed run, as the API hands it on.
#[derive(Debug)]
pub struct Run {
    /// The job, its `file_list` files already read from the cache.
    pub job: Job,
    pub caller: Caller,
    /// The request body as received (a dispatcher may send it on unchanged).
    pub body: Bytes,
    /// The ids of `file_list`, in order (a dispatcher may need to send the files on).
    pub file_ids: Vec<String>,
}

/// Where the API sends what it cannot answer alone.
pub trait Dispatch: Send + Sync + 'static {
    /// Judges a request's headers before it is handled (every routed request).
    fn admit(&self, headers: &HeaderMap) -> Result<Caller, Refused>;
    /// The languages served, as `(id, version)`, for `GET /languages`.
    fn languages(&self) -> Vec<(String, String)>;
    /// Whether a run in language `id` can be served (checked while a request is parsed).
    fn serves(&self, id: &str) -> bool;
    /// Runs `run`, here or elsewhere. Resolves to outcome 21 when nothing frees up in time.
    fn dispatch(&self, run: Run) -> BoxFuture<'_, Result<RunResult, ExecError>>;
    /// Adds this dispatcher's headers to a response (every response).
    fn response_headers(&self, headers: &mut HeaderMap);
    /// The body of `GET /peer/status` for `caller`; `None`: refused (HTTP 403).
    fn status(&self, caller: Caller) -> Option<serde_json::Value>;
    /// Appends this dispatcher's metric families to a `GET /metrics` body.
    fn render_metrics(&self, out: &mut String);
}

/// An executor alone: every request is a client's, every run runs on it, no extra headers,
/// metrics or status.
impl<E: Executor> Dispatch for E {
    fn admit(&self, _headers: &HeaderMap) -> Result<Caller, Refused> {
        Ok(Caller::Client)
    }

    fn languages(&self) -> Vec<(String, String)> {
        Executor::languages(self)
    }

    fn serves(&self, id: &str) -> bool {
        self.has_language(id)
    }

    fn dispatch(&self, run: Run) -> BoxFuture<'_, Result<RunResult, ExecError>> {
        self.run(run.job)
    }

    fn response_headers(&self, _headers: &mut HeaderMap) {}

    fn status(&self, _caller: Caller) -> Option<serde_json::Value> {
        None
    }

    fn render_metrics(&self, _out: &mut String) {}
}
