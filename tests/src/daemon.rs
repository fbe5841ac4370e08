//! Tier: privileged (docs/testing.md). Helpers: a real daemon (real jails, real scheduler, the
//! real HTTP API) on `127.0.0.1:0`, in-process or as the `runner` binary, and a raw HTTP/1.1
//! client that sends what Moodle CodeRunner sends (docs/coderunner-client.md §1.5): a new TCP
//! connection per request.
//!
//! Every daemon gets its own data directory and its own uid range, so tests can run in parallel
//! and a test can tell its own jailed processes and cgroups from those of the others.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use runner::api;
use runner::cache::FileCache;
use runner::config::{Config, RawConfig, RawJail};
use runner::server::{self, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const BASE: &str = "/jobe/index.php/restapi";
pub const API_KEY: &str = "2AAA7A5415B4A9B394B54BF1D2E9D";
/// Far above the default 1990000 and from other suites, so parallel daemons never share a uid.
const UID_FIRST: u32 = 1_993_000;
const UIDS_PER_DAEMON: u32 = 16;

static NEXT: AtomicU32 = AtomicU32::new(0);
/// Serialises daemon start-up so each daemon can tell which `runner-<pid>-*` cgroups are its own.
static START: Mutex<()> = Mutex::new(());

/// A fresh private data directory (`crate::private_dir`) and a uid base unique in this process.
pub fn unique() -> (PathBuf, u32) {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = crate::private_dir("runner-e2e-");
    (dir, UID_FIRST + crate::uid_offset() + n * UIDS_PER_DAEMON)
}

/// Settings of an in-process daemon.
#[derive(Debug, Clone)]
pub struct Opts {
    pub slots: usize,
    pub queue_timeout_secs: f64,
    /// `[peer]` (peer mode); `None`: no peer section.
    pub peer: Option<runner::peer::RawPeer>,
    /// `profiles_dir` (extra or overriding language profiles).
    pub profiles_dir: Option<PathBuf>,
    /// `[judge]` (judge mode: origin, caps…).
    pub judge: runner::judge::RawJudge,
    /// `[api.keys]`; `None`: keys not required.
    pub api_keys: Option<HashMap<String, u32>>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            slots: 2,
            queue_timeout_secs: 10.0,
            peer: None,
            profiles_dir: None,
            judge: runner::judge::RawJudge::default(),
            api_keys: None,
        }
    }
}

/// An in-process daemon. `stop()` shuts it down and checks that its cgroups are gone; dropping
/// it without `stop()` still signals shutdown.
pub struct Daemon {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub uids: std::ops::Range<u32>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    runtime: Option<Runtime>,
    cgroups: Vec<PathBuf>,
}

impl Daemon {
    pub async fn start(opts: Opts) -> Daemon {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Daemon::start_on(opts, listener).await
    }

