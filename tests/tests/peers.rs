//! Tier: privileged (docs/testing.md). Peer mode with real runners (real jails, root). Several
//! daemons on `127.0.0.1` port 0 inside one test, 1 slot each, wired as peers with fast probes:
//! overflow forwarding, weights, a peer killed mid-load, a peer that hangs, a language on one
//! peer only, the file push on 404, loop prevention and a wrong key. Runs are python3 programs.

#![allow(
    unused_crate_dependencies,
    reason = "integration test crate uses a subset"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use runner::peer::{RawPeer, RawPeerEntry};
use runner_tests::daemon::*;
use runner_tests::privileged;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TEST_TIMEOUT: Duration = Duration::from_secs(120);
const KEY: &str = "peer-test-key";

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test took longer than its bound");
}

/// `[peer]` with fast probes; `peers` are (address, weight). `enabled` = forwards.
fn peer_section(enabled: bool, key: &str, peers: &[(SocketAddr, u32)]) -> RawPeer {
    RawPeer {
        enabled: Some(enabled),
        key: Some(key.into()),
        probe_interval_ms: Some(200),
        probe_timeout_ms: Some(200),
        rise: Some(2),
        fall: Some(3),
        cooldown_ms: Some(1000),
        request_timeout_secs: Some(30.0),
        peers: peers
            .iter()
            .map(|(a, w)| RawPeerEntry {
                url: format!("http://{a}"),
                weight: Some(*w),
                key: None,
            })
            .collect(),
        ..RawPeer::default()
    }
}

async fn start(peer: Option<RawPeer>) -> Daemon {
    Daemon::start(Opts {
        slots: 1,
        peer,
        ..Opts::default()
    })
    .await
}

/// A profile directory adding `pyonly` (python3 under another id): a language only the
/// runners started with it have, so runs of it at a runner without it are always forwarded.
struct PyOnly(std::path::PathBuf);

impl PyOnly {
    fn new(tag: &str) -> PyOnly {
        let dir = runner_tests::private_dir(&format!("runner-peers-{tag}-"));
        let py3 = include_str!("../../profiles/python3.toml");
        let p = py3.replacen("id = \"python3\"", "id = \"pyonly\"", 1);
        std::fs::write(dir.join("pyonly.toml"), p).unwrap();
        PyOnly(dir)
    }

    async fn start(&self, peer: RawPeer) -> Daemon {
        Daemon::start(Opts {
            slots: 1,
            peer: Some(peer),
            profiles_dir: Some(self.0.clone()),
            ..Opts::default()
        })
        .await
    }
}

