//! The Jobe REST API over hyper 1 (HTTP/1.1), as Moodle CodeRunner uses it.
//!
//! Owns: accepting connections (bounded by `max_connections`; beyond that, accept waits),
//! header-read timeouts, body limits, graceful drain on shutdown, routing (`router`), Jobe's wire
//! format (`wire`), API keys (`keys`), and the single error → status mapping (`error`). Parsed
//! runs, the judgement of who sent a request, the headers every response carries and
//! `GET /peer/status` go to the `dispatch::Dispatch` seam (local or forwarded is not the API's
//! business); files go to `cache::FileCache`.
//!
//! Must not: panic on anything a client sends, log program source/input/output, file contents or
//! API keys, or leak host paths or error chains into responses (they go to the log).
//!
//! Reload: the settings are a `live::Live<ApiConfig>`; each request reads one snapshot (keys,
//! limits, timeouts), each connection takes its header and send timeouts when accepted, the drain
//! its timeout when it starts. `max_connections` is fixed for the listener's life.
//!
//! Differences from Jobe are listed in docs/jobe-compat.md.

mod error;
mod files;
#[doc(hidden)]
pub mod fuzzing;
mod io;
mod judge;
mod keys;
mod router;
mod runs;
mod wire;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::cache::FileCache;
use crate::dispatch::{Caller, Dispatch};
use crate::judge::Judge;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::version::BUILD;

use self::error::ApiError;
use self::judge::ApiBody;
use self::keys::RateLimiter;
use self::router::Route;
pub use self::router::Surface;

const JSON_CONTENT_TYPE: &str = "application/json; charset=UTF-8";
const CACHE_CONTROL: &str = "no-store, max-age=0, no-cache";
const API_KEY_HEADER: &str = "x-api-key";
const JOB_ID_HEADER: &str = "x-coderunner-job-id";
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Settings of the HTTP front end.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// Largest accepted request body; beyond it → 413 with a JSON-string message. Default 10 MiB.
    pub max_body_bytes: u64,
    /// How long a client may take to send a request's headers. Default 10 s.
    pub header_read_timeout: Duration,
    /// Concurrent connections; beyond it new connections wait in the listen backlog. Default 1024.
    pub max_connections: usize,
    /// `None`: keys not required, `X-API-KEY` ignored (current Jobe). `Some`: key → runs per
    /// hour for `POST runs` (0 = unlimited).
    pub api_keys: Option<HashMap<String, u32>>,
    /// After shutdown is signalled, how long in-flight connections may take to finish. Default 30 s.
    pub drain_timeout: Duration,
    /// Jobe's `cputime_upper_limit_secs`: a larger `cputime` is a 400. Default 120.
    pub cputime_upper_limit_secs: u32,
    /// How long a client may take to send a request's body once its headers are in; beyond
    /// it → 408. Default 30 s.
    pub body_read_timeout: Duration,
    /// How long a response write may stay blocked on a client that does not read; beyond it the
    /// connection is closed. Restarts whenever the client takes data. Default 30 s.
    pub send_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            api_keys: None,
            drain_timeout: Duration::from_secs(30),
            cputime_upper_limit_secs: 120,
            body_read_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
        }
    }
}

/// Everything a request handler needs. Build with [`AppState::new`].
pub struct AppState {
    /// Where parsed runs go (the daemon wires peer mode's dispatcher; an `Executor` alone runs
    /// them all locally).
    pub dispatch: Arc<dyn Dispatch>,
    pub cache: Arc<FileCache>,
    /// The current settings; a request takes one snapshot (`config.get()`).
    pub config: Live<ApiConfig>,
    /// The daemon's registry; share the scheduler's with [`AppState::with_metrics`].
    pub metrics: Arc<Metrics>,
    /// Judge mode (`/judge/v1/`); `None`: those routes answer 503.
    pub judge: Option<Judge>,
    rate_limiter: RateLimiter,
    request_seq: AtomicU64,
    draining: AtomicBool,
}

impl AppState {
    /// A state with its own fresh metrics registry and fixed settings.
    pub fn new(dispatch: Arc<dyn Dispatch>, cache: Arc<FileCache>, config: ApiConfig) -> Self {
        AppState::with_live_config(dispatch, cache, Live::fixed(config))
    }

    /// As [`AppState::new`], following `config` (a config reload publishes new settings).
    pub fn with_live_config(
        dispatch: Arc<dyn Dispatch>,
        cache: Arc<FileCache>,
        config: Live<ApiConfig>,
    ) -> Self {
        AppState {
            dispatch,
            cache,
            config,
            metrics: Arc::new(Metrics::new()),
            judge: None,
            rate_limiter: RateLimiter::default(),
            request_seq: AtomicU64::new(1),
            draining: AtomicBool::new(false),
        }
    }

    /// Uses `metrics` (e.g. `Scheduler::metrics()`) so api and sched update one registry.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Serves judge mode's API with `judge`.
    #[must_use]
    pub fn with_judge(mut self, judge: Judge) -> Self {
        self.judge = Some(judge);
        self
    }