    /// As `start`, serving on `listener` (bound beforehand, so that two daemons can name each
    /// other as peers).
    pub async fn start_on(opts: Opts, listener: TcpListener) -> Daemon {
        let (data_dir, uid_base) = unique();
        let raw = RawConfig {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data_dir.clone()),
            slots: Some(opts.slots),
            queue_timeout_secs: Some(opts.queue_timeout_secs),
            shutdown_grace_secs: Some(10.0),
            jail: RawJail {
                uid_base: Some(uid_base),
                ..RawJail::default()
            },
            peer: opts.peer.clone().unwrap_or_default(),
            profiles_dir: opts.profiles_dir.clone(),
            judge: opts.judge.clone(),
            api: runner::config::RawApi {
                keys: opts.api_keys.clone(),
                ..runner::config::RawApi::default()
            },
            ..RawConfig::default()
        };
        let cfg = Config::try_from(raw).expect("valid config");
        let (runtime, cgroups) = start_runtime(&cfg);
        let mut runtime = runtime;
        server::start_judge(&cfg, &mut runtime)
            .await
            .expect("judge start");
        let cache = Arc::new(
            FileCache::open(cfg.cache_dir.clone(), cfg.cache_max_bytes).expect("file cache"),
        );
        let state = Arc::new(server::app_state(&runtime, cache));
        let addr = listener.local_addr().expect("local addr");
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(api::serve(listener, state, async {
            let _ = rx.await;
        }));
        Daemon {
            addr,
            data_dir,
            uids: uid_base..uid_base + opts.slots as u32,
            stop: Some(stop),
            task: Some(task),
            runtime: Some(runtime),
            cgroups,
        }
    }

    /// A crash as peers see it: the server is aborted at once (open connections are reset, new
    /// ones refused). Then waits for the runs still in the scheduler's tasks to end and checks
    /// the clean-up as `stop` does.
    pub async fn kill(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        if let Some(rt) = &self.runtime {
            use runner::sched::Executor;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let l = rt.scheduler.load();
                if l.free == l.slots && l.queued == 0 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "runs of a killed daemon did not end"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.stop().await;
    }

    /// The judge engine of this daemon.
    pub fn judge(&self) -> runner::judge::Judge {
        self.runtime
            .as_ref()
            .and_then(|rt| rt.judge.clone())
            .expect("the judge runs")
    }

    /// Stops serving, drops the runtime and asserts that no cgroup and no jailed process of this
    /// daemon is left.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("server drains within 20 s")
                .expect("server task")
                .expect("server result");
        }
        if let Some(rt) = &self.runtime {
            // Judging tasks hold the scheduler (and so the jail): let them go first.
            if let Some(judge) = &rt.judge {
                judge.drain(Duration::from_secs(20)).await;
                judge.shutdown();
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while Arc::strong_count(&rt.scheduler) > 1 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        drop(self.runtime.take());
        let left: Vec<&PathBuf> = self.cgroups.iter().filter(|p| p.exists()).collect();
        assert!(left.is_empty(), "cgroups left behind: {left:?}");
        assert_no_jailed(self.uids.clone(), Duration::from_secs(2));
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// `server::start` for a daemon of a test: start-ups are serialised so that each daemon knows
/// which of this process's `runner-<pid>-*` cgroups are its own (returned, for the clean-up check).
pub fn start_runtime(cfg: &Config) -> (Runtime, Vec<PathBuf>) {
    let _g = START.lock().unwrap_or_else(|e| e.into_inner());
    let before = own_cgroups(std::process::id());
    let runtime = server::start(cfg, server::Mode::Daemon).expect("daemon start");
    let after = own_cgroups(std::process::id());
    let mine: Vec<PathBuf> = after.into_iter().filter(|p| !before.contains(p)).collect();
    assert!(!mine.is_empty(), "the daemon created no cgroup subtree");
    (runtime, mine)
}

/// `runner-<pid>-*` directories in the cgroup trees (depth ≤ 4 below /sys/fs/cgroup).
pub fn own_cgroups(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("runner-{pid}-");
    let mut out = Vec::new();
    fn walk(dir: &Path, depth: u32, prefix: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(p.clone());
            }
            if depth < 4 {
                walk(&p, depth + 1, prefix, out);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), 1, &prefix, &mut out);
    out
}

/// Pids of processes whose real uid is in `uids`.
pub fn jailed_pids(uids: std::ops::Range<u32>) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        if let Some(uid) = uid.filter(|u| uids.contains(u)) {
            out.push((pid, uid));
        }
    }
    out
}

/// The run directories left in `runs` after waiting up to `within` for none: a finished step's
/// run directory is removed by a teardown thread shortly after its response (docs/jail.md,
/// "Teardown off the request path").
pub fn run_dirs_left(runs: &Path, within: Duration) -> Vec<PathBuf> {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<PathBuf> = std::fs::read_dir(runs)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to `within` for no process with a uid in `uids`; panics naming the survivors.
pub fn assert_no_jailed(uids: std::ops::Range<u32>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let left = jailed_pids(uids.clone());
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("jailed processes (pid, uid) still alive after {within:?}: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// The `runner` binary.

/// Path of `target/<profile>/runner`, built with `cargo build -p runner` if missing.
pub fn runner_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/e2e_coderunner-…  →  target/debug/runner
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = dir.join("runner");
    if !bin.exists() {
        let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "runner"])
            .status()
            .expect("cargo build -p runner");
        assert!(st.success(), "cargo build -p runner failed");
    }
    assert!(bin.exists(), "{} not found", bin.display());
    bin
}

/// A free port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The `runner serve` binary as a child process.
pub struct BinDaemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub uids: std::ops::Range<u32>,
    pub log: PathBuf,
    /// Leave the data directory when dropped (a restart on it follows).
    pub keep_data_dir: bool,
}

/// The config `BinDaemon` writes: `data_dir`, `slots`, a 20 s grace, the uid base, then `extra`
/// (top-level settings first in it, then tables).
pub fn bin_config(data_dir: &Path, uid_base: u32, slots: u32, extra: &str) -> String {
    format!(
        "data_dir = \"{}\"\nslots = {slots}\nshutdown_grace_secs = 20.0\n{extra}\n[jail]\nuid_base = {uid_base}\n",
        data_dir.display()
    )
}

impl BinDaemon {
    /// Writes a config for `data_dir` and uid base, starts `runner serve` and waits until
    /// `GET languages` answers 200.
    pub async fn start(data_dir: &Path, uid_base: u32, slots: u32) -> BinDaemon {
        BinDaemon::start_with(data_dir, uid_base, slots, "", "").await
    }

