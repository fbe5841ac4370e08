//! Tier: privileged + broker (docs/testing.md). A real runner in queue mode, in-process: real
//! jails, the real scheduler and judge engine (`server::start` and `server::start_judge`), queue
//! mode as `server::start_queue` starts it, and the HTTP API (`/health`, `/metrics`) on
//! `127.0.0.1` port 0. Its own data directory and uid range; `stop` checks the clean-up.
//!
//! And [`serve_queued`]: the `runner serve` binary in queue mode (for what only a process shows:
//! SIGTERM, SIGKILL, several runners on one queue), with a test set uploaded over HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runner::api;
use runner::cache::FileCache;
use runner::config::{Config, RawConfig, RawJail};
use runner::judge::{Judge, TestsetId};
use runner::metrics::QueueCounters;
use runner::queue::{BrokerUrl, OnStop, QueueConfig, QueueMode};
use runner::server::{self, Runtime};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::daemon::{BinDaemon, assert_no_jailed, request, start_runtime, unique};

/// A test set to store: `cases` are `(name, input, expected output)`.
#[derive(Debug, Clone, Copy)]
pub struct Testset<'a> {
    pub problem: &'a str,
    pub version: &'a str,
    pub cases: &'a [(&'a str, &'a str, &'a str)],
}

/// Problem `sum` v1: one case, `1 2` → `3`.
pub const SUM_TESTSET: Testset<'static> = Testset {
    problem: "sum",
    version: "v1",
    cases: &[("1", "1 2\n", "3\n")],
};

/// Queue settings for a test: every default, the broker `url`, fast reconnects.
pub fn queue_config(url: &str) -> QueueConfig {
    let mut q = QueueConfig::with_url(BrokerUrl::parse(url).expect("broker url"));
    q.reconnect_min = Duration::from_millis(100);
    q.reconnect_max = Duration::from_millis(500);
    q
}

/// A runner in queue mode.
pub struct QueueRunner {
    pub addr: SocketAddr,
    judge: Option<Judge>,
    pub counters: Arc<QueueCounters>,
    pub uids: std::ops::Range<u32>,
    pub window: usize,
    data_dir: PathBuf,
    queue: Option<QueueMode>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    runtime: Option<Runtime>,
    cgroups: Vec<PathBuf>,
}

impl QueueRunner {
    /// Starts a runner with `slots` slots, judging from the broker as `queue` says, with
    /// `testsets` stored before queue mode starts. `profiles_dir`: extra or overriding profiles
    /// (e.g. one that takes a language away).
    pub async fn start(
        slots: usize,
        queue: QueueConfig,
        profiles_dir: Option<&Path>,
        testsets: &[Testset<'_>],
    ) -> QueueRunner {
        let (data_dir, uid_base) = unique();
        let raw = RawConfig {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data_dir.clone()),
            slots: Some(slots),
            shutdown_grace_secs: Some(10.0),
            profiles_dir: profiles_dir.map(Path::to_path_buf),
            jail: RawJail {
                uid_base: Some(uid_base),
                ..RawJail::default()
            },
            ..RawConfig::default()
        };
        let mut cfg = Config::try_from(raw).expect("valid config");
        let window = slots + queue.prefetch;
        cfg.queue = Some(queue);
        let (mut runtime, cgroups) = start_runtime(&cfg);
        let judge = server::start_judge(&cfg, &mut runtime)
            .await
            .expect("judge start");
        let cache = Arc::new(
            FileCache::open(cfg.cache_dir.clone(), cfg.cache_max_bytes).expect("file cache"),
        );
        let state = Arc::new(server::app_state(&runtime, cache));
        for t in testsets {
            put_testset(&judge, t.problem, t.version, t.cases);
        }
        let queue = server::start_queue(&cfg, &runtime, &judge);
        let counters = runtime
            .scheduler
            .metrics()
            .queue()
            .cloned()
            .expect("queue counters attached");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(api::serve(listener, state, async {
            let _ = rx.await;
        }));
        QueueRunner {
            addr,
            judge: Some(judge),
            counters,
            uids: uid_base..uid_base + slots as u32,
            window,
            data_dir,
            queue,
            stop: Some(stop),
            task: Some(task),
            runtime: Some(runtime),
            cgroups,
        }
    }

    /// The judge engine.
    pub fn judge(&self) -> &Judge {
        self.judge.as_ref().expect("running")
    }

