//! Judge mode's HTTP API under `/judge/v1/` (docs/judge.md, "HTTP API"): test sets (PUT, GET,
//! DELETE), submissions (POST, GET, DELETE) and their events as Server-Sent Events.
//!
//! Owns: reading these requests (a test-set archive is streamed to the store's spool, with its
//! own cap `judge.max_testset_bytes`, not `api.max_body_bytes`), the answers and their statuses,
//! and the SSE stream (ids, `Last-Event-ID`, keep-alive comments, a bounded buffer). Errors are
//! JSON objects `{"error": "...", "field": "..."}` (the field when one is at fault); the Jobe
//! API's errors stay JSON strings.
//!
//! Must not: log sources, outputs or archive contents, or put a host path in an answer (store
//! and journal errors go to the log; the client gets a generic 500).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;

use super::error::ApiError;
use super::router::JudgeRoute;
use super::{API_KEY_HEADER, AppState, read_body};
use crate::judge::origin::SpoolError;
use crate::judge::provider::PutError;
use crate::judge::testset::{PutStatus, TestsetError};
use crate::judge::{
    CancelOutcome, EventId, Judge, SubmissionRequest, SubmitError, SubmitMode, TestsetId,
};
use crate::telemetry::error_chain;

/// A response body: a whole JSON document, or an event stream.
pub(crate) type ApiBody = BoxBody<Bytes, Infallible>;

/// How long an event stream may be idle before a keep-alive comment is sent.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Chunks an event stream buffers for a slow reader before it waits for the reader.
const SSE_BUFFER: usize = 16;
/// `Retry-After` when draining (a restart takes a few seconds) and when the queue is full.
const RETRY_AFTER_DRAINING: u64 = 5;
const RETRY_AFTER_FULL: u64 = 1;

/// An error of the judge API: status, message, the field at fault, `Retry-After`.
#[derive(Debug)]
pub(crate) struct JudgeError {
    status: StatusCode,
    message: String,
    field: Option<&'static str>,
    retry_after: Option<u64>,
}

fn err(status: StatusCode, message: impl Into<String>) -> JudgeError {
    JudgeError {
        status,
        message: message.into(),
        field: None,
        retry_after: None,
    }
}

fn field_err(field: &'static str, message: impl Into<String>) -> JudgeError {
    JudgeError {
        field: Some(field),
        ..err(StatusCode::BAD_REQUEST, message)
    }
}

fn internal(request: u64) -> JudgeError {
    err(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Server exception (internal error, request {request})"),
    )
}

impl JudgeError {
    /// The Jobe half's errors (keys, body size, timeouts) in this API's form.
    fn from_api(e: &ApiError, request: u64) -> JudgeError {
        err(e.status(), e.message(request))
    }

