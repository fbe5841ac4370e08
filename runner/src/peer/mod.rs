//! Peer mode: forward the overflow of runs to sibling runners, by weight and health.
//!
//! Owns: the daemon's dispatcher ([`Dispatcher`], the `dispatch::Dispatch` the API hands every
//! parsed run to) and peer mode's state ([`Peers`]: the peer list and what is known of each
//! peer). The parts, each in its file:
//! - `auth`: the peer headers: peer key, hop marker, load report;
//! - `select`: where a run goes: local first (a free slot right now), else a healthy peer with
//!   the language and free capacity (weighted power-of-two-choices), else it waits here (the local
//!   queue) until a local slot or a peer frees up, or the queue timeout gives outcome 21;
//! - `forward`: sending a run to a peer, with file push on 404, and reading the answer;
//! - `health`: active probes (`GET /peer/status`, HAProxy-style rise/fall), passive ejection,
//!   load reports;
//! - `dns`: peers found by resolving names;
//! - `client` (HTTP to peers), `config` (`[peer]`), `metrics` (the peer families).
//!
//! A run arriving from a peer carries `X-Runner-Hop` and is never forwarded again. Docs:
//! docs/peers.md.
//!
//! Reload: `[peer]` and the queue bounds are one [`Settings`] snapshot read through a
//! `live::Live`; every forward, probe round and wait takes one snapshot. On a new snapshot the
//! supervisor task ([`Peers::with_settings`]) rebuilds the static peer list (a peer whose URL,
//! weight and key are unchanged keeps its health and load), restarts the probe and DNS tasks and
//! logs what changed.
//!
//! Must not: forward without the peer key, accept a hop-marked request without it (never an
//! open relay), log run bodies or keys, or parse anything from a peer without a size bound.

mod auth;
mod client;
pub mod config;
mod dns;
mod forward;
mod health;
pub mod metrics;
mod select;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper::header::{HeaderMap, HeaderValue};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use self::auth::{HOP_HEADER, KEY_HEADER, LOAD_HEADER, PeerKey};
use self::client::Client;
pub use self::config::{InvalidPeerSetting, PeerConfig, RawPeer, RawPeerDns, RawPeerEntry};
use self::health::{Health, HealthRules};
use self::metrics::PeerMetrics;
use self::select::Rng;
use crate::cache::FileCache;
use crate::dispatch::{Caller, Dispatch, Refused, Run};
use crate::job::RunResult;
use crate::live::Live;
use crate::sched::{BoxFuture, ExecError, Executor, Load, SchedConfig};
use crate::sync::{lock, read, write};

/// Peer mode's settings: `[peer]` and the scheduler's queue bounds (a run waits here at most
/// `queue_timeout`, and no more than `max_queue` wait). One snapshot, replaced by a reload.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub config: PeerConfig,
    pub queue_timeout: Duration,
    pub max_queue: usize,
}

impl Settings {
    pub fn new(peer: &PeerConfig, sched: &SchedConfig) -> Settings {
        Settings {
            config: peer.clone(),
            queue_timeout: sched.queue_timeout,
            max_queue: sched.max_queue,
        }
    }

    fn rules(&self) -> HealthRules {
        HealthRules {
            rise: self.config.rise,
            fall: self.config.fall,
            cooldown: self.config.cooldown,
        }
    }

    /// Peer mode is on in some form: forwarding, or accepting forwarded runs (a key).
    fn configured(&self) -> bool {
        self.config.enabled || self.config.key.is_some()
    }
}