    /// Marks the daemon as draining: `GET /health` answers 503 and `runner_draining` is 1; the
    /// judge stops accepting submissions (503) and ends its event streams. `serve` calls it when
    /// its `shutdown` future resolves, before draining connections.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.metrics.set_draining(true);
        if let Some(j) = &self.judge {
            j.begin_drain();
        }
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The listen backlog of [`bind`]: connections beyond `max_connections` wait here, so a burst of
/// thousands of clients queues instead of having SYNs dropped (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default since Linux 5.4).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds the API's listening socket (`SO_REUSEADDR`, backlog [`LISTEN_BACKLOG`]; tokio's
/// `TcpListener::bind` uses 1024).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves every route (the Jobe API, peers, operations) on `listener` until `shutdown`
/// resolves: [`serve_on`] with [`Surface::All`].
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_on(listener, state, Surface::All, shutdown).await
}

/// Serves the routes of `surface` on `listener` until `shutdown` resolves; then stops
/// accepting, lets in-flight connections finish their current request (at most
/// `drain_timeout`), and returns. Accept errors (e.g. `EMFILE`) are logged and retried after a
/// short pause, never fatal. Several listeners may share one state (`metrics_listen`).
pub async fn serve_on(
    listener: TcpListener,
    state: Arc<AppState>,
    surface: Surface,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(state.config.get().max_connections.max(1)));
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // Reap finished connection tasks so the set does not grow.
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // closed: never happens, we never close it
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let st = state.clone();
        let svc = service_fn(move |req| {
            let st = st.clone();
            async move { Ok::<_, Infallible>(handle(st, peer, surface, req).await) }
        });
        let cfg = state.config.get();
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(cfg.header_read_timeout);
        let stream = io::SendTimeout::new(stream, cfg.send_timeout);
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        conns.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }

    state.begin_drain();
    drop(listener);
    tracing::info!(
        connections = conns.len(),
        "shutting down: draining connections"
    );
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(state.config.get().drain_timeout) => {
            tracing::warn!(remaining = conns.len(), "drain timeout; aborting connections");
        }
    }
    conns.shutdown().await;
    Ok(())
}

/// One request: a span, routing, the handler, the error mapping, one log line.
async fn handle(
    state: Arc<AppState>,
    peer: SocketAddr,
    surface: Surface,
    req: Request<Incoming>,
) -> Response<ApiBody> {
    let seq = state.request_seq.fetch_add(1, Ordering::Relaxed);
    // Logged only if it looks like CodeRunner's 8-hex id, so clients cannot inject log text.
    let job_id = req
        .headers()
        .get(JOB_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 32 && v.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or("")
        .to_owned();
    let span = tracing::info_span!(
        "request",
        req = seq,
        method = %req.method(),
        path = %req.uri().path(),
        %peer,
        job = %job_id,
        lang = tracing::field::Empty,
    );
    async move {
        let start = Instant::now();
        let (route, result) = dispatch(&state, surface, req, seq).await;
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => json_response(e.status(), &e.message(seq)).map(BodyExt::boxed),
        };
        state.dispatch.response_headers(resp.headers_mut());
        state.metrics.record_http(route, resp.status().as_u16());
        tracing::info!(
            status = resp.status().as_u16(),
            ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            "request done"
        );
        resp
    }
    .instrument(span)
    .await
}

/// Routes and handles `req`; also returns the route's label for the request counter.
async fn dispatch(
    state: &Arc<AppState>,
    surface: Surface,
    req: Request<Incoming>,
    seq: u64,
) -> (&'static str, Result<Response<ApiBody>, ApiError>) {
    let preflight = req
        .headers()
        .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let routed = router::route(req.method(), req.uri().path(), preflight);
    if let Err(e) = &routed
        && router::is_judge_path(req.uri().path())
    {
        return (router::UNROUTED, Ok(judge::unrouted(e)));
    }
    match routed {
        // Served on the other listener (`metrics_listen`): as if unrouted here.
        Ok(route) if !surface.answers(&route) => (router::UNROUTED, Err(ApiError::NoRoute)),
        Ok(Route::Judge(j)) => {
            let label = Route::Judge(j.clone()).label();
            // Judge mode is never forwarded to peers; a peer's headers still must be proven.
            if state.dispatch.admit(req.headers()).is_err() {
                return (label, Err(ApiError::UnknownPeerKey));
            }
            (label, Ok(judge::handle(state, j, req, seq).await))
        }
        Ok(route) => (
            route.label(),
            handle_route(state, route, req)
                .await
                .map(|r| r.map(BodyExt::boxed)),
        ),
        Err(e) => (router::UNROUTED, Err(e)),
    }
}

/// What `GET /version` answers and `GET /health` includes: the build and the eBPF monitor's
/// state now.
fn version_json(state: &AppState) -> serde_json::Value {
    serde_json::json!({
        "version": BUILD.version,
        "commit": BUILD.commit,
        "profile": BUILD.profile,
        "ebpf_object": BUILD.ebpf_object,
        "ebpf": if state.metrics.ebpf_active() { "active" } else { "inactive" },
    })
}

