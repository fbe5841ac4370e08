//! The origin: where a judger fetches a test-set version it does not hold (docs/judge.md,
//! "Fetching from an origin"), and spooling an HTTP body (the origin's answer, or an upload) to
//! a file without holding it in memory.
//!
//! Owns: the URL template (`{problem}`, `{version}`), the bearer token (`Secret`), one hyper
//! client (plain HTTP, pooled, no redirects), the bounds of a fetch (connect and total timeouts,
//! a size cap) and the answer's checks (status 200, `Content-Length`).
//!
//! Must not: log or print the token (its `Debug` is redacted; the header is marked sensitive),
//! follow redirects, or store anything (the caller puts the spooled archive into the store).

use std::fmt;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Body;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;

use super::testset::{Spool, TestsetId};

/// Longest wait for the origin's TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const USER_AGENT: &str = concat!("runner/", env!("CARGO_PKG_VERSION"));

/// A secret (the origin's token): its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The origin's URL with `{problem}` and `{version}` placeholders, e.g.
/// `http://judge-site.internal/testsets/{problem}/{version}.tar.gz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate(String);

impl UrlTemplate {
    /// Checks a template: `http://` with a host, both placeholders, no other braces. The names
    /// put into it are `[A-Za-z0-9._-]` (`TestsetId`), so they need no escaping.
    pub fn parse(template: &str) -> Result<UrlTemplate, String> {
        if template.starts_with("https://") {
            return Err(
                "https is not supported (runner has no TLS client): use http:// on a \
                 private network, or a TLS-terminating proxy on localhost"
                    .into(),
            );
        }
        if !template.starts_with("http://") {
            return Err("must start with http://".into());
        }
        for p in ["{problem}", "{version}"] {
            if !template.contains(p) {
                return Err(format!("must contain {p}"));
            }
        }
        let rest = template.replace("{problem}", "").replace("{version}", "");
        if rest.contains(['{', '}']) {
            return Err("has a placeholder other than {problem} and {version}".into());
        }
        let t = UrlTemplate(template.to_owned());
        let sample = t.fill("p", "v");
        let uri: Uri = sample.parse().map_err(|e| format!("is not a URL ({e})"))?;
        if uri.host().is_none_or(str::is_empty) {
            return Err("has no host".into());
        }
        if template.split("://").nth(1).is_some_and(|r| {
            r.split('/')
                .next()
                .is_some_and(|authority| authority.contains('{'))
        }) {
            return Err("placeholders must not be in the host".into());
        }
        Ok(t)
    }

    /// The URL of `id`'s archive.
    pub fn url(&self, id: &TestsetId) -> String {
        self.fill(id.problem(), id.version())
    }