    fn response(self) -> Response<ApiBody> {
        let mut body = json!({ "error": self.message });
        if let Some(f) = self.field {
            body["field"] = f.into();
        }
        let mut r = json(self.status, &body);
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

fn json<T: serde::Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<ApiBody> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(http_body_util::Full::new(Bytes::from(bytes)).boxed());
    *r.status_mut() = status;
    super::set_common_headers(&mut r, true);
    r
}

/// Handles one judge route. `request` is the request number (for 500s).
pub(crate) async fn handle(
    state: &Arc<AppState>,
    route: JudgeRoute,
    req: Request<Incoming>,
    request: u64,
) -> Response<ApiBody> {
    match handle_inner(state, route, req, request).await {
        Ok(r) => r,
        Err(e) => e.response(),
    }
}

async fn handle_inner(
    state: &Arc<AppState>,
    route: JudgeRoute,
    req: Request<Incoming>,
    request: u64,
) -> Result<Response<ApiBody>, JudgeError> {
    let Some(judge) = state.judge.clone() else {
        return Err(err(
            StatusCode::SERVICE_UNAVAILABLE,
            "judge mode is not running on this server",
        ));
    };
    check_key(state, &req, matches!(route, JudgeRoute::Submit), request)?;
    match route {
        JudgeRoute::PutTestset(p, v) => put_testset(state, &judge, &p, &v, req, request).await,
        JudgeRoute::GetTestset(p, v) => {
            let id = testset_id(&p, &v)?;
            match judge.testsets().store().get(&id) {
                Some(lease) => Ok(json(StatusCode::OK, &**lease.manifest())),
                None => Err(err(StatusCode::NOT_FOUND, format!("unknown test set {id}"))),
            }
        }
        JudgeRoute::DeleteTestset(p, v) => {
            let id = testset_id(&p, &v)?;
            let store = judge.testsets().store().clone();
            let key = id.clone();
            let deleted = tokio::task::spawn_blocking(move || store.delete(&key)).await;
            match deleted {
                Ok(Ok(true)) => Ok(json(StatusCode::OK, &json!({ "deleted": id.to_string() }))),
                Ok(Ok(false)) => Err(err(StatusCode::NOT_FOUND, format!("unknown test set {id}"))),
                Ok(Err(e)) => {
                    tracing::error!(error = %error_chain(&e), "deleting a test set failed");
                    Err(internal(request))
                }
                Err(e) => {
                    tracing::error!(error = %e, "delete task failed");
                    Err(internal(request))
                }
            }
        }
        JudgeRoute::Submit => submit(state, &judge, req, request).await,
        JudgeRoute::GetSubmission(id) => match judge.get(&id).await {
            Some(r) => Ok(json(StatusCode::OK, &r)),
            None => Err(unknown_submission(&id)),
        },
        JudgeRoute::Events(id) => {
            let after = last_event_id(&req);
            match judge.subscribe(&id, after).await {
                Some(sub) => Ok(sse(sub)),
                None => Err(unknown_submission(&id)),
            }
        }
        JudgeRoute::Cancel(id) => match judge.cancel(&id).await {
            Some(CancelOutcome::Cancelled) => {
                let r = judge.wait(&id, Duration::from_secs(5)).await;
                Ok(json(StatusCode::OK, &r))
            }
            Some(CancelOutcome::Finished) => Err(err(
                StatusCode::CONFLICT,
                format!("submission {id} has finished; there is nothing to cancel"),
            )),
            None => Err(unknown_submission(&id)),
        },
    }
}

/// A request under `/judge/v1/` that is none of this API's (an unknown path, a method a path
/// does not take, characters a URI may not hold): the router's error in this API's form.
pub(crate) fn unrouted(e: &ApiError) -> Response<ApiBody> {
    match e {
        ApiError::BadUri => err(
            StatusCode::BAD_REQUEST,
            "the path holds characters that a URI may not hold",
        ),
        _ => err(StatusCode::NOT_FOUND, "no such request in the judge API"),
    }
    .response()
}

fn unknown_submission(id: &str) -> JudgeError {
    // The id is echoed only when it is a valid one (no client text of any shape in answers).
    if crate::judge::submission::is_valid_id(id) {
        err(StatusCode::NOT_FOUND, format!("unknown submission {id}"))
    } else {
        err(StatusCode::NOT_FOUND, "unknown submission")
    }
}

/// API keys (docs/judge.md, "API keys"): with `[api.keys]`, every judge request needs a listed
/// key; a submission spends one run of the key's hourly budget, as a Jobe run does.
fn check_key(
    state: &AppState,
    req: &Request<Incoming>,
    spend: bool,
    request: u64,
) -> Result<(), JudgeError> {
    let config = state.config.get();
    let Some(keys) = &config.api_keys else {
        return Ok(());
    };
    let key = req
        .headers()
        .get(API_KEY_HEADER)
        .map(|v| v.to_str().unwrap_or(""));
    let checked = if spend {
        state.rate_limiter.check(keys, key, Instant::now())
    } else {
        match key {
            None => Err(ApiError::MissingKey),
            Some(k) if keys.contains_key(k) => Ok(()),
            Some(_) => Err(ApiError::UnknownKey),
        }
    };
    checked.map_err(|e| JudgeError::from_api(&e, request))
}

fn testset_id(problem: &str, version: &str) -> Result<TestsetId, JudgeError> {
    TestsetId::new(problem, version).map_err(|e| {
        let field = match &e {
            TestsetError::InvalidName { what, .. } if *what == "version" => "version",
            _ => "problem",
        };
        field_err(field, e.to_string())
    })
}

async fn put_testset(
    state: &AppState,
    judge: &Judge,
    problem: &str,
    version: &str,
    req: Request<Incoming>,
    request: u64,
) -> Result<Response<ApiBody>, JudgeError> {
    let id = testset_id(problem, version)?;
    let max = judge.testsets().store().limits().max_bytes;
    let too_large = || {
        err(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "test set {id}: the archive is larger than {max} bytes (judge.max_testset_bytes)"
            ),
        )
    };
    if super::declared_length(&req).is_some_and(|n| n > max) {
        return Err(too_large());
    }
    // An archive may be large: ten times the time a run's body may take.
    let timeout = state.config.get().body_read_timeout * 10;
    let put = tokio::time::timeout(timeout, judge.testsets().put_body(&id, req.into_body()))
        .await
        .map_err(|_| {
            err(
                StatusCode::REQUEST_TIMEOUT,
                "Request body not received in time",
            )
        })?;
    match put {
        Ok(put) => {
            let status = match put.status {
                PutStatus::Created => StatusCode::CREATED,
                PutStatus::Unchanged => StatusCode::OK,
            };
            Ok(json(status, &**put.manifest()))
        }
        Err(PutError::Body(SpoolError::TooLarge { .. })) => Err(too_large()),
        Err(PutError::Body(SpoolError::Body(_))) => Err(err(
            StatusCode::BAD_REQUEST,
            format!("test set {id}: the request body could not be read"),
        )),
        Err(PutError::Store(TestsetError::Conflict { id })) => Err(err(
            StatusCode::CONFLICT,
            TestsetError::Conflict { id }.to_string(),
        )),
        Err(PutError::Store(e)) if !e.is_internal() => {
            Err(err(StatusCode::BAD_REQUEST, error_chain(&e)))
        }
        Err(e) => {
            tracing::error!(testset = %id, error = %error_chain(&e), "storing a test set failed");
            Err(internal(request))
        }
    }
}

