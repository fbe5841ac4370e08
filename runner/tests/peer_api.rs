//! Tier: http (docs/testing.md). Peer mode over HTTP, unprivileged.
//!
//! Several `api::serve` instances on `127.0.0.1:0`, each with a fake `Executor` that models
//! slots (`load`, `try_run`), wired as peers of each other with short probe intervals. Checks
//! the peer key, the hop marker, `/peer/status`, `X-Runner-Load`, forwarding of the overflow,
//! the language union, failover after a 5xx and after a timeout, and the file push on 404.
//! Every test is bounded by a tokio timeout.

#![allow(
    unused_crate_dependencies,
    reason = "integration test crate uses a subset"
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use runner::api::{ApiConfig, AppState};
use runner::job::{Job, Outcome, RunResult, Usage};
use runner::peer::{Dispatcher, PeerConfig, Peers, RawPeer, RawPeerEntry};
use runner::sched::{BoxFuture, ExecError, Executor, Load};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod common;
use common::{Resp, Served, parse_response};

const BASE: &str = "/jobe/index.php/restapi";
const KEY: &str = "peer-secret-1";
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A fake runner: `slots` slots, languages `langs`; a run answers `<name>:<source>` after
/// `delay` (`Mode` makes it misbehave) and lists the job's files as `+name=contents`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    /// Every run is an internal error (HTTP 500).
    Fail500,
    /// Every run hangs.
    Hang,
}

struct Fake {
    name: &'static str,
    mode: Mode,
    langs: Vec<&'static str>,
    slots: usize,
    busy: AtomicUsize,
    delay: Duration,
    seen: Mutex<Vec<Job>>,
}

impl Fake {
    fn new(name: &'static str, langs: &[&'static str], slots: usize) -> Arc<Fake> {
        Arc::new(Fake {
            name,
            mode: Mode::Normal,
            langs: langs.to_vec(),
            slots,
            busy: AtomicUsize::new(0),
            delay: Duration::from_millis(50),
            seen: Mutex::new(Vec::new()),
        })
    }

    fn with_mode(name: &'static str, slots: usize, mode: Mode) -> Arc<Fake> {
        let mut f = Arc::into_inner(Fake::new(name, &["python3"], slots)).expect("fresh");
        f.mode = mode;
        Arc::new(f)
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn go(&self, job: Job) -> BoxFuture<'_, Result<RunResult, ExecError>> {
        self.seen.lock().unwrap().push(job.clone());
        Box::pin(async move {
            struct Release<'a>(&'a AtomicUsize);
            impl Drop for Release<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _r = Release(&self.busy);
            if !self.langs.contains(&job.language.as_str()) {
                return Err(ExecError::UnknownLanguage(job.language));
            }
            match self.mode {
                Mode::Fail500 => return Err(ExecError::Internal("boom".into())),
                Mode::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
                Mode::Normal => tokio::time::sleep(self.delay).await,
            }
            let files: String = job
                .files
                .iter()
                .map(|f| format!("+{}={}", f.name, String::from_utf8_lossy(&f.contents)))
                .collect();
            Ok(RunResult {
                outcome: Outcome::Success,
                cmpinfo: Vec::new(),
                stdout: format!("{}:{}{files}", self.name, job.source).into_bytes(),
                stderr: Vec::new(),
                usage: Usage::default(),
            })
        })
    }
}

impl Executor for Fake {
    fn languages(&self) -> Vec<(String, String)> {
        self.langs
            .iter()
            .map(|l| ((*l).to_owned(), "1.0".to_owned()))
            .collect()
    }

    fn run(&self, job: Job) -> BoxFuture<'_, Result<RunResult, ExecError>> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.go(job)
    }

    fn load(&self) -> Load {
        let busy = self.busy.load(Ordering::SeqCst);
        Load {
            slots: self.slots,
            free: self.slots.saturating_sub(busy),
            queued: 0,
        }
    }

    fn try_run(&self, job: Job) -> Result<BoxFuture<'_, Result<RunResult, ExecError>>, Job> {
        let got = self
            .busy
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                (b < self.slots).then_some(b + 1)
            })
            .is_ok();
        if got { Ok(self.go(job)) } else { Err(job) }
    }
}

