//! Peer mode: forward the overflow of runs to sibling runners, by weight and health.
//!
//! Owns: the peer list (static entries and names re-resolved through DNS), active health probes
//! (`GET /peer/status`, HAProxy-style rise/fall) and passive ejection, the choice of a peer
//! (weighted power-of-two-choices, `select`), the forwarding client with failover and file
//! push on 404 (`client`), the peer-key check, the language union, and the peer metrics.
//!
//! A run arriving from a client goes through [`Peers::dispatch`]: local first (a free slot right
//! now), else a healthy peer with the language and free capacity, else it waits here (the local
//! queue) until a local slot or a peer frees up, or the queue timeout gives outcome 21. A run
//! arriving from a peer carries `X-Runner-Hop` and is never forwarded again
//! ([`Peers::run_forwarded`]). Docs: docs/peers.md.
//!
//! Must not: forward without the peer key, accept a hop-marked request without it (never an
//! open relay), log run bodies or keys, or parse anything from a peer without a size bound.

mod client;
pub mod config;
pub mod metrics;
mod select;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use self::client::{Client, jobe_url, status_url};
pub use self::config::{PeerConfig, RawPeer, RawPeerDns, RawPeerEntry};
use self::metrics::PeerMetrics;
use self::select::{Candidate, Health, HealthRules, Rng, Transition};
use crate::cache::FileCache;
use crate::job::{Job, Outcome, RunResult, Usage};
use crate::metrics::lock;
use crate::sched::{ExecError, Executor, Load};

/// Marks a request forwarded by a peer; such a request is never forwarded again.
pub const HOP_HEADER: &str = "x-runner-hop";
/// The shared peer key.
pub const KEY_HEADER: &str = "x-runner-peer-key";
/// On every response: `slots=<n>, free=<n>, queued=<n>`.
pub const LOAD_HEADER: &str = "x-runner-load";

/// How often a waiting run re-checks capacity when nothing notified it.
const TICK: Duration = Duration::from_millis(25);

/// Who sent a request, by its peer headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No peer headers: a client.
    Client,
    /// The right peer key.
    Peer,
}

/// Checks the peer headers against `key` (this runner's peer key, if any). A hop marker or a
/// peer key without the right key is refused: a runner never relays for strangers.
pub fn authenticate(key: Option<&str>, headers: &HeaderMap) -> Result<Caller, UnknownPeerKey> {
    let sent = headers.get(KEY_HEADER).map(|v| v.as_bytes());
    let hop = headers.contains_key(HOP_HEADER);
    match (sent, key) {
        (None, _) if !hop => Ok(Caller::Client),
        (Some(s), Some(k)) if constant_time_eq(s, k.as_bytes()) => Ok(Caller::Peer),
        _ => Err(UnknownPeerKey),
    }
}

/// A peer header without this runner's peer key (HTTP 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown peer key")]
pub struct UnknownPeerKey;

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `slots=1, free=0, queued=3`.
pub fn format_load(l: Load) -> String {
    format!("slots={}, free={}, queued={}", l.slots, l.free, l.queued)
}

/// Parses [`format_load`]'s output; unknown parts are ignored.
pub fn parse_load(s: &str) -> Option<Load> {
    let mut l = Load::default();
    let mut seen = 0;
    for part in s.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        let v: usize = v.trim().parse().ok()?;
        match k.trim() {
            "slots" => l.slots = v,
            "free" => l.free = v,
            "queued" => l.queued = v,
            _ => continue,
        }
        seen += 1;
    }
    (seen == 3).then_some(l)
}

/// One peer.
struct Peer {
    /// Base URL, also its name in logs and metrics.
    url: String,
    weight: u32,
    key: String,
    /// The DNS name it came from, if any.
    origin: Option<String>,
    /// Our forwarded runs at it right now.
    inflight: AtomicUsize,
    /// Bumped when a forwarded run's response reports the load: a probe sent before that
    /// carries older news and does not overwrite it.
    reports: AtomicU64,
    st: Mutex<PeerState>,
    /// Notified when the peer goes down or is ejected: forwards waiting on it fail over.
    down: Notify,
}

impl Peer {
    /// A peer not probed yet.
    fn new(url: String, weight: u32, key: String, origin: Option<String>) -> Arc<Peer> {
        Arc::new(Peer {
            url,
            weight,
            key,
            origin,
            inflight: AtomicUsize::new(0),
            reports: AtomicU64::new(0),
            st: Mutex::new(PeerState::default()),
            down: Notify::new(),
        })
    }
}