/// One peer.
struct Peer {
    /// Base URL, also its name in logs and metrics.
    url: String,
    weight: u32,
    key: PeerKey,
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
    fn new(url: String, weight: u32, key: PeerKey, origin: Option<String>) -> Arc<Peer> {
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

impl PeerState {
    /// Whether a run in `lang` may be sent here (up, not ourselves, has the language).
    fn takes(&self, lang: &str) -> bool {
        self.health.is_up() && !self.is_self && self.languages.iter().any(|(l, _)| l == lang)
    }
}

struct Shared {
    /// `[peer]` and the queue bounds; take one snapshot per forward, probe round or wait.
    settings: Live<Settings>,
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
    /// The probe task and the DNS tasks of the current settings (restarted on a reload).
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn settings(&self) -> Arc<Settings> {
        self.settings.get()
    }

    /// Stops the probe and DNS tasks, then starts those `s` asks for.
    fn restart_tasks(self: &Arc<Self>, s: &Settings) {
        let mut tasks = lock(&self.tasks);
        for t in tasks.drain(..) {
            t.abort();
        }
        if s.config.enabled {
            tasks.push(tokio::spawn(health::probe_loop(self.clone())));
            for e in s.config.dns.clone() {
                tasks.push(tokio::spawn(dns::dns_loop(self.clone(), e)));
            }
        }
    }

    /// Makes the static peers those of `s`, keeping every peer whose URL, weight and key are
    /// unchanged (with its health and load); peers from DNS names still configured stay (their
    /// task refreshes them), the others go.
    fn apply_peer_list(&self, s: &Settings) {
        let mut list = write(&self.list);
        let old = std::mem::take(&mut *list);
        for p in old {
            let keep = match &p.origin {
                None => s
                    .config
                    .peers
                    .iter()
                    .any(|e| e.url == p.url && e.weight == p.weight && e.key == p.key),
                Some(name) => s
                    .config
                    .dns
                    .iter()
                    .any(|d| &d.name == name && d.weight == p.weight && d.key == p.key),
            };
            if keep && s.config.enabled {
                list.push(p);
            } else {
                tracing::info!(peer = %p.url, "peer removed (config reloaded)");
                self.metrics.forget(&p.url);
                p.down.notify_waiters();
            }
        }
        if !s.config.enabled {
            return;
        }
        for e in &s.config.peers {
            if !list.iter().any(|p| p.url == e.url) {
                tracing::info!(peer = %e.url, weight = e.weight, "peer added (config reloaded)");
                list.push(Peer::new(e.url.clone(), e.weight, e.key.clone(), None));
            }
        }
    }
}

/// Peer mode of one daemon. Dropping it stops the probe, DNS and supervisor tasks.
pub struct Peers {
    shared: Arc<Shared>,
    supervisor: Option<JoinHandle<()>>,
}

impl Drop for Peers {
    fn drop(&mut self) {
        if let Some(t) = &self.supervisor {
            t.abort();
        }
        for t in lock(&self.shared.tasks).drain(..) {
            t.abort();
        }
    }
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

impl Peers {
    /// Builds peer mode with fixed settings; when `cfg.enabled`, starts the probe task and one
    /// DNS task per name (must be called inside a tokio runtime). `queue_timeout` and
    /// `max_queue` are the scheduler's: a run waits here at most that long, and no more than
    /// that many wait.
    pub fn start(cfg: PeerConfig, queue_timeout: Duration, max_queue: usize) -> Arc<Peers> {
        Peers::build(
            Live::fixed(Settings {
                config: cfg,
                queue_timeout,
                max_queue,
            }),
            false,
        )
    }

    /// Peer mode that follows `settings`: a supervisor task applies each new snapshot (peer
    /// list, probe and DNS tasks). Built even when `[peer]` is absent, so that a reload can
    /// turn peer mode on; until then it refuses every peer header as no peer mode does. Must be
    /// called inside a tokio runtime.
    pub fn with_settings(settings: Live<Settings>) -> Arc<Peers> {
        Peers::build(settings, true)
    }

    fn build(settings: Live<Settings>, follow: bool) -> Arc<Peers> {
        let mut rng = Rng::new(Rng::seed());
        let instance = format!("{:016x}", rng.next_u64());
        let s = settings.get();
        let list = if s.config.enabled {
            s.config
                .peers
                .iter()
                .map(|p| Peer::new(p.url.clone(), p.weight, p.key.clone(), None))
                .collect()
        } else {
            Vec::new()
        };
        let shared = Arc::new(Shared {
            client: Client::new(s.config.probe_timeout.max(Duration::from_millis(200))),
            settings: settings.clone(),
            instance,
            list: RwLock::new(list),
            metrics: PeerMetrics::default(),
            turn: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
            waiting: AtomicUsize::new(0),
            avg_local_us: AtomicU64::new(0),
            rng: Mutex::new(rng),
            tasks: Mutex::new(Vec::new()),
        });
        shared.restart_tasks(&s);
        if s.config.enabled {
            tracing::info!(
                peers = s.config.peers.len(),
                dns = s.config.dns.len(),
                "peer mode: forwarding overflow"
            );
        }
        let supervisor = follow.then(|| tokio::spawn(supervise(shared.clone(), settings)));
        Arc::new(Peers { shared, supervisor })
    }

    /// Peer mode as configured: `None` when `[peer]` has neither `enabled` nor a `key`. The
    /// queue bounds are the scheduler's (`sched`).
    pub fn from_config(peer: &PeerConfig, sched: &SchedConfig) -> Option<Arc<Peers>> {
        (peer.enabled || peer.key.is_some())
            .then(|| Peers::start(peer.clone(), sched.queue_timeout, sched.max_queue))
    }

    /// Whether this runner forwards (`peer.enabled`); otherwise it only accepts forwarded runs.
    pub fn forwarding(&self) -> bool {
        self.shared.settings().config.enabled
    }

    /// This runner's peer key.
    pub fn key(&self) -> Option<PeerKey> {
        self.shared.settings().config.key.clone()
    }

    /// Runs waiting here for capacity.
    pub fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::SeqCst)
    }

    /// Appends the peer metrics to a `/metrics` body (nothing while peer mode is off).
    pub fn render_metrics(&self, out: &mut String) {
        if self.shared.settings().configured() {
            self.shared.metrics.render(out);
        }
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

    /// Whether a healthy peer serves `lang` (the part of [`Peers::languages`] that is not
    /// local, without building the list).
    fn peer_has(&self, lang: &str) -> bool {
        self.forwarding()
            && read(&self.shared.list)
                .iter()
                .any(|p| lock(&p.st).takes(lang))
    }
}

/// Applies every new settings snapshot: the peer list, then the probe and DNS tasks.
async fn supervise(sh: Arc<Shared>, mut settings: Live<Settings>) {
    let mut current = settings.get();
    while settings.changed().await {
        let next = settings.get();
        if next == current {
            continue;
        }
        sh.apply_peer_list(&next);
        sh.restart_tasks(&next);
        tracing::info!(
            enabled = next.config.enabled,
            key = next.config.key.is_some(),
            peers = next.config.peers.len(),
            dns = next.config.dns.len(),
            "peer settings applied"
        );
        sh.changed.notify_waiters();
        current = next;
    }
}

/// The daemon's dispatcher: the API hands it every parsed run. Without peer mode every run is
/// local; it still judges peer headers (any is refused without a peer key) and reports the load
/// on every response.
pub struct Dispatcher {
    exec: Arc<dyn Executor>,
    cache: Arc<FileCache>,
    peers: Option<Arc<Peers>>,
}

impl Dispatcher {
    /// Runs go to `exec`, or (with `peers`) to the peers; files of forwarded runs come from
    /// `cache`.
    pub fn new(
        exec: Arc<dyn Executor>,
        cache: Arc<FileCache>,
        peers: Option<Arc<Peers>>,
    ) -> Arc<Dispatcher> {
        Arc::new(Dispatcher { exec, cache, peers })
    }

    /// This runner's load: the executor's slots and queue plus the runs waiting in peer mode.
    fn load(&self) -> Load {
        let mut l = self.exec.load();
        if let Some(p) = &self.peers {
            l.queued += p.waiting();
        }
        l
    }
}

impl Dispatch for Dispatcher {
    fn admit(&self, headers: &HeaderMap) -> Result<Caller, Refused> {
        let key = self.peers.as_ref().and_then(|p| p.key());
        auth::authenticate(key.as_ref(), headers)
    }

    fn languages(&self) -> Vec<(String, String)> {
        let local = self.exec.languages();
        match &self.peers {
            Some(p) => p.languages(local),
            None => local,
        }
    }

    fn serves(&self, id: &str) -> bool {
        self.exec.has_language(id) || self.peers.as_ref().is_some_and(|p| p.peer_has(id))
    }

    fn dispatch(&self, run: Run) -> BoxFuture<'_, Result<RunResult, ExecError>> {
        Box::pin(async move {
            match &self.peers {
                // Handed over by a peer (hop-marked, key checked): here only, never further.
                Some(p) if run.caller == Caller::Forwarded => {
                    p.run_forwarded(&self.exec, run.job).await
                }
                Some(p) if p.forwarding() => p.dispatch(&self.exec, &self.cache, run).await,
                _ => self.exec.run(run.job).await,
            }
        })
    }

    fn response_headers(&self, headers: &mut HeaderMap) {
        // Every response tells peers (and operators) how busy this runner is.
        if let Ok(v) = HeaderValue::from_str(&auth::format_load(self.load())) {
            headers.insert(LOAD_HEADER, v);
        }
    }

    fn status(&self, caller: Caller) -> Option<serde_json::Value> {
        let peers = self.peers.as_ref()?;
        (caller != Caller::Client).then(|| peers.status(self.load(), self.exec.languages()))
    }

    fn render_metrics(&self, out: &mut String) {
        if let Some(p) = &self.peers {
            p.render_metrics(out);
        }
    }
}