async fn submit(
    state: &AppState,
    judge: &Judge,
    req: Request<Incoming>,
    request: u64,
) -> Result<Response<ApiBody>, JudgeError> {
    let wait = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| matches!(kv, "wait=true" | "wait=1" | "wait"))
    });
    let body = read_body(req, &state.config.get())
        .await
        .map_err(|e| JudgeError::from_api(&e, request))?;
    let sub = SubmissionRequest::from_json(&body).map_err(|e| field_err(e.field, e.to_string()))?;
    tracing::Span::current().record("lang", sub.language_id.as_str());
    let submitted = judge
        .submit(sub, SubmitMode::Idempotent)
        .await
        .map_err(|e| match e {
            SubmitError::Draining => JudgeError {
                retry_after: Some(RETRY_AFTER_DRAINING),
                ..err(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            },
            SubmitError::QueueFull(_) => JudgeError {
                retry_after: Some(RETRY_AFTER_FULL),
                ..err(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            },
            SubmitError::UnknownLanguage(l) => {
                field_err("language_id", crate::job::wire::unknown_language(&l))
            }
            SubmitError::UnknownTestset(_) => err(StatusCode::NOT_FOUND, e.to_string()),
            SubmitError::Invalid { field, reason } => {
                field_err(field, format!("{field}: {reason}"))
            }
            SubmitError::Journal(j) => {
                tracing::error!(error = %error_chain(&j), "journaling a submission failed");
                internal(request)
            }
        })?;
    let accepted = submitted.accepted;
    tracing::debug!(submission = %accepted.id, existing = submitted.existing, "submission accepted");
    if wait {
        let max = judge.settings().wait_max;
        if let Some(r) = judge.wait(&accepted.id, max).await
            && r.status.is_final()
        {
            return Ok(json(StatusCode::OK, &r));
        }
    }
    let mut r = json(StatusCode::ACCEPTED, &accepted);
    if let Ok(v) = HeaderValue::from_str(&accepted.links.self_) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// `Last-Event-ID` (the header an `EventSource` sends on reconnecting), or `?last_event_id=`.
fn last_event_id(req: &Request<Incoming>) -> Option<EventId> {
    let header = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    header.or_else(|| {
        req.uri()
            .query()?
            .split('&')
            .find_map(|kv| kv.strip_prefix("last_event_id="))
            .and_then(|v| v.parse().ok())
    })
}

/// An event stream: each event as `id:`, `event:`, `data:` (one line of JSON), a comment every
/// [`KEEP_ALIVE`] while idle; it ends after `done` (or when the server drains). At most
/// [`SSE_BUFFER`] chunks wait for a slow reader; then the producer waits for it (and a reader
/// that takes nothing for `api.send_timeout_secs` loses its connection).
fn sse(mut sub: crate::judge::Subscription) -> Response<ApiBody> {
    let (tx, rx) = mpsc::channel::<Bytes>(SSE_BUFFER);
    tokio::spawn(async move {
        if tx
            .send(Bytes::from_static(b"retry: 2000\n\n"))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let chunk = tokio::select! {
                ev = sub.next() => match ev {
                    Some((id, e)) => Bytes::from(format!(
                        "id: {id}\nevent: {}\ndata: {}\n\n",
                        e.name(),
                        e.data()
                    )),
                    None => return,
                },
                () = tokio::time::sleep(KEEP_ALIVE) => Bytes::from_static(b": keep-alive\n\n"),
                () = tx.closed() => return,
            };
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(SseBody { rx }.boxed());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

struct SseBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}