#[derive(Default)]
struct PeerState {
    health: Health,
    slots: usize,
    /// Slots busy (or queued for) with others' runs, as of the last report.
    external: usize,
    languages: Vec<(String, String)>,
    /// Its status carried our own instance id (a DNS name that resolves to us).
    is_self: bool,
}

struct Shared {
    cfg: PeerConfig,
    queue_timeout: Duration,
    max_queue: usize,
    /// Random id in `/peer/status`, to recognise ourselves behind a DNS name.
    instance: String,
    list: RwLock<Vec<Arc<Peer>>>,
    client: Client,
    metrics: PeerMetrics,
    /// FIFO turn among runs waiting for capacity (tokio's mutex is fair).
    turn: tokio::sync::Mutex<()>,
    /// Capacity may have changed (a run ended, a probe reported).
    changed: Notify,
    /// Runs waiting here for capacity (reported as queued).
    waiting: AtomicUsize,
    /// Moving average of local run durations, in µs (for the expected queue wait).
    avg_local_us: AtomicU64,
    rng: Mutex<Rng>,
    rules: HealthRules,
}

/// Peer mode of one daemon. Dropping it stops the probe and DNS tasks.
pub struct Peers {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Peers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Result of one forward (possibly after a file push).
enum Attempt {
    Done(Result<RunResult, ExecError>),
    /// Try elsewhere; the peer that failed.
    Retry(Arc<Peer>),
}

/// What a waiting run does next.
enum Choice<F> {
    Local(F),
    Queue,
    Peer(InFlight),
    Overload,
}

/// One of our runs at a peer: counted in its `inflight` from creation to drop, also when the
/// client goes away and the request future is dropped mid-forward.
struct InFlight(Arc<Peer>);

impl InFlight {
    fn new(p: Arc<Peer>) -> Self {
        p.inflight.fetch_add(1, Ordering::SeqCst);
        InFlight(p)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a run as waiting while alive.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::SeqCst);
        Waiting(c)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Peers {
    /// Builds peer mode; when `cfg.enabled`, starts the probe task and one DNS task per name
    /// (must be called inside a tokio runtime). `queue_timeout` and `max_queue` are the
    /// scheduler's: a run waits here at most that long, and no more than that many wait.
    pub fn start(cfg: PeerConfig, queue_timeout: Duration, max_queue: usize) -> Arc<Peers> {
        let mut rng = Rng::new(Rng::seed());
        let instance = format!("{:016x}", rng.next_u64());
        let list = cfg
            .peers
            .iter()
            .map(|p| Peer::new(p.url.clone(), p.weight, p.key.clone(), None))
            .collect();
        let shared = Arc::new(Shared {
            rules: HealthRules {
                rise: cfg.rise,
                fall: cfg.fall,
                cooldown: cfg.cooldown,
            },
            client: Client::new(cfg.probe_timeout.max(Duration::from_millis(200))),
            cfg,
            queue_timeout,
            max_queue,
            instance,
            list: RwLock::new(list),
            metrics: PeerMetrics::default(),
            turn: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
            waiting: AtomicUsize::new(0),
            avg_local_us: AtomicU64::new(0),
            rng: Mutex::new(rng),
        });
        let mut tasks = Vec::new();
        if shared.cfg.enabled {
            tasks.push(tokio::spawn(probe_loop(shared.clone())));
            for e in shared.cfg.dns.clone() {
                tasks.push(tokio::spawn(dns_loop(shared.clone(), e)));
            }
            tracing::info!(
                peers = shared.cfg.peers.len(),
                dns = shared.cfg.dns.len(),
                "peer mode: forwarding overflow"
            );
        }
        Arc::new(Peers { shared, tasks })
    }

    /// Peer mode as configured: `None` when `[peer]` has neither `enabled` nor a `key`.
    pub fn from_config(cfg: &crate::config::Config) -> Option<Arc<Peers>> {
        (cfg.peer.enabled || cfg.peer.key.is_some()).then(|| {
            Peers::start(
                cfg.peer.clone(),
                cfg.sched.queue_timeout,
                cfg.sched.max_queue,
            )
        })
    }

    /// Whether this runner forwards (`peer.enabled`); otherwise it only accepts forwarded runs.
    pub fn forwarding(&self) -> bool {
        self.shared.cfg.enabled
    }

    /// This runner's peer key.
    pub fn key(&self) -> Option<&str> {
        self.shared.cfg.key.as_deref()
    }

    /// Runs waiting here for capacity.
    pub fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::SeqCst)
    }