impl Drop for PyOnly {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pyonly(src: &str) -> Value {
    spec("pyonly", src, None, json!({ "cputime": 5 }))
}

fn py(src: &str, cputime: u32) -> Value {
    spec(
        "python3",
        src,
        Some("__tester__.python3"),
        json!({ "cputime": cputime }),
    )
}

const SLEEPY: &str = "import time\ntime.sleep(0.2)\nprint('ok')\n";

/// Total `runner_runs_total` of a daemon (from its /metrics).
async fn runs_served(addr: SocketAddr) -> u64 {
    metrics(addr)
        .await
        .lines()
        .filter(|l| l.starts_with("runner_runs_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn metrics(addr: SocketAddr) -> String {
    request(addr, "GET", "/metrics", None)
        .await
        .expect("GET /metrics")
        .text()
}

/// Waits until `a` reports the peer at `peer` as up (or down).
async fn wait_peer(a: SocketAddr, peer: SocketAddr, up: bool) {
    let want = format!("runner_peer_up{{peer=\"http://{peer}\"}} {}", u8::from(up));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !metrics(a).await.contains(&want) {
        assert!(
            Instant::now() < deadline,
            "{peer} never reported up={up} by {a}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A python3 job that holds `d`'s only slot for `secs` seconds.
fn hold_slot(d: &Daemon, secs: f64) -> tokio::task::JoinHandle<Resp> {
    let addr = d.addr;
    let src = format!("import time\ntime.sleep({secs})\nprint('held')\n");
    tokio::spawn(async move { post_run(addr, py(&src, 30)).await })
}

/// Waits until `d`'s slot is busy (its load header says free=0).
async fn wait_busy(d: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = request(d.addr, "GET", "/health", None)
            .await
            .expect("health");
        if r.headers
            .get("x-runner-load")
            .is_some_and(|v| v.contains("free=0"))
        {
            return;
        }
        assert!(Instant::now() < deadline, "slot never became busy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Concurrent sleepy runs on one runner with one slot and two idle peers: every run succeeds,
/// the peers take the overflow. Then sequential runs of a language only the peers have go to
/// them by weight (1 : 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_peers_overflow_and_weights() {
    if !privileged() {
        return;
    }
    bounded(async {
        let extra = PyOnly::new("weights");
        let b = extra.start(peer_section(false, KEY, &[])).await;
        let c = extra.start(peer_section(false, KEY, &[])).await;
        let a = start(Some(peer_section(true, KEY, &[(b.addr, 1), (c.addr, 3)]))).await;
        wait_peer(a.addr, b.addr, true).await;
        wait_peer(a.addr, c.addr, true).await;

        let mut hs = Vec::new();
        for _ in 0..6 {
            let addr = a.addr;
            hs.push(tokio::spawn(
                async move { post_run(addr, py(SLEEPY, 5)).await },
            ));
        }
        for h in hs {
            let r = h.await.unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(
                (r.json()["outcome"].clone(), r.json()["stdout"].clone()),
                (json!(15), json!("ok\n"))
            );
        }
        let (nb, nc) = (runs_served(b.addr).await, runs_served(c.addr).await);
        assert!(nb >= 1 && nc >= 1, "overflow not forwarded: b {nb}, c {nc}");

        // Weights: runs of a language only B and C have are always forwarded; idle peers are
        // drawn in proportion to their weight. 32 sequential runs, expected share of C 0.75
        // (σ ≈ 0.077): accept 0.5..=0.97 (more than 3σ below; at most 31 of 32 above).
        let (b0, c0) = (nb, nc);
        for _ in 0..32 {
            let r = post_run(a.addr, pyonly("print('w')\n")).await;
            assert_eq!(r.json()["stdout"], "w\n", "{}", r.text());
        }
        let (nb, nc) = (
            runs_served(b.addr).await - b0,
            runs_served(c.addr).await - c0,
        );
        assert_eq!(nb + nc, 32);
        let share = nc as f64 / 32.0;
        assert!(
            (0.5..=0.97).contains(&share),
            "weight 1:3 gave b {nb}, c {nc}"
        );
        a.stop().await;
        b.stop().await;
        c.stop().await;
    })
    .await;
}

/// 36 sleepy runs at concurrency 12 on A (peers B and C); C is killed halfway. No run fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_peers_killed_mid_load() {
    if !privileged() {
        return;
    }
    bounded(async {
        let b = start(Some(peer_section(false, KEY, &[]))).await;
        let c = start(Some(peer_section(false, KEY, &[]))).await;
        let a = start(Some(peer_section(true, KEY, &[(b.addr, 1), (c.addr, 1)]))).await;
        wait_peer(a.addr, b.addr, true).await;
        wait_peer(a.addr, c.addr, true).await;
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut hs = Vec::new();
        for _ in 0..12 {
            let (addr, next) = (a.addr, next.clone());
            hs.push(tokio::spawn(async move {
                let mut bad = Vec::new();
                while next.fetch_add(1, Ordering::SeqCst) < 36 {
                    let r = post_run(addr, py(SLEEPY, 5)).await;
                    if r.status != 200 || r.json()["outcome"] != 15 || r.json()["stdout"] != "ok\n"
                    {
                        bad.push(r.text());
                    }
                }
                bad
            }));
        }
        // Halfway: C dies with runs in flight.
        while next.load(Ordering::SeqCst) < 18 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let killed_served = runs_served(c.addr).await;
        let c_addr = c.addr;
        c.kill().await;
        let mut failed = Vec::new();
        for h in hs {
            failed.extend(h.await.unwrap());
        }
        assert!(
            failed.is_empty(),
            "{} failed runs: {failed:?}",
            failed.len()
        );
        assert!(killed_served >= 1, "C took no runs before it was killed");
        let m = metrics(a.addr).await;
        for l in m
            .lines()
            .filter(|l| l.starts_with("runner_peer_") && !l.contains("_bucket"))
        {
            eprintln!("A: {l}");
        }
        // C is out (ejected on a reset connection or down after failed probes).
        assert!(
            m.contains(&format!("runner_peer_up{{peer=\"http://{}\"}} 0", c_addr)),
            "{m}"
        );
        a.stop().await;
        b.stop().await;
    })
    .await;
}

/// A TCP proxy in front of a runner; while `hang` is set it passes nothing on, on new and
/// existing connections alike (it accepts and never answers, like a wedged host).
async fn hanging_proxy(
    target: SocketAddr,
    hang: Arc<AtomicBool>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    async fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        hang: Arc<AtomicBool>,
    ) {
        let mut buf = vec![0u8; 16384];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if hang.load(Ordering::SeqCst) {
                // Swallow it and hold the connection open.
                std::future::pending::<()>().await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        // Owned here: aborting the proxy aborts every pipe.
        let mut pipes = tokio::task::JoinSet::new();
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let Ok(t) = TcpStream::connect(target).await else {
                continue;
            };
            let (sr, sw) = s.into_split();
            let (tr, tw) = t.into_split();
            pipes.spawn(pipe(sr, tw, hang.clone()));
            pipes.spawn(pipe(tr, sw, hang.clone()));
            while pipes.try_join_next().is_some() {}
        }
    });
    (addr, task)
}

/// A peer that stops answering: the forwarded run times out, the peer is ejected and the run
/// succeeds on the other peer; when the peer answers again it is probed back in and used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_peers_hanging_peer_ejected_and_readmitted() {
    if !privileged() {
        return;
    }
    bounded(async {
        let extra = PyOnly::new("hang");
        let d = extra.start(peer_section(false, KEY, &[])).await;
        let b = extra.start(peer_section(false, KEY, &[])).await;
        let hang = Arc::new(AtomicBool::new(false));
        let (h, proxy) = hanging_proxy(d.addr, hang.clone()).await;
        // Probes need 3 × 1 s to notice; the run times out after 2 s and ejects first.
        let mut sec = peer_section(true, KEY, &[(h, 1000), (b.addr, 1)]);
        sec.probe_interval_ms = Some(1000);
        sec.probe_timeout_ms = Some(1000);
        sec.request_timeout_secs = Some(2.0);
        let a = start(Some(sec)).await;
        wait_peer(a.addr, h, true).await;
        wait_peer(a.addr, b.addr, true).await;

        hang.store(true, Ordering::SeqCst);
        let t = Instant::now();
        let r = post_run(a.addr, pyonly("print('x')\n")).await;
        assert_eq!(r.json()["stdout"], "x\n", "{}", r.text());
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "took {:?}",
            t.elapsed()
        );
        let m = metrics(a.addr).await;
        let ejected = format!("runner_peer_ejections_total{{peer=\"http://{h}\"}} 1");
        assert!(m.contains(&ejected), "{m}");
        assert!(runs_served(b.addr).await >= 1);

        // Answers again: re-admitted after the cool-down and `rise` probes, then chosen (1000:1).
        hang.store(false, Ordering::SeqCst);
        wait_peer(a.addr, h, true).await;
        let before = runs_served(d.addr).await;
        for _ in 0..3 {
            let r = post_run(a.addr, pyonly("print('y')\n")).await;
            assert_eq!(r.json()["stdout"], "y\n");
        }
        assert!(
            runs_served(d.addr).await > before,
            "the re-admitted peer took no run"
        );
        a.stop().await;
        proxy.abort();
        b.stop().await;
        d.stop().await;
    })
    .await;
}

/// B has a language A lacks (a profile directory with an extra profile): A lists it and
/// forwards its runs to B. A file PUT to A is pushed to B when B answers 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_peers_language_on_one_peer_and_file_push() {
    if !privileged() {
        return;
    }
    bounded(async {
        let extra = PyOnly::new("lang");
        let b = extra.start(peer_section(false, KEY, &[])).await;
        let a = start(Some(peer_section(true, KEY, &[(b.addr, 1)]))).await;
        wait_peer(a.addr, b.addr, true).await;
        let langs = request(a.addr, "GET", &format!("{BASE}/languages"), None)
            .await
            .unwrap()
            .json();
        let ids: Vec<&str> = langs
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l[0].as_str())
            .collect();
        assert!(
            ids.contains(&"pyonly") && ids.contains(&"python3"),
            "{ids:?}"
        );
        // A has a free slot, but not the language: forwarded.
        let r = post_run(a.addr, pyonly("print('only')\n")).await;
        assert_eq!(r.json()["stdout"], "only\n", "{}", r.text());

        let data = b"hello file\n";
        let id = md5_hex(data);
        let put = json!({"file_contents": base64::engine::general_purpose::STANDARD.encode(data)})
            .to_string();
        let r = request(
            a.addr,
            "PUT",
            &format!("{BASE}/files/{id}"),
            Some(put.as_bytes()),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 204);
        let mut s = pyonly("print(open('data.txt').read(), end='')\n");
        s["file_list"] = json!([[id, "data.txt"]]);
        let r = post_run(a.addr, s).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["stdout"], "hello file\n");
        let m = metrics(a.addr).await;
        assert!(
            m.contains(&format!(
                "runner_peer_file_pushes_total{{peer=\"http://{}\"}} 1",
                b.addr
            )),
            "{m}"
        );
        // Both runs ran at B: A answered them (runs_total) and counts them as forwarded, but
        // observes no usage for them; B, which ran them, does.
        for line in [
            "runner_runs_total{lang=\"pyonly\",outcome=\"success\"} 2",
            "runner_runs_forwarded_total{lang=\"pyonly\",outcome=\"success\"} 2",
            "runner_run_cpu_seconds_count 0",
            "runner_run_peak_memory_bytes_count 0",
        ] {
            assert!(m.lines().any(|l| l == line), "A: no {line:?} in\n{m}");
        }
        let mb = metrics(b.addr).await;
        assert!(
            mb.lines().any(|l| l == "runner_run_cpu_seconds_count 2"),
            "B ran them:\n{mb}"
        );
        a.stop().await;
        b.stop().await;
    })
    .await;
}