    fn fill(&self, problem: &str, version: &str) -> String {
        self.0
            .replace("{problem}", problem)
            .replace("{version}", version)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The validated `[judge]` origin settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginConfig {
    pub url: UrlTemplate,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// The whole fetch: connect, answer and body.
    pub timeout: Duration,
}

/// Why an HTTP body could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("body is larger than {max} bytes")]
    TooLarge { max: u64 },
    #[error("reading the body failed")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("writing the body to the spool file failed")]
    Write(#[source] io::Error),
}

/// Why the origin gave no usable archive. Each ends the submissions waiting for it with IE.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("bad request for the origin")]
    Build(#[source] hyper::http::Error),
    #[error("connection to the origin failed")]
    Connect(#[source] hyper_util::client::legacy::Error),
    #[error("the origin did not deliver within {0:?}")]
    Timeout(Duration),
    #[error("the origin answered HTTP {0}")]
    Status(StatusCode),
    #[error("reading the origin's answer failed")]
    Spool(#[source] SpoolError),
    #[error("the origin's archive was not stored")]
    Store(#[source] super::testset::TestsetError),
    #[error("storing the origin's archive failed")]
    Task(#[source] tokio::task::JoinError),
}

impl OriginError {
    /// Whether the daemon is at fault (its store or spool) rather than the origin.
    pub fn is_internal(&self) -> bool {
        match self {
            OriginError::Store(e) => e.is_internal(),
            OriginError::Spool(SpoolError::Write(_)) | OriginError::Task(_) => true,
            _ => false,
        }
    }
}

/// The origin client. Cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct Origin {
    config: OriginConfig,
    client: HyperClient<HttpConnector, Empty<Bytes>>,
}

impl Origin {
    pub fn new(config: OriginConfig) -> Origin {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(CONNECT_TIMEOUT.min(config.timeout)));
        let client = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(conn);
        Origin { config, client }
    }

    pub fn config(&self) -> &OriginConfig {
        &self.config
    }

    /// Fetches `id`'s archive into `spool`: at most `max_bytes`, all within the timeout.
    pub async fn fetch(
        &self,
        id: &TestsetId,
        spool: &mut Spool,
        max_bytes: u64,
    ) -> Result<u64, OriginError> {
        let mut req = Request::get(self.config.url.url(id))
            .header(header::ACCEPT, "application/x-tar, application/gzip")
            .header(header::USER_AGENT, USER_AGENT);
        if let Some(token) = &self.config.token
            && let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        {
            v.set_sensitive(true);
            req = req.header(header::AUTHORIZATION, v);
        }
        let req = req.body(Empty::new()).map_err(OriginError::Build)?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(OriginError::Connect)?;
            if resp.status() != StatusCode::OK {
                return Err(OriginError::Status(resp.status()));
            }
            spool_body(resp.into_body(), spool, max_bytes)
                .await
                .map_err(OriginError::Spool)
        };
        tokio::time::timeout(self.config.timeout, exchange)
            .await
            .map_err(|_| OriginError::Timeout(self.config.timeout))?
    }
}

/// Writes `body` to `spool` (from its current position), failing as soon as more than
/// `max_bytes` arrive (or are announced by `Content-Length`). Returns the bytes written.
pub async fn spool_body<B>(body: B, spool: &mut Spool, max_bytes: u64) -> Result<u64, SpoolError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if body.size_hint().lower() > max_bytes {
        return Err(SpoolError::TooLarge { max: max_bytes });
    }
    let file = spool.file().try_clone().map_err(SpoolError::Write)?;
    let mut file = tokio::fs::File::from_std(file);
    let mut body = std::pin::pin!(body);
    let mut written = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| SpoolError::Body(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        written += data.len() as u64;
        if written > max_bytes {
            return Err(SpoolError::TooLarge { max: max_bytes });
        }
        file.write_all(&data).await.map_err(SpoolError::Write)?;
    }
    file.flush().await.map_err(SpoolError::Write)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Templates and the secret's redaction. Fetching against a real
    //! local HTTP origin is tested in `provider`.
    use super::*;

    #[test]
    fn test_url_template() {
        let t = UrlTemplate::parse("http://site.internal:8080/ts/{problem}/{version}.tar").unwrap();
        let id = TestsetId::new("sum", "v1.2").unwrap();
        assert_eq!(t.url(&id), "http://site.internal:8080/ts/sum/v1.2.tar");
        let q = UrlTemplate::parse("http://127.0.0.1/get?p={problem}&v={version}").unwrap();
        assert_eq!(q.url(&id), "http://127.0.0.1/get?p=sum&v=v1.2");
        for (bad, why) in [
            ("https://x/{problem}/{version}", "https is not supported"),
            ("ftp://x/{problem}/{version}", "must start with http://"),
            ("x/{problem}/{version}", "must start with http://"),
            ("http://x/{problem}", "must contain {version}"),
            ("http://x/{version}", "must contain {problem}"),
            (
                "http://x/{problem}/{version}/{lang}",
                "placeholder other than",
            ),
            ("http://x/{problem}/{version}}", "placeholder other than"),
            ("http:///{problem}/{version}", "is not a URL"),
            ("http://{problem}.x/{version}", "must not be in the host"),
            ("http://x y/{problem}/{version}", "is not a URL"),
        ] {
            let e = UrlTemplate::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn test_secret_is_redacted() {
        let s = Secret::new("hunter2-token".into());
        let cfg = OriginConfig {
            url: UrlTemplate::parse("http://x/{problem}/{version}").unwrap(),
            token: Some(s.clone()),
            timeout: Duration::from_secs(1),
        };
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-token");
    }
}