async fn handle_route(
    state: &Arc<AppState>,
    route: Route,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let caller = state
        .dispatch
        .admit(req.headers())
        .map_err(|_| ApiError::UnknownPeerKey)?;
    match route {
        Route::Preflight => Ok(no_content()),
        Route::Metrics => {
            state.metrics.set_cache_bytes(state.cache.size_bytes());
            let mut text = state.metrics.render();
            state.dispatch.render_metrics(&mut text);
            if let Some(j) = &state.judge {
                j.render_metrics(&mut text);
            }
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(METRICS_CONTENT_TYPE),
            );
            set_common_headers(&mut r, false);
            Ok(r)
        }
        Route::Health => {
            let (status, text) = if state.is_draining() {
                (StatusCode::SERVICE_UNAVAILABLE, "draining")
            } else {
                (StatusCode::OK, "ready")
            };
            let mut body = version_json(state);
            body["status"] = text.into();
            // Queue mode on: whether it is connected to its broker (the HTTP APIs serve either way).
            if let Some(q) = state.metrics.queue() {
                body["queue"] = if q.connected() {
                    "connected"
                } else {
                    "disconnected"
                }
                .into();
            }
            Ok(json_response(status, &body))
        }
        Route::Version => Ok(json_response(StatusCode::OK, &version_json(state))),
        Route::Languages => Ok(json_response(StatusCode::OK, &state.dispatch.languages())),
        Route::PeerStatus => match state.dispatch.status(caller) {
            Some(status) => Ok(json_response(StatusCode::OK, &status)),
            None => Err(ApiError::UnknownPeerKey),
        },
        Route::Runs => {
            let config = state.config.get();
            // A peer proved itself to the dispatcher; the client's API key was checked by the
            // runner it sent the run to.
            if let (Some(keys), Caller::Client) = (&config.api_keys, caller) {
                let key = req
                    .headers()
                    .get(API_KEY_HEADER)
                    .map(|v| v.to_str().unwrap_or(""));
                state.rate_limiter.check(keys, key, Instant::now())?;
            }
            let body = read_body(req, &config).await?;
            let result = runs::post_runs(state, body, caller, &config).await?;
            Ok(json_response(StatusCode::OK, &result))
        }
        Route::PutFile(id) => {
            let body = read_body(req, &state.config.get()).await?;
            files::put_file(state, id, &body).await?;
            Ok(no_content())
        }
        // Routed to `judge::handle` by `dispatch`.
        Route::Judge(_) => Err(ApiError::NoRoute),
        Route::HeadFile(id) => {
            let found = files::head_file(state, id).await;
            state.metrics.cache_lookup(found);
            if found {
                Ok(no_content())
            } else {
                // Jobe's HEAD 404 carries the JSON content type and no body.
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = StatusCode::NOT_FOUND;
                set_common_headers(&mut r, true);
                Ok(r)
            }
        }
    }
}

/// The request's `Content-Length`, if it has a valid one.
fn declared_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Reads the whole body, refusing more than `max_body_bytes` (413) or taking longer than
/// `body_read_timeout` (408). A declared `Content-Length` over the limit is refused before
/// reading, so an `Expect: 100-continue` client never sends it.
async fn read_body(req: Request<Incoming>, config: &ApiConfig) -> Result<Bytes, ApiError> {
    let max = config.max_body_bytes;
    if declared_length(&req).is_some_and(|n| n > max) {
        return Err(ApiError::TooLarge(max));
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let collect = Limited::new(req.into_body(), limit).collect();
    let Ok(collected) = tokio::time::timeout(config.body_read_timeout, collect).await else {
        return Err(ApiError::BodyTimeout);
    };
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::TooLarge(max)),
        Err(e) => {
            tracing::debug!(error = %e, "failed to read request body");
            Err(ApiError::BadRequest(
                "Failed to read the request body".to_owned(),
            ))
        }
    }
}

/// `Content-Type` (JSON) and `Cache-Control`, as Jobe sends them on every answer.
fn set_common_headers<B>(r: &mut Response<B>, json: bool) {
    let h = r.headers_mut();
    if json {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(JSON_CONTENT_TYPE),
        );
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
}

/// A JSON response (no `/` or non-ASCII escaping: serde_json's default, as Jobe's flags).
fn json_response<T: serde::Serialize + ?Sized>(
    status: StatusCode,
    body: &T,
) -> Response<Full<Bytes>> {
    let (status, bytes) = match serde_json::to_vec(body) {
        Ok(b) => (status, b),
        Err(e) => {
            tracing::error!(error = %e, "failed to encode response");
            (StatusCode::INTERNAL_SERVER_ERROR, b"\"\"".to_vec())
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    set_common_headers(&mut r, true);
    r
}

fn no_content() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    set_common_headers(&mut r, false);
    r
}

/// The Jobe result object for `r` (five keys, Jobe's string cleaning), as the API sends it.
pub fn result_json(r: &crate::job::RunResult) -> String {
    serde_json::to_string(&crate::job::wire::RunResponse::from(r))
        .unwrap_or_else(|_| "{}".to_owned())
}