/// A and B are each other's peers: concurrent runs at both all succeed, and a hop-marked run
/// at a busy B is answered 21 by B (the sender then runs it itself), never sent back to A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_peers_loop_prevention() {
    if !privileged() {
        return;
    }
    bounded(async {
        let la = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let lb = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (aa, ab) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
        let a = Daemon::start_on(
            Opts {
                slots: 1,
                peer: Some(peer_section(true, KEY, &[(ab, 1)])),
                ..Opts::default()
            },
            la,
        )
        .await;
        let b = Daemon::start_on(
            Opts {
                slots: 1,
                peer: Some(peer_section(true, KEY, &[(aa, 1)])),
                ..Opts::default()
            },
            lb,
        )
        .await;
        wait_peer(a.addr, b.addr, true).await;
        wait_peer(b.addr, a.addr, true).await;
        let mut hs = Vec::new();
        for i in 0..8 {
            let addr = if i % 2 == 0 { a.addr } else { b.addr };
            hs.push(tokio::spawn(
                async move { post_run(addr, py(SLEEPY, 5)).await },
            ));
        }
        for h in hs {
            let r = h.await.unwrap();
            assert_eq!(r.json()["stdout"], "ok\n", "{}", r.text());
        }
        // A hop-marked run to a busy B gets 21 from B, never a forward back to A.
        let held = hold_slot(&b, 5.0);
        wait_busy(&b).await;
        let before = runs_served(a.addr).await;
        let r = raw(
            b.addr,
            &[("X-Runner-Hop", "1"), ("X-Runner-Peer-Key", KEY)],
            &py("print(1)\n", 5),
        )
        .await;
        assert_eq!(r.0, 200);
        assert_eq!(r.1["outcome"], 21, "{:?}", r.1);
        assert_eq!(
            runs_served(a.addr).await,
            before,
            "a hop-marked run was forwarded"
        );
        held.await.unwrap();
        a.stop().await;
        b.stop().await;
    })
    .await;
}