struct Server {
    addr: SocketAddr,
    fake: Arc<Fake>,
    peers: Option<Arc<Peers>>,
    srv: Served,
    _dir: tempfile::TempDir,
}

/// Fast probes; `peers` are (url, weight).
fn peer_cfg(enabled: bool, peers: &[(String, u32)]) -> PeerConfig {
    PeerConfig::try_from(RawPeer {
        enabled: Some(enabled),
        key: Some(KEY.into()),
        probe_interval_ms: Some(100),
        probe_timeout_ms: Some(100),
        rise: Some(1),
        fall: Some(1),
        cooldown_ms: Some(300),
        request_timeout_secs: Some(1.0),
        forwarded_queue_wait_ms: Some(100),
        peers: peers
            .iter()
            .map(|(url, w)| RawPeerEntry {
                url: url.clone(),
                weight: Some(*w),
                key: None,
            })
            .collect(),
        ..RawPeer::default()
    })
    .expect("valid peer config")
}

impl Server {
    async fn start(fake: Arc<Fake>, peer: Option<PeerConfig>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let cache = common::cache(dir.path());
        let peers = peer.map(|c| Peers::start(c, Duration::from_secs(3), 100));
        let dispatcher = Dispatcher::new(fake.clone(), cache.clone(), peers.clone());
        let state = Arc::new(AppState::new(dispatcher, cache, ApiConfig::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let srv = Served::start(listener, state);
        Server {
            addr: srv.addr,
            fake,
            peers,
            srv,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn shutdown(self) {
        self.srv.shutdown().await;
    }
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    if let Some(b) = body {
        s.write_all(b).await.unwrap();
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    parse_response(&raw, method == "HEAD").expect("a complete response head")
}

fn run_body(lang: &str, src: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let fl: Vec<[&str; 2]> = files.iter().map(|(id, n)| [*id, *n]).collect();
    serde_json::json!({"run_spec": {"language_id": lang, "sourcecode": src, "file_list": fl}})
        .to_string()
        .into_bytes()
}

async fn run(addr: SocketAddr, lang: &str, src: &str, headers: &[(&str, &str)]) -> Resp {
    let body = run_body(lang, src, &[]);
    request(addr, "POST", &format!("{BASE}/runs"), headers, Some(&body)).await
}

/// Waits until `a` reports `peer` up in its metrics.
async fn wait_up(a: &Server, peer: &str, up: bool) {
    let want = format!("runner_peer_up{{peer=\"{peer}\"}} {}", u8::from(up));
    // Up to 15 s: generous on a loaded machine (probes run every 100 ms).
    for _ in 0..600 {
        let mut text = String::new();
        if let Some(p) = &a.peers {
            p.render_metrics(&mut text);
        }
        if text.contains(&want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{peer} never reported up={up}");
}

async fn bounded(f: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out");
}

#[tokio::test]
async fn test_peer_key_refusal_and_status() {
    bounded(async {
        let b = Server::start(Fake::new("b", &["python3"], 2), Some(peer_cfg(false, &[]))).await;
        let status = "/peer/status";
        // No key, wrong key: refused; a hop marker without the key: refused, nothing ran.
        for h in [vec![], vec![("X-Runner-Peer-Key", "wrong-key-99")]] {
            let r = request(b.addr, "GET", status, &h, None).await;
            assert_eq!(
                (r.status, r.json()),
                (403, serde_json::json!("Unknown peer key"))
            );
        }
        for h in [
            vec![("X-Runner-Hop", "1")],
            vec![("X-Runner-Hop", "1"), ("X-Runner-Peer-Key", "wrong-key-99")],
        ] {
            let r = run(b.addr, "python3", "x", &h).await;
            assert_eq!(
                (r.status, r.json()),
                (403, serde_json::json!("Unknown peer key"))
            );
        }
        assert_eq!(b.fake.count(), 0);
        // The right key: status with capacity and local languages; every response has the load.
        let r = request(b.addr, "GET", status, &[("X-Runner-Peer-Key", KEY)], None).await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(
            (
                v["slots"].as_u64(),
                v["free"].as_u64(),
                v["queued"].as_u64()
            ),
            (Some(2), Some(2), Some(0))
        );
        assert_eq!(v["languages"], serde_json::json!([["python3", "1.0"]]));
        assert_eq!(
            r.headers.get("x-runner-load").map(String::as_str),
            Some("slots=2, free=2, queued=0")
        );
        let r = request(b.addr, "GET", "/nowhere", &[], None).await;
        assert_eq!(r.status, 404);
        assert!(r.headers.contains_key("x-runner-load"));
        // A hop-marked run with the key runs locally.
        let r = run(
            b.addr,
            "python3",
            "x",
            &[("X-Runner-Hop", "1"), ("X-Runner-Peer-Key", KEY)],
        )
        .await;
        assert_eq!(r.json()["stdout"], "b:x");
        b.shutdown().await;

        // A runner without any peer key refuses every peer header.
        let c = Server::start(Fake::new("c", &["python3"], 1), None).await;
        let r = run(
            c.addr,
            "python3",
            "x",
            &[("X-Runner-Hop", "1"), ("X-Runner-Peer-Key", KEY)],
        )
        .await;
        assert_eq!(r.status, 403);
        let r = request(
            c.addr,
            "GET",
            "/peer/status",
            &[("X-Runner-Peer-Key", KEY)],
            None,
        )
        .await;
        assert_eq!(r.status, 403);
        c.shutdown().await;
    })
    .await;
}

/// A forwarded (hop-marked) run is never forwarded again, even when the receiver is full and
/// has an idle peer: it gets outcome 21 after `forwarded_queue_wait_ms`.
#[tokio::test]
async fn test_hop_never_forwarded() {
    bounded(async {
        let b = Server::start(Fake::new("b", &["python3"], 1), Some(peer_cfg(false, &[]))).await;
        let a = Server::start(
            Fake::new("a", &["python3"], 0),
            Some(peer_cfg(true, &[(b.url(), 1)])),
        )
        .await;
        wait_up(&a, &b.url(), true).await;
        let r = run(
            a.addr,
            "python3",
            "x",
            &[("X-Runner-Hop", "1"), ("X-Runner-Peer-Key", KEY)],
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["outcome"], 21);
        assert_eq!(b.fake.count(), 0, "the hop-marked run went on to a peer");
        // The same run from a client is forwarded.
        let r = run(a.addr, "python3", "x", &[]).await;
        assert_eq!(r.json()["stdout"], "b:x");
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

/// Local first; the overflow goes to the peer; a language only the peer has is in the union
/// and always forwarded.
#[tokio::test]
async fn test_overflow_forwarding_and_language_union() {
    bounded(async {
        let b = Server::start(
            Fake::new("b", &["python3", "c"], 4),
            Some(peer_cfg(false, &[])),
        )
        .await;
        let a = Server::start(
            Fake::new("a", &["python3"], 1),
            Some(peer_cfg(true, &[(b.url(), 1)])),
        )
        .await;
        wait_up(&a, &b.url(), true).await;
        let r = request(a.addr, "GET", &format!("{BASE}/languages"), &[], None).await;
        assert_eq!(
            r.json(),
            serde_json::json!([["python3", "1.0"], ["c", "1.0"]])
        );
        // One at a time: always local.
        for i in 0..3 {
            let r = run(a.addr, "python3", &format!("s{i}"), &[]).await;
            assert_eq!(r.json()["stdout"], format!("a:s{i}"));
        }
        // Four at once on one local slot: one local, three forwarded.
        let mut hs = Vec::new();
        for i in 0..4 {
            let addr = a.addr;
            hs.push(tokio::spawn(async move {
                run(addr, "python3", &format!("p{i}"), &[]).await
            }));
        }
        let mut by = HashMap::new();
        for h in hs {
            let r = h.await.unwrap();
            let out = r.json()["stdout"].as_str().unwrap().to_owned();
            *by.entry(out[..1].to_owned()).or_insert(0) += 1;
        }
        assert_eq!(by.get("a"), Some(&1), "{by:?}");
        assert_eq!(by.get("b"), Some(&3), "{by:?}");
        // Only the peer has c.
        let r = run(a.addr, "c", "k", &[]).await;
        assert_eq!(r.json()["stdout"], "b:k");
        let mut m = String::new();
        a.peers.as_ref().unwrap().render_metrics(&mut m);
        assert!(
            m.contains(&format!(
                "runner_peer_forwards_total{{peer=\"{}\",result=\"ok\"}} 4",
                b.url()
            )),
            "{m}"
        );
        assert!(m.contains("runner_peer_forward_seconds_count"), "{m}");
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

/// A peer that answers 500 is ejected and the run retried on another; one that never answers
/// times out, is ejected, the run still succeeds elsewhere, and the peer is re-admitted by the
/// probes after the cool-down.
#[tokio::test]
async fn test_failover_on_5xx_and_timeout() {
    bounded(async {
        for mode in [Mode::Fail500, Mode::Hang] {
            let bad =
                Server::start(Fake::with_mode("bad", 4, mode), Some(peer_cfg(false, &[]))).await;
            let good = Server::start(
                Fake::new("good", &["python3"], 4),
                Some(peer_cfg(false, &[])),
            )
            .await;
            // Weights 1000 : 1, so the bad peer is almost always tried first.
            let a = Server::start(
                Fake::new("a", &["python3"], 0),
                Some(peer_cfg(true, &[(bad.url(), 1000), (good.url(), 1)])),
            )
            .await;
            wait_up(&a, &bad.url(), true).await;
            wait_up(&a, &good.url(), true).await;
            let mut ejected = false;
            for i in 0..5 {
                let r = run(a.addr, "python3", &format!("ok{i}"), &[]).await;
                assert_eq!(r.status, 200, "{mode:?}: {r:?}");
                assert_eq!(r.json()["stdout"], format!("good:ok{i}"), "{mode:?}");
                let mut m = String::new();
                a.peers.as_ref().unwrap().render_metrics(&mut m);
                if m.contains(&format!(
                    "runner_peer_ejections_total{{peer=\"{}\"}}",
                    bad.url()
                )) {
                    assert!(m.contains("runner_peer_retries_total 1"), "{m}");
                    ejected = true;
                    break;
                }
            }
            assert!(ejected, "{mode:?}: the bad peer was never ejected");
            // Every peer family but the file pushes (test_file_push_on_404) has a sample now.
            let mut m = String::new();
            a.peers.as_ref().unwrap().render_metrics(&mut m);
            for f in runner::peer::metrics::PEER_FAMILIES {
                if *f == "runner_peer_file_pushes_total" {
                    continue;
                }
                let sampled = m.lines().any(|l| !l.starts_with('#') && l.starts_with(f));
                assert!(sampled, "{f} has no sample:\n{m}");
            }
            // Its status still answers: after the cool-down (300 ms) it is probed back in.
            wait_up(&a, &bad.url(), true).await;
            a.shutdown().await;
            good.shutdown().await;
            // The hanging run at `bad` never ends: stop without waiting for it.
            bad.srv.abort();
        }
    })
    .await;
}

/// The client PUTs a file to A; A forwards the run to B, which lacks it (404): A pushes the file
/// from its cache and retries, and the client sees one ordinary answer.
#[tokio::test]
async fn test_file_push_on_404() {
    bounded(async {
        let b = Server::start(Fake::new("b", &["python3"], 2), Some(peer_cfg(false, &[]))).await;
        let a = Server::start(Fake::new("a", &["python3"], 0), Some(peer_cfg(true, &[(b.url(), 1)]))).await;
        wait_up(&a, &b.url(), true).await;
        let id = "0123456789abcdef";
        let put = serde_json::json!({"file_contents": base64::engine::general_purpose::STANDARD.encode("hello")}).to_string();
        let r = request(a.addr, "PUT", &format!("{BASE}/files/{id}"), &[], Some(put.as_bytes())).await;
        assert_eq!(r.status, 204);
        let body = run_body("python3", "x", &[(id, "data.txt")]);
        let r = request(a.addr, "POST", &format!("{BASE}/runs"), &[], Some(&body)).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json()["stdout"], "b:x+data.txt=hello");
        let mut m = String::new();
        a.peers.as_ref().unwrap().render_metrics(&mut m);
        assert!(m.contains(&format!("runner_peer_file_pushes_total{{peer=\"{}\"}} 1", b.url())), "{m}");
        // B has it now: no second push.
        let r = request(a.addr, "POST", &format!("{BASE}/runs"), &[], Some(&body)).await;
        assert_eq!(r.json()["stdout"], "b:x+data.txt=hello");
        let mut m = String::new();
        a.peers.as_ref().unwrap().render_metrics(&mut m);
        let once = format!("runner_peer_file_pushes_total{{peer=\"{}\"}} 1\n", b.url());
        assert!(m.contains(&once), "{m}");
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

/// With `forward_queue_wait_ms` above the expected local wait, busy runs queue locally instead
/// of being forwarded.
#[tokio::test]
async fn test_forward_queue_wait_keeps_runs_local() {
    bounded(async {
        let b = Server::start(Fake::new("b", &["python3"], 4), Some(peer_cfg(false, &[]))).await;
        let mut cfg = peer_cfg(true, &[(b.url(), 1)]);
        cfg.forward_queue_wait = Duration::from_secs(60);
        let a = Server::start(Fake::new("a", &["python3"], 1), Some(cfg)).await;
        wait_up(&a, &b.url(), true).await;
        let mut hs = Vec::new();
        for i in 0..3 {
            let addr = a.addr;
            hs.push(tokio::spawn(async move {
                run(addr, "python3", &format!("q{i}"), &[]).await
            }));
        }
        for h in hs {
            let r = h.await.unwrap();
            assert!(
                r.json()["stdout"].as_str().unwrap().starts_with("a:"),
                "{r:?}"
            );
        }
        assert_eq!(b.fake.count(), 0);
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}

/// A client that goes away while its run is at a peer does not leave the peer counted as busy:
/// later runs are still forwarded to it.
#[tokio::test]
async fn test_client_gone_mid_forward_frees_the_peer() {
    bounded(async {
        let mut slow = Arc::into_inner(Fake::new("b", &["python3"], 1)).expect("fresh");
        slow.delay = Duration::from_millis(400);
        let b = Server::start(Arc::new(slow), Some(peer_cfg(false, &[]))).await;
        let a = Server::start(Fake::new("a", &["python3"], 0), Some(peer_cfg(true, &[(b.url(), 1)]))).await;
        wait_up(&a, &b.url(), true).await;
        let body = run_body("python3", "gone", &[]);
        let mut s = TcpStream::connect(a.addr).await.unwrap();
        let head = format!(
            "POST {BASE}/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        drop(s);
        tokio::time::sleep(Duration::from_millis(600)).await;
        for i in 0..3 {
            let r = run(a.addr, "python3", &format!("after{i}"), &[]).await;
            assert_eq!(r.json()["stdout"], format!("b:after{i}"), "{r:?}");
        }
        a.shutdown().await;
        b.shutdown().await;
    })
    .await;
}
