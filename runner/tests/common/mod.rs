//! Tier: http (docs/testing.md). Shared by the HTTP-level test files (`mod common;` in each):
//! `api::serve` of an `AppState` on a local listener with a stop signal, and a raw HTTP/1.1
//! response parser. Each file keeps its own executor fake and request helpers.

#![allow(dead_code, reason = "each test file uses a subset")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use runner::api::{AppState, serve};
use runner::cache::FileCache;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A file cache of 64 MiB in `dir`/files.
pub(crate) fn cache(dir: &Path) -> Arc<FileCache> {
    Arc::new(FileCache::open(dir.join("files"), 64 << 20).unwrap())
}

/// `api::serve` running on `listener` until `shutdown`.
pub(crate) struct Served {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Served {
    pub(crate) fn start(listener: TcpListener, state: Arc<AppState>) -> Served {
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, state, async {
            let _ = rx.await;
        }));
        Served {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Stops serving and checks that serving ended cleanly.
    pub(crate) async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }

    /// Ends the server at once (a runner that dies): its listener closes, nothing drains.
    pub(crate) fn abort(&self) {
        self.task.abort();
    }
}

#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    /// Names in lower case.
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.text()))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Parses a whole response read to EOF (`head_only`: the answer to a HEAD). The body is cut at
/// `Content-Length` and de-chunked when chunked. `None`: no complete head.
pub(crate) fn parse_response(raw: &[u8], head_only: bool) -> Option<Resp> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if head_only {
        body.clear();
    } else if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        body = dechunk(&body);
    } else if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        body.truncate(n);
    }
    Some(Resp {
        status,
        headers,
        body,
    })
}

/// The data of a chunked body, as far as it is complete.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol]).ok();
        let Some(n) = size.and_then(|s| usize::from_str_radix(s.trim(), 16).ok()) else {
            break;
        };
        if n == 0 || b.len() < eol + 2 + n {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = b.get(eol + 2 + n + 2..).unwrap_or_default();
    }
    out
}