/// A peer configured with the wrong key is refused (403 to probes): it never comes up, so A
/// runs everything itself; direct requests with a wrong key or a bare hop marker get 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_peers_wrong_key_refused() {
    if !privileged() {
        return;
    }
    bounded(async {
        let b = start(Some(peer_section(false, "the-right-key", &[]))).await;
        let a = start(Some(peer_section(true, KEY, &[(b.addr, 1)]))).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(
            !metrics(a.addr)
                .await
                .contains(&format!("runner_peer_up{{peer=\"http://{}\"}} 1", b.addr))
        );
        let mut hs = Vec::new();
        for _ in 0..3 {
            let addr = a.addr;
            hs.push(tokio::spawn(
                async move { post_run(addr, py(SLEEPY, 5)).await },
            ));
        }
        for h in hs {
            assert_eq!(h.await.unwrap().json()["stdout"], "ok\n");
        }
        assert_eq!(runs_served(b.addr).await, 0);
        for h in [
            vec![("X-Runner-Hop", "1")],
            vec![("X-Runner-Hop", "1"), ("X-Runner-Peer-Key", KEY)],
        ] {
            let r = raw(b.addr, &h, &py("print(1)\n", 5)).await;
            assert_eq!((r.0, r.1), (403, json!("Unknown peer key")));
        }
        assert_eq!(runs_served(b.addr).await, 0);
        a.stop().await;
        b.stop().await;
    })
    .await;
}

/// POST runs with extra headers; (status, JSON body).
async fn raw(addr: SocketAddr, headers: &[(&str, &str)], spec: &Value) -> (u16, Value) {
    let body = json!({ "run_spec": spec }).to_string();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "POST {BASE}/runs HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&out[..end])
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    (
        status,
        serde_json::from_slice(&out[end + 4..]).unwrap_or(Value::Null),
    )
}