    /// Waits until connected (bounded).
    pub async fn connected(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.counters.connected() {
            assert!(
                Instant::now() < deadline,
                "queue mode did not connect within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops queue mode with `policy`; how long that took.
    pub async fn stop_queue(&mut self, policy: OnStop) -> Duration {
        let t = Instant::now();
        if let Some(q) = self.queue.take() {
            q.stop_with(policy).await;
        }
        t.elapsed()
    }

    /// Stops queue mode (as configured, if not stopped yet), the HTTP API and the judge, drops
    /// the runtime, and asserts that no cgroup and no jailed process of this runner is left.
    pub async fn stop(mut self) {
        if let Some(q) = self.queue.take() {
            q.stop().await;
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
        }
        if let Some(judge) = self.judge.take() {
            judge.drain(Duration::from_secs(10)).await;
            judge.shutdown();
        }
        drop(self.runtime.take());
        // The last references to the jail go with the tasks that held them (event forwarders,
        // the judge's purger): its cgroups are removed when it is dropped.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<&PathBuf> = self.cgroups.iter().filter(|p| p.exists()).collect();
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "cgroups left behind: {left:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_no_jailed(self.uids.clone(), Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl Drop for QueueRunner {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(q) = self.queue.take() {
            // Not stopped by the test (it failed): abort what runs, give it back.
            tokio::spawn(q.stop_with(OnStop::Requeue));
        }
    }
}

/// Stores a test set in `judge`'s store from `cases` (`(name, input, expected output)`), as an
/// upload would (a tar archive through the archive checks).
pub fn put_testset(judge: &Judge, problem: &str, version: &str, cases: &[(&str, &str, &str)]) {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "runner-testset-{}-{problem}-{version}-{n}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    for (name, input, output) in cases {
        std::fs::write(dir.join(format!("{name}.in")), input).expect("input");
        std::fs::write(dir.join(format!("{name}.out")), output).expect("output");
    }
    let out = Command::new("tar")
        .arg("-cf")
        .arg("-")
        .arg("-C")
        .arg(&dir)
        .arg(".")
        .output()
        .expect("tar");
    assert!(out.status.success(), "tar failed");
    let _ = std::fs::remove_dir_all(&dir);
    let id = TestsetId::new(problem, version).expect("test set id");
    judge
        .testsets()
        .store()
        .put_archive(&id, std::io::Cursor::new(out.stdout))
        .expect("test set stored");
}

/// A tar of `t` (`<name>.in`, `<name>.out`), as `tar -cf` makes it, for an upload over HTTP.
pub fn testset_tar(t: &Testset<'_>) -> Vec<u8> {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "runner-testset-tar-{}-{}-{n}",
        std::process::id(),
        t.problem
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut names = Vec::new();
    for (name, input, output) in t.cases {
        std::fs::write(dir.join(format!("{name}.in")), input).expect("input");
        std::fs::write(dir.join(format!("{name}.out")), output).expect("output");
        names.extend([format!("{name}.in"), format!("{name}.out")]);
    }
    let out = Command::new("tar")
        .arg("-cf")
        .arg("-")
        .arg("-C")
        .arg(&dir)
        .args(&names)
        .output()
        .expect("tar");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "tar failed");
    out.stdout
}

/// Starts `runner serve` with `slots` slots on `data_dir` and `uid_base`, queue mode on: the
/// broker `url`, then `queue_settings` (more `key = value` lines of `[queue]`). Uploads
/// `testsets` over HTTP (`PUT /judge/v1/problems/…`) and waits until `/health` says
/// `queue: connected` (bounded). The daemon's log is in `BinDaemon::log`.
pub async fn serve_queued(
    data_dir: &Path,
    uid_base: u32,
    slots: u32,
    url: &str,
    queue_settings: &str,
    testsets: &[Testset<'_>],
) -> BinDaemon {
    let d = BinDaemon::start_with(
        data_dir,
        uid_base,
        slots,
        &format!("[queue]\nurl = \"{url}\"\n{queue_settings}\n"),
        "",
    )
    .await;
    for t in testsets {
        let path = format!("/judge/v1/problems/{}/testsets/{}", t.problem, t.version);
        let put = request(d.addr, "PUT", &path, Some(&testset_tar(t)))
            .await
            .expect("PUT test set");
        assert!(
            put.status == 201 || put.status == 200,
            "PUT {path}: {} {}",
            put.status,
            put.text()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = request(d.addr, "GET", "/health", None)
            .await
            .expect("GET /health");
        if h.json()["queue"] == "connected" {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "runner serve did not connect to the broker within 30 s:\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
