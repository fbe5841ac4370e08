//! The HTTP client towards peers.
//!
//! Owns: hyper-util's pooled client (keep-alive connections per peer), every call bounded by a
//! timeout, every response body bounded in size, the peer key on every request, the URLs of
//! peers' `runs`, `files` and status.
//!
//! Must not: follow redirects, send the client's `X-API-KEY` (peers authenticate with the peer
//! key), or log bodies.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::auth::{HOP_HEADER, KEY_HEADER, PeerKey};
use crate::dispatch::STATUS_PATH;
use crate::job::wire::BASE_PATH;

/// Largest response body accepted from a peer (a run's stdout and stderr are capped well below).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Why a call to a peer got no HTTP response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("bad request to peer")]
    Build(#[source] hyper::http::Error),
    #[error("connection to peer failed")]
    Connect(#[source] hyper_util::client::legacy::Error),
    #[error("timed out waiting for the peer")]
    Timeout,
    #[error("reading the peer's response failed")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A peer's answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Cheap to clone; one per daemon (one connection pool).
#[derive(Clone)]
pub(crate) struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    pub(crate) fn new(connect_timeout: Duration) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(connect_timeout));
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(conn);
        Client { inner }
    }

    /// One request; the whole exchange (connect, response head and body) within `timeout`.
    pub(crate) async fn call(
        &self,
        method: Method,
        url: String,
        key: &PeerKey,
        hop: bool,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Reply, CallError> {
        let mut b = Request::builder()
            .method(method)
            .uri(url)
            .header(header::ACCEPT, "application/json")
            .header(KEY_HEADER, key.header().clone());
        if hop {
            b = b.header(HOP_HEADER, "1");
        }
        if body.is_some() {
            b = b.header(header::CONTENT_TYPE, "application/json; charset=utf-8");
        }
        let req = b
            .body(Full::new(body.unwrap_or_default()))
            .map_err(CallError::Build)?;
        let exchange = async {
            let resp = self.inner.request(req).await.map_err(CallError::Connect)?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(CallError::Body)?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout)?
    }
}

/// `<base>/jobe/index.php/restapi/<resource>`.
pub(crate) fn jobe_url(base: &str, resource: &str) -> String {
    format!("{base}{BASE_PATH}/{resource}")
}

/// `<base>/peer/status`.
pub(crate) fn status_url(base: &str) -> String {
    format!("{base}{STATUS_PATH}")
}