    /// As `start`, with `extra` settings in the config (see [`bin_config`]) and `probe`, the
    /// path polled until it answers 200 (empty: `GET languages` on the Jobe port).
    pub async fn start_with(
        data_dir: &Path,
        uid_base: u32,
        slots: u32,
        extra: &str,
        probe: &str,
    ) -> BinDaemon {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let config = data_dir.join("runner.toml");
        std::fs::write(&config, bin_config(data_dir, uid_base, slots, extra))
            .expect("write config");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("daemon.log"))
            .expect("log file");
        let child = Command::new(runner_binary())
            .arg("--config")
            .arg(&config)
            .args(["serve", "--listen", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log fd"))
            .stderr(logf)
            .spawn()
            .expect("spawn runner serve");
        let mut d = BinDaemon {
            child,
            addr,
            data_dir: data_dir.to_owned(),
            uids: uid_base..uid_base + slots,
            log: data_dir.join("daemon.log"),
            keep_data_dir: false,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!(
                    "runner serve exited with {st} during start-up:\n{}",
                    d.log_text()
                );
            }
            let path = if probe.is_empty() {
                format!("{BASE}/languages")
            } else {
                probe.to_owned()
            };
            if let Ok(r) = request(addr, "GET", &path, None).await
                && r.status == 200
            {
                return d;
            }
            if Instant::now() > deadline {
                panic!("runner serve not ready in 30 s:\n{}", d.log_text());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(st.success(), "kill {sig} failed");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The config file the daemon was started with (rewrite it, then `signal("-HUP")`).
    pub fn config_path(&self) -> PathBuf {
        self.data_dir.join("runner.toml")
    }

    /// Waits until the log has `n` lines containing `needle`; panics with the log after
    /// `within`.
    pub async fn wait_log(&self, needle: &str, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self
                .log_text()
                .lines()
                .filter(|l| l.contains(needle))
                .count()
                >= n
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{n} log line(s) with {needle:?} not seen in {within:?}:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the process to exit (polling, so the async runtime is not blocked for long).
    pub async fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "runner did not exit within {within:?}:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Also on a failing test's unwind: SIGTERM first, so that the daemon removes its own cgroups,
/// run directories and mounts, SIGKILL only after 20 s; then the data directory goes.
impl Drop for BinDaemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if !self.keep_data_dir {
            // A daemon that was SIGKILLed left its run directories mounted (the next daemon on
            // the directory, or `runner check`, would remove them): the same clean-up here.
            runner::jail::Jail::remove_stale_run_dirs_of(&self.data_dir);
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 client.

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn job_id() -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{:08x}", t ^ SEQ.fetch_add(0x9e37_79b9, Ordering::Relaxed))
}

/// One request on a new connection with CodeRunner's headers, bounded by 60 s.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<Resp> {
    request_with(addr, method, path, &[], body).await
}

/// As `request`, with `headers` added (e.g. `Last-Event-ID`).
pub async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Resp> {
    tokio::time::timeout(
        Duration::from_secs(60),
        request_inner(addr, method, path, headers, body),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out"))?
}

async fn request_inner(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr).await?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: MoodleBot/1.0\r\n\
         Content-Type: application/json; charset=utf-8\r\nAccept-Charset: utf-8\r\n\
         Accept: application/json\r\nX-API-KEY: {API_KEY}\r\nX-CodeRunner-Job-Id: {}\r\n\
         Connection: close\r\n",
        job_id()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await?;
    if let Some(b) = body {
        s.write_all(b).await?;
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Resp> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    } else if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        if body.len() < n {
            return Err(bad("short body"));
        }
        body.truncate(n);
    }
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).ok()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// The parts of a Jobe answer that two runs of the same program must agree on: outcome,
/// cmpinfo, stdout and stderr, each text passed through `normalise` (what differs from run to
/// run, such as the run directory's random name).
pub fn answer_parts(
    v: &serde_json::Value,
    normalise: impl Fn(&str) -> String,
) -> serde_json::Value {
    let text = |k: &str| normalise(v[k].as_str().unwrap_or_default());
    serde_json::json!({
        "outcome": v["outcome"],
        "cmpinfo": text("cmpinfo"),
        "stdout": text("stdout"),
        "stderr": text("stderr"),
    })
}

/// `POST runs` with `{"run_spec": spec}`; panics on a transport error.
pub async fn post_run(addr: SocketAddr, spec: serde_json::Value) -> Resp {
    let body = serde_json::json!({ "run_spec": spec }).to_string();
    request(addr, "POST", &format!("{BASE}/runs"), Some(body.as_bytes()))
        .await
        .expect("POST runs")
}

/// A CodeRunner-shaped run_spec (key order as CodeRunner's, `parameters` `[]` when empty).
pub fn spec(
    lang: &str,
    source: &str,
    sourcefilename: Option<&str>,
    params: serde_json::Value,
) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("language_id".into(), lang.into());
    m.insert("sourcecode".into(), source.into());
    if let Some(n) = sourcefilename {
        m.insert("sourcefilename".into(), n.into());
    }
    m.insert("input".into(), "".into());
    m.insert("file_list".into(), serde_json::json!([]));
    m.insert("parameters".into(), params);
    m.insert("jobeserver".into(), "127.0.0.1".into());
    serde_json::Value::Object(m)
}

/// MD5 hex of `data` (as CodeRunner's file ids), via `md5sum`.
pub fn md5_hex(data: &[u8]) -> String {
    use std::io::Write;
    let mut c = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("md5sum");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write");
    let out = c.wait_with_output().expect("md5sum output");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("md5sum printed a hash")
        .to_owned()
}