    /// Appends the peer metrics to a `/metrics` body.
    pub fn render_metrics(&self, out: &mut String) {
        self.shared.metrics.render(out);
    }

    /// `GET /languages`: the local languages, then those only healthy peers have (by id).
    pub fn languages(&self, local: Vec<(String, String)>) -> Vec<(String, String)> {
        if !self.forwarding() {
            return local;
        }
        let mut extra = BTreeMap::new();
        for p in read(&self.shared.list).iter() {
            let st = lock(&p.st);
            if !st.health.is_up() || st.is_self {
                continue;
            }
            for (id, v) in &st.languages {
                if !local.iter().any(|(l, _)| l == id) {
                    extra.entry(id.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        let mut out = local;
        out.extend(extra);
        out
    }

    /// The `GET /peer/status` body: local capacity and local languages only (never the union,
    /// or languages would travel from peer to peer while runs are never forwarded twice).
    pub fn status(&self, load: Load, local: &[(String, String)]) -> serde_json::Value {
        serde_json::json!({
            "instance": self.shared.instance,
            "slots": load.slots,
            "free": load.free,
            "queued": load.queued,
            "languages": local,
        })
    }

    /// A run forwarded to us: local only, never forwarded again. Waits at most
    /// `forwarded_queue_wait` for a slot, then outcome 21 (the sender fails over).
    pub async fn run_forwarded(
        &self,
        exec: &Arc<dyn Executor>,
        job: Job,
    ) -> Result<RunResult, ExecError> {
        let sh = &self.shared;
        let deadline = Instant::now() + sh.cfg.forwarded_queue_wait;
        let mut job = job;
        loop {
            let notified = sh.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match exec.try_run(job) {
                Ok(fut) => {
                    let r = fut.await;
                    sh.changed.notify_waiters();
                    return r;
                }
                Err(j) => job = j,
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(RunResult::overload());
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(TICK.min(deadline - now)) => {}
            }
        }
    }

    /// A run from a client: local first, else a peer, else wait for either (see the module
    /// docs). `body` is the request body as received (forwarded unchanged), `files` the
    /// `file_list` ids (pushed to a peer that answers 404).
    pub async fn dispatch(
        &self,
        exec: &Arc<dyn Executor>,
        cache: &Arc<FileCache>,
        job: Job,
        body: Bytes,
        files: Vec<String>,
    ) -> Result<RunResult, ExecError> {
        let sh = &self.shared;
        let local_ok = exec.languages().iter().any(|(l, _)| *l == job.language);
        let deadline = Instant::now() + sh.queue_timeout;
        let lang = job.language.clone();
        let mut job = Some(job);
        let mut attempts = 0u32;
        let mut tried: Vec<String> = Vec::new();
        if sh.waiting.load(Ordering::SeqCst) >= sh.max_queue {
            return Ok(RunResult::overload());
        }
        loop {
            let waiting = Waiting::new(&sh.waiting);
            let turn = sh.turn.lock().await;
            let choice = loop {
                let notified = sh.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if local_ok {
                    let j = job.take().expect("the job is here until it is handed on");
                    match exec.try_run(j) {
                        Ok(fut) => break Choice::Local(fut),
                        Err(j) => job = Some(j),
                    }
                    if attempts >= sh.cfg.max_attempts || self.local_wait_acceptable(exec) {
                        break Choice::Queue;
                    }
                }
                if attempts < sh.cfg.max_attempts
                    && let Some(p) = self.select(&lang, &tried)
                {
                    break Choice::Peer(InFlight::new(p));
                }
                let now = Instant::now();
                // Out of time, or a language only peers have and every attempt used.
                if now >= deadline || (!local_ok && attempts >= sh.cfg.max_attempts) {
                    break Choice::Overload;
                }
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep(TICK.min(deadline - now)) => {}
                }
            };
            drop(turn);
            drop(waiting);
            match choice {
                Choice::Local(fut) => {
                    let started = Instant::now();
                    let r = fut.await;
                    self.note_local(started.elapsed());
                    sh.changed.notify_waiters();
                    return r;
                }
                Choice::Queue => {
                    let j = job.take().expect("the job is here until it is handed on");
                    let r = exec.run(j).await;
                    sh.changed.notify_waiters();
                    return r;
                }
                Choice::Overload => return Ok(RunResult::overload()),
                Choice::Peer(run) => match self.forward(run, &body, &files, cache).await {
                    Attempt::Done(r) => return r,
                    Attempt::Retry(p) => {
                        attempts += 1;
                        sh.metrics.retry();
                        tracing::info!(peer = %p.url, attempts, "forward failed; trying elsewhere");
                        tried.push(p.url.clone());
                    }
                },
            }
        }
    }

    /// With `forward_queue_wait` set, a run stays in the local queue while the expected wait
    /// (queue length × average run time / slots) is within it.
    fn local_wait_acceptable(&self, exec: &Arc<dyn Executor>) -> bool {
        let limit = self.shared.cfg.forward_queue_wait;
        if limit.is_zero() {
            return false;
        }
        let load = exec.load();
        let avg = Duration::from_micros(self.shared.avg_local_us.load(Ordering::Relaxed));
        let ahead = u32::try_from(load.queued + 1).unwrap_or(u32::MAX);
        let slots = u32::try_from(load.slots.max(1)).unwrap_or(u32::MAX);
        avg * ahead / slots <= limit
    }

    fn note_local(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let avg = &self.shared.avg_local_us;
        let old = avg.load(Ordering::Relaxed);
        // EWMA with α = 1/8; the first sample sets it.
        let new = if old == 0 { us } else { old - old / 8 + us / 8 };
        avg.store(new, Ordering::Relaxed);
    }

    /// A healthy peer with `lang` and a free slot, by weighted power-of-two-choices on
    /// used/weight; `None` if there is none.
    fn select(&self, lang: &str, tried: &[String]) -> Option<Arc<Peer>> {
        let list = read(&self.shared.list);
        let mut cands = Vec::new();
        let mut peers = Vec::new();
        for p in list.iter() {
            if tried.contains(&p.url) {
                continue;
            }
            let st = lock(&p.st);
            if !st.health.is_up() || st.is_self || !st.languages.iter().any(|(l, _)| l == lang) {
                continue;
            }
            let used = p.inflight.load(Ordering::SeqCst) + st.external;
            if used >= st.slots {
                continue;
            }
            cands.push(Candidate {
                weight: p.weight,
                used,
            });
            peers.push(p.clone());
        }
        let i = select::choose(&cands, &mut lock(&self.shared.rng))?;
        Some(peers[i].clone())
    }

    /// A load report from `p` (response header or probe): what others use there.
    fn note_load(&self, p: &Peer, load: Load) {
        let mut st = lock(&p.st);
        let ours = p.inflight.load(Ordering::SeqCst);
        st.slots = load.slots;
        st.external = (load.slots.saturating_sub(load.free) + load.queued).saturating_sub(ours);
    }

    fn eject(&self, p: &Peer, why: &str) {
        let t = lock(&p.st).health.eject(&self.shared.rules, Instant::now());
        if t == Transition::Ejected {
            tracing::warn!(peer = %p.url, why, cooldown_ms = self.shared.cfg.cooldown.as_millis() as u64, "peer ejected");
            self.shared.metrics.ejected(&p.url);
            self.shared.metrics.set_up(&p.url, false);
            p.down.notify_waiters();
        }
    }

    /// Sends the run to its peer and reads the answer.
    async fn forward(
        &self,
        run: InFlight,
        body: &Bytes,
        files: &[String],
        cache: &Arc<FileCache>,
    ) -> Attempt {
        let sh = &self.shared;
        let m = &sh.metrics;
        let p = run.0.clone();
        let p = &p;
        let mut run = Some(run);
        let mut pushed = false;
        loop {
            let started = Instant::now();
            let down = p.down.notified();
            tokio::pin!(down);
            down.as_mut().enable();
            let call = sh.client.call(
                Method::POST,
                jobe_url(&p.url, "runs"),
                &p.key,
                true,
                Some(body.clone()),
                sh.cfg.request_timeout,
            );
            let res = tokio::select! {
                r = call => Some(r),
                () = down => None,
            };
            drop(run.take());
            sh.changed.notify_waiters();
            let reply = match res {
                None => {
                    m.forward(&p.url, "error");
                    tracing::warn!(peer = %p.url, "peer went down while running a forwarded run");
                    return Attempt::Retry(p.clone());
                }
                Some(Err(e)) => {
                    m.forward(&p.url, "error");
                    self.eject(p, &crate::telemetry::error_chain(&e));
                    return Attempt::Retry(p.clone());
                }
                Some(Ok(r)) => r,
            };
            if let Some(load) = reply
                .headers
                .get(LOAD_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_load)
            {
                p.reports.fetch_add(1, Ordering::SeqCst);
                self.note_load(p, load);
            }
            match reply.status {
                StatusCode::OK => {
                    m.latency(&p.url, started.elapsed().as_secs_f64());
                    match parse_result(&reply.body) {
                        Some(r) if r.outcome == Outcome::ServerOverload => {
                            m.forward(&p.url, "overload");
                            return Attempt::Retry(p.clone());
                        }
                        Some(r) => {
                            m.forward(&p.url, "ok");
                            return Attempt::Done(Ok(r));
                        }
                        None => {
                            m.forward(&p.url, "error");
                            self.eject(p, "unreadable run result");
                            return Attempt::Retry(p.clone());
                        }
                    }
                }
                StatusCode::NOT_FOUND if !files.is_empty() && !pushed => {
                    m.forward(&p.url, "files_missing");
                    pushed = true;
                    if !self.push_files(p, files, cache).await {
                        return Attempt::Retry(p.clone());
                    }
                    run = Some(InFlight::new(p.clone()));
                }
                StatusCode::BAD_REQUEST => {
                    m.forward(&p.url, "client_error");
                    let msg: String = serde_json::from_slice(&reply.body).unwrap_or_default();
                    if msg.starts_with("Language '") {
                        // Its language list changed since the last probe: another may have it.
                        return Attempt::Retry(p.clone());
                    }
                    // The same checks as ours, with the profile: the client's error.
                    return Attempt::Done(Err(ExecError::BadRequest(msg)));
                }
                s => {
                    m.forward(&p.url, "error");
                    if s.is_server_error() || s == StatusCode::FORBIDDEN {
                        let why = if s == StatusCode::FORBIDDEN {
                            "refused our peer key".to_owned()
                        } else {
                            format!("HTTP {}", s.as_u16())
                        };
                        self.eject(p, &why);
                    }
                    return Attempt::Retry(p.clone());
                }
            }
        }
    }

    /// PUTs every file of the run from our cache to `p`. False if one is gone or refused.
    async fn push_files(&self, p: &Peer, files: &[String], cache: &Arc<FileCache>) -> bool {
        let sh = &self.shared;
        let mut n = 0;
        for id in files {
            let c = cache.clone();
            let id2 = id.clone();
            let Ok(Some(data)) = tokio::task::spawn_blocking(move || c.get(&id2)).await else {
                tracing::warn!(file_id = %id, "file to push is no longer in the cache");
                return false;
            };
            let body = serde_json::json!({
                "file_contents": base64::engine::general_purpose::STANDARD.encode(&data)
            })
            .to_string();
            let r = sh
                .client
                .call(
                    Method::PUT,
                    jobe_url(&p.url, &format!("files/{id}")),
                    &p.key,
                    false,
                    Some(Bytes::from(body)),
                    sh.cfg.request_timeout,
                )
                .await;
            match r {
                Ok(r) if r.status == StatusCode::NO_CONTENT => n += 1,
                Ok(r) => {
                    tracing::warn!(peer = %p.url, status = r.status.as_u16(), "file push refused");
                    return false;
                }
                Err(e) => {
                    self.eject(p, &crate::telemetry::error_chain(&e));
                    return false;
                }
            }
        }
        sh.metrics.pushed(&p.url, n);
        tracing::info!(peer = %p.url, files = n, "pushed files to peer");
        true
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn outcome_from_code(code: u64) -> Option<Outcome> {
    Outcome::ALL
        .into_iter()
        .find(|o| u64::from(o.code()) == code)
}

/// A peer's 200 body back into a `RunResult` (its strings are already Jobe-cleaned UTF-8,
/// which cleaning leaves unchanged, so re-encoding is exact).
fn parse_result(body: &[u8]) -> Option<RunResult> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let s = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or("")
            .as_bytes()
            .to_vec()
    };
    let d = v.get("details");
    let f = |k: &str| d.and_then(|d| d.get(k)).and_then(serde_json::Value::as_f64);
    let i = |k: &str| {
        d.and_then(|d| d.get(k))
            .and_then(serde_json::Value::as_i64)
            .and_then(|x| i32::try_from(x).ok())
    };
    Some(RunResult {
        outcome: outcome_from_code(v.get("outcome")?.as_u64()?)?,
        cmpinfo: s("cmpinfo"),
        stdout: s("stdout"),
        stderr: s("stderr"),
        usage: Usage {
            cpu_secs: f("cpu_seconds").unwrap_or(0.0),
            wall_secs: f("wall_seconds").unwrap_or(0.0),
            peak_memory_bytes: d
                .and_then(|d| d.get("peak_memory_bytes"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
            exit_code: i("exit_code"),
            signal: i("signal"),
            killed_at_unix: f("killed_at_unix"),
        },
    })
}

/// Probes every peer each `probe_interval`, all at once, each within `probe_timeout`.
async fn probe_loop(sh: Arc<Shared>) {
    let mut tick = tokio::time::interval(sh.cfg.probe_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let list: Vec<Arc<Peer>> = read(&sh.list).clone();
        let mut set = tokio::task::JoinSet::new();
        for p in list {
            let sh = sh.clone();
            set.spawn(async move { probe_one(&sh, &p).await });
        }
        while set.join_next().await.is_some() {}
        sh.changed.notify_waiters();
    }
}

#[derive(serde::Deserialize)]
struct Status {
    instance: String,
    slots: usize,
    free: usize,
    queued: usize,
    languages: Vec<(String, String)>,
}

async fn probe_one(sh: &Shared, p: &Peer) {
    if !lock(&p.st).health.should_probe(Instant::now()) {
        return;
    }
    let reports = p.reports.load(Ordering::SeqCst);
    let r = sh
        .client
        .call(
            Method::GET,
            status_url(&p.url),
            &p.key,
            false,
            None,
            sh.cfg.probe_timeout,
        )
        .await;
    let status = match &r {
        Ok(r) if r.status == StatusCode::OK => serde_json::from_slice::<Status>(&r.body).ok(),
        _ => None,
    };
    if let Some(s) = &status {
        let ours = p.inflight.load(Ordering::SeqCst);
        let mut st = lock(&p.st);
        st.is_self = s.instance == sh.instance;
        st.languages.clone_from(&s.languages);
        if p.reports.load(Ordering::SeqCst) == reports {
            st.slots = s.slots;
            st.external = (s.slots.saturating_sub(s.free) + s.queued).saturating_sub(ours);
        }
    }
    let t = lock(&p.st)
        .health
        .probe(status.is_some(), &sh.rules, Instant::now());
    match t {
        Transition::WentUp => {
            tracing::info!(peer = %p.url, "peer up");
            sh.metrics.set_up(&p.url, true);
        }
        Transition::WentDown => {
            let why = match &r {
                Ok(r) => format!("HTTP {}", r.status.as_u16()),
                Err(e) => crate::telemetry::error_chain(e),
            };
            tracing::warn!(peer = %p.url, why, "peer down (probes failed)");
            sh.metrics.set_up(&p.url, false);
            p.down.notify_waiters();
        }
        // Keeps the gauge present from the first probe on.
        Transition::None | Transition::Ejected => {
            sh.metrics.set_up(&p.url, lock(&p.st).health.is_up());
        }
    }
}

/// Resolves `e.name` (A/AAAA) every `e.refresh`; adds new addresses as peers, removes gone ones.
async fn dns_loop(sh: Arc<Shared>, e: config::DnsEntry) {
    loop {
        match tokio::net::lookup_host((e.name.as_str(), e.port)).await {
            Ok(addrs) => {
                let urls: BTreeSet<String> = addrs.map(|a| format!("http://{a}")).collect();
                update_dns(&sh, &e, &urls);
            }
            Err(err) => {
                tracing::warn!(name = %e.name, error = %err, "peer DNS lookup failed; keeping the last answer")
            }
        }
        tokio::time::sleep(e.refresh).await;
    }
}

fn update_dns(sh: &Shared, e: &config::DnsEntry, urls: &BTreeSet<String>) {
    let mut list = write(&sh.list);
    list.retain(|p| {
        let keep = p.origin.as_deref() != Some(e.name.as_str()) || urls.contains(&p.url);
        if !keep {
            tracing::info!(peer = %p.url, name = %e.name, "peer gone from DNS");
            sh.metrics.forget(&p.url);
            p.down.notify_waiters();
        }
        keep
    });
    for u in urls {
        if list.iter().any(|p| &p.url == u) {
            continue;
        }
        tracing::info!(peer = %u, name = %e.name, "peer found in DNS");
        list.push(Peer::new(
            u.clone(),
            e.weight,
            e.key.clone(),
            Some(e.name.clone()),
        ));
    }
}

#[cfg(test)]
mod tests {
    //! Tier 1: header formats, key checks, result parsing, DNS list updates.
    use hyper::header::HeaderValue;

    use super::*;

    #[test]
    fn test_load_header_round_trip() {
        let l = Load {
            slots: 4,
            free: 1,
            queued: 7,
        };
        assert_eq!(format_load(l), "slots=4, free=1, queued=7");
        assert_eq!(parse_load(&format_load(l)), Some(l));
        assert_eq!(parse_load("slots=1"), None);
        assert_eq!(parse_load("slots=x, free=1, queued=1"), None);
    }

    #[test]
    fn test_authenticate() {
        let mut h = HeaderMap::new();
        assert_eq!(authenticate(None, &h), Ok(Caller::Client));
        assert_eq!(authenticate(Some("k1234567"), &h), Ok(Caller::Client));
        h.insert(HOP_HEADER, HeaderValue::from_static("1"));
        assert_eq!(
            authenticate(Some("k1234567"), &h),
            Err(UnknownPeerKey),
            "hop without key"
        );
        h.insert(KEY_HEADER, HeaderValue::from_static("k1234567"));
        assert_eq!(authenticate(Some("k1234567"), &h), Ok(Caller::Peer));
        assert_eq!(
            authenticate(None, &h),
            Err(UnknownPeerKey),
            "no key configured"
        );
        h.insert(KEY_HEADER, HeaderValue::from_static("wrongkey"));
        assert_eq!(authenticate(Some("k1234567"), &h), Err(UnknownPeerKey));
        h.remove(HOP_HEADER);
        assert_eq!(
            authenticate(Some("k1234567"), &h),
            Err(UnknownPeerKey),
            "wrong key alone"
        );
    }

    #[test]
    fn test_parse_result() {
        let r = parse_result(
            br#"{"run_id":null,"outcome":12,"cmpinfo":"","stdout":"a\u00e9","stderr":"x","details":{"cpu_seconds":0.5,"wall_seconds":1.0,"peak_memory_bytes":10,"exit_code":1,"signal":null}}"#,
        )
        .unwrap();
        assert_eq!(r.outcome, Outcome::RuntimeError);
        assert_eq!(r.stdout, "aé".as_bytes());
        assert_eq!(r.usage.exit_code, Some(1));
        assert_eq!(r.usage.peak_memory_bytes, 10);
        assert!(parse_result(br#"{"outcome":99}"#).is_none());
        assert!(parse_result(b"nope").is_none());
        assert_eq!(
            parse_result(br#"{"run_id":"0","outcome":21}"#)
                .unwrap()
                .outcome,
            Outcome::ServerOverload
        );
    }

    #[tokio::test]
    async fn test_dns_update_adds_and_removes() {
        let cfg = PeerConfig::default();
        let peers = Peers::start(cfg, Duration::from_secs(1), 10);
        let e = config::DnsEntry {
            name: "runners.test".into(),
            port: 4000,
            weight: 2,
            key: "k1234567".into(),
            refresh: Duration::from_secs(1),
        };
        let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        update_dns(
            &peers.shared,
            &e,
            &set(&["http://10.0.0.1:4000", "http://10.0.0.2:4000"]),
        );
        update_dns(
            &peers.shared,
            &e,
            &set(&["http://10.0.0.2:4000", "http://[::1]:4000"]),
        );
        let urls: Vec<String> = read(&peers.shared.list)
            .iter()
            .map(|p| p.url.clone())
            .collect();
        assert_eq!(urls, ["http://10.0.0.2:4000", "http://[::1]:4000"]);
        assert!(read(&peers.shared.list).iter().all(|p| p.weight == 2));
    }
}
