//! Start-up and the daemon's commands: `serve`, `check`, `run`, `plan`, `bench-jail`. `main.rs` only
//! parses arguments and calls into here.
//!
//! Start-up order of `serve`: root → bind the listener(s) (a port in use fails here, before any
//! jail work) → lock the data directory → jail (kernel probes, cgroup subtree; fails closed) →
//! profiles (version probes) → slots (one netns each) → judge (test-set store, journal;
//! unfinished submissions resume) → file cache → `ready` → queue mode (with `[queue]`; it
//! connects in the background). Shutdown: SIGTERM or SIGINT stops accepting; in-flight requests
//! finish within `shutdown_grace_secs` while queue mode stops as its `on_stop` says, then the
//! submissions being judged get what is left of the grace (the others stay journaled and run
//! after the restart). SIGHUP reloads the config file (`reload`); its handler is installed with
//! the stop handlers, before start-up, so a SIGHUP never kills the daemon.
//!
//! Under systemd (`Type=notify`, deploy/runner.service) `serve` reports `READY=1` once
//! everything above is set up, `RELOADING=1` … `READY=1` around a reload, and `STOPPING=1`
//! when the stop signal arrives (`notify`). Started by hand, nothing is sent.
//!
//! The CLI commands (`check`, `run`, `bench-jail`) run on a private data directory of their
//! own: a new random `$TMPDIR/runner-cli-XXXXXXXX`, mode 0700, created new (never an existing
//! one), its lock file created with `O_EXCL | O_NOFOLLOW`, and removed when the command ends.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::api::{self, AppState, Surface};
use crate::cache::FileCache;
use crate::config::Config;
use crate::jail::{Jail, JailSpec};
use crate::job::{Job, Outcome, Params};
use crate::judge::testset::TESTSETS_DIR;
use crate::judge::{Backend, Judge, JudgeSettings, Origin, TestsetStore, Testsets};
use crate::metrics::QueueCounters;
use crate::notify;
use crate::peer::{Dispatcher, Peers};
use crate::profile::{HostProbe, Registry};
use crate::queue::QueueMode;
use crate::queue::engine::EngineJudger;
use crate::reload::{Publishers, Reloader};
use crate::sched::{COMPILE_CACHE_DIR, CompileCache, Executor, Scheduler};

/// Everything a running daemon is made of.
pub struct Runtime {
    pub scheduler: Arc<Scheduler>,
    pub jail: Arc<Jail>,
    /// The writers of the reloadable settings (`reload`); the scheduler, the dispatcher, the
    /// API and the log follow them.
    pub publishers: Arc<Publishers>,
    /// The seccomp policies compiled into the jail, as `(name, TOML text)`.
    pub policies: Vec<(String, String)>,
    /// Judge mode, once [`start_judge`] ran.
    pub judge: Option<Judge>,
    /// The data directory in use (a CLI command's private one, or `data_dir`).
    pub data_dir: std::path::PathBuf,
    _lock: File,
    /// A private data directory of a CLI command, removed on drop.
    temp_dir: Option<PathBuf>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(judge) = &self.judge {
            judge.shutdown();
        }
        if let Some(dir) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Who is starting: the daemon owns `data_dir`; a CLI command (`check`, `run`, `bench-jail`)
/// gets a private temporary one, so it works while a daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Daemon,
    Cli,
}

/// Refuses to go on without root, naming the command: the jail needs it (namespaces, mounts,
/// cgroups, slot uids), and without this check the first failure would be an obscure
/// permission error from the cgroup tree.
pub fn need_root(command: &str) -> Result<()> {
    if crate::sys::euid() != 0 {
        bail!("runner {command} needs root (it builds jails)");
    }
    Ok(())
}

/// A new private data directory for a CLI command: `$TMPDIR/runner-cli-XXXXXXXX`, random,
/// mode 0700, created by this call (an existing path is never used: `mkdir` fails on it and
/// another name is drawn), so nothing another user prepared in a shared `/tmp` is ever opened.
pub fn private_data_dir() -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    Ok(tempfile::Builder::new()
        .prefix("runner-cli-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()?
        .keep())
}

/// Opens the data directory's lock file without following a symlink. `new`: it must not exist
/// yet (`O_EXCL`: a CLI command's fresh private directory); otherwise it is created if missing
/// and reused (the daemon's `data_dir`).
pub fn open_lock(path: &Path, new: bool) -> io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true).mode(0o600);
    if new {
        o.create_new(true);
    } else {
        o.create(true);
    }
    o.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Builds the runtime with every language whose toolchain is installed: fails with a clear
/// message when the host cannot jail safely.
pub fn start(cfg: &Config, mode: Mode) -> Result<Runtime> {
    let registry = Registry::load(cfg.profiles_dir.as_deref());
    let rt = start_with(
        cfg,
        mode,
        registry.context("cannot load language profiles")?,
    )?;
    // What start-up needed and no run does goes back to the kernel: every jail's clone3 copies
    // the page tables of this process's memory (docs/performance.md). In every mode, so that
    // `runner bench-jail` measures the jail as the daemon runs it.
    crate::monitor::release_kernel_btf();
    crate::sys::trim_heap();
    Ok(rt)
}

/// As [`start`], serving the languages of `registry`.
fn start_with(cfg: &Config, mode: Mode, registry: Registry) -> Result<Runtime> {
    let temp_dir = match mode {
        Mode::Daemon => None,
        Mode::Cli => {
            Some(private_data_dir().context("cannot create a private data directory in $TMPDIR")?)
        }
    };
    let started = start_in(cfg, temp_dir.clone(), registry);
    // A CLI command that fails to start (e.g. `[monitor] ebpf = "require"` without eBPF) must
    // not leave its private data directory behind; `Runtime` removes it otherwise.
    if let (Err(_), Some(dir)) = (&started, &temp_dir) {
        let _ = std::fs::remove_dir_all(dir);
    }
    started
}

fn start_in(cfg: &Config, temp_dir: Option<PathBuf>, registry: Registry) -> Result<Runtime> {
    let mut cfg = cfg.clone();
    if let Some(dir) = &temp_dir {
        cfg.data_dir = dir.clone();
        cfg.jail.data_dir = dir.clone();
    }
    let policies = cfg.seccomp_policies()?;
    cfg.jail.seccomp_policies = policies.clone();
    let cfg = &cfg;
    if temp_dir.is_none() {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("cannot create data directory {}", cfg.data_dir.display()))?;
    }
    let lock_path = cfg.data_dir.join("lock");
    let lock = open_lock(&lock_path, temp_dir.is_some())
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!(
            "another runner is using the data directory {} (locked)",
            cfg.data_dir.display()
        );
    }
    // The slot template makes a mount point for every profile's extra read-only path.
    let jail_cfg = crate::jail::JailConfig {
        extra_ro_mount_points: registry.extra_ro_paths(),
        ..cfg.jail.clone()
    };
    let jail = Jail::new(&jail_cfg).context("cannot set up the jail")?;
    jail.remove_stale_run_dirs();
    jail.remove_stale_artifacts();
    for (id, _) in registry.languages() {
        let profile = registry.get(&id).context("listed language has a profile")?;
        if !jail.has_policy(&profile.seccomp) {
            bail!("profile {id}: unknown seccomp policy '{}'", profile.seccomp);
        }
    }
    let slots = jail.make_slots(cfg.slots).context("cannot create slots")?;
    let jail = Arc::new(jail);
    let publishers = Arc::new(Publishers::new(cfg, registry));
    let scheduler = Arc::new(Scheduler::with_settings(
        jail.clone(),
        slots,
        publishers.sched.subscribe(),
    ));
    // The CLI commands' private data directories are gone when they end: no cache there.
    if cfg.compile_cache.enabled && temp_dir.is_none() {
        let cache = CompileCache::open(
            cfg.data_dir.join(COMPILE_CACHE_DIR),
            cfg.compile_cache.max_bytes,
        )
        .context("cannot open the compile cache")?;
        let (bytes, entries) = cache.size();
        tracing::info!(
            entries,
            bytes,
            max_bytes = cfg.compile_cache.max_bytes,
            "compile cache open"
        );
        scheduler.set_compile_cache(Arc::new(cache));
    }
    // `GET /metrics` shows the eBPF monitor's counters (the registry never reaches into it).
    if let Some(counters) = jail.ebpf_counters() {
        scheduler.metrics().attach_ebpf(counters);
    }
    Ok(Runtime {
        scheduler,
        jail,
        publishers,
        policies,
        judge: None,
        data_dir: cfg.data_dir.clone(),
        _lock: lock,
        temp_dir,
    })
}

/// Starts judge mode on `rt` (docs/judge.md): the test-set store under `<data_dir>/testsets`,
/// the origin, the journal under `<data_dir>/judge` (unfinished submissions are judged again).
/// Needs a tokio runtime.
pub async fn start_judge(cfg: &Config, rt: &mut Runtime) -> Result<Judge> {
    let j = &cfg.judge;
    let store = TestsetStore::open(
        rt.data_dir.join(TESTSETS_DIR),
        j.testset_cache_max_bytes,
        j.archive,
    )
    .context("cannot open the test-set store")?;
    let testsets = Testsets::new(store, j.origin.clone().map(Origin::new));
    let backend: Arc<dyn Backend> = rt.scheduler.clone();
    let settings = JudgeSettings::new(j, cfg.slots);
    let judge = Judge::start(backend, testsets, &rt.data_dir, settings)
        .await
        .context("cannot open the judge's journal")?;
    rt.judge = Some(judge.clone());
    Ok(judge)
}

/// What `runner serve` was given besides the config.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// The config file, read again on SIGHUP (`None`: defaults, re-applied on SIGHUP).
    pub config_path: Option<PathBuf>,
    /// `--listen`, overriding the config's `listen` (also across reloads).
    pub listen: Option<SocketAddr>,
}

/// `runner serve`. `file_cfg` is the config as read from the file.
pub async fn serve(file_cfg: Config, opts: ServeOptions) -> Result<()> {
    need_root("serve")?;
    // Handlers first: a SIGTERM that arrives during start-up, or right after READY=1, must
    // drain and exit 0, and a SIGHUP must not kill the daemon with the default action.
    let signals = Signals::install().context("cannot install the signal handlers")?;
    let mut cfg = file_cfg.clone();
    cfg.listen = opts.listen.unwrap_or(cfg.listen);
    // Bound before anything else: a port in use is reported now, before any jail work.
    let listener = bind(cfg.listen, "listen")?;
    let ops_listener = cfg
        .metrics_listen
        .map(|addr| bind(addr, "metrics_listen"))
        .transpose()?;
    let mut rt = start(&cfg, Mode::Daemon)?;
    let judge = start_judge(&cfg, &mut rt).await?;
    for line in rt.jail.describe() {
        tracing::info!("{line}");
    }
    warn_uids_in_use(&cfg);
    let cache = Arc::new(
        FileCache::open(cfg.cache_dir.clone(), cfg.cache_max_bytes)
            .context("cannot open the file cache")?,
    );
    let state = Arc::new(app_state(&rt, cache));
    raise_fd_limit(&cfg);
    let log_follower = crate::telemetry::follow(rt.publishers.log.subscribe());
    let bound = listener.local_addr().unwrap_or(cfg.listen);
    let langs = rt.scheduler.languages();
    let reloader = Reloader::new(
        opts.config_path,
        file_cfg,
        rt.policies.clone(),
        rt.jail.clone(),
        rt.publishers.clone(),
    );
    let Signals { stop, hangup } = signals;
    let reloads = tokio::spawn(reload_on_hangup(
        hangup,
        reloader,
        rt.scheduler.clone(),
        bound,
    ));
    tracing::info!(
        languages = %langs.iter().map(|(l, v)| format!("{l} {v}")).collect::<Vec<_>>().join(", "),
        slots = cfg.slots,
        listen = %bound,
        metrics_listen = %ops_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or_else(|| "none (on listen)".to_owned(), |a| a.to_string()),
        "ready: serving the Jobe API at /jobe/index.php/restapi/ and judge mode at /judge/v1/"
    );
    // Ready only now: a start-up failure above exits non-zero before systemd hears READY=1.
    notify::notify_or_log(&notify::ready_message(langs.len(), &bound));
    // Queue mode: connects in the background (retrying while the broker is down).
    let queue = start_queue(&cfg, &rt, &judge);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let drain_started = Arc::new(std::sync::OnceLock::new());
    let started = drain_started.clone();
    let signal_task = tokio::spawn(async move {
        stop.recv().await;
        let _ = started.set(Instant::now());
        notify::notify_or_log(notify::STOPPING);
        let _ = stop_tx.send(true);
    });
    // On the stop signal queue mode stops as `on_stop` says, while HTTP drains; the judge
    // drains after both (queue mode's running submissions need it).
    let mut stop_seen = stop_rx.clone();
    let queue_stopped = async move {
        if let Some(q) = queue {
            let _ = stop_seen.wait_for(|s| *s).await;
            q.stop().await;
        }
    };
    let serving = async move {
        match ops_listener {
            None => api::serve_on(listener, state, Surface::All, stopped(stop_rx)).await,
            Some(ops) => {
                let (a, b) = tokio::join!(
                    api::serve_on(
                        listener,
                        state.clone(),
                        Surface::Jobe,
                        stopped(stop_rx.clone())
                    ),
                    api::serve_on(ops, state, Surface::Ops, stopped(stop_rx)),
                );
                a.and(b)
            }
        }
    };
    let (served, ()) = tokio::join!(serving, queue_stopped);
    reloads.abort();
    log_follower.abort();
    signal_task.abort();
    served.context("server failed")?;
    // The submissions being judged get what is left of the grace period; the others stay in
    // the journal and are judged after the restart.
    let spent = drain_started.get().map_or(Duration::ZERO, Instant::elapsed);
    judge.drain(cfg.shutdown_grace.saturating_sub(spent)).await;
    judge.shutdown();
    tracing::info!("stopped");
    Ok(())
}

/// Binds `addr` (the setting `what`), with a clear message when the port is taken.
fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener> {
    api::bind(addr).map_err(|e| {
        let why = if e.kind() == io::ErrorKind::AddrInUse {
            "the address is already in use (another process, perhaps another runner, listens \
             there; choose another `listen` or `--listen`)"
                .to_owned()
        } else {
            e.to_string()
        };
        anyhow::anyhow!("cannot listen on {addr} ({what}): {why}")
    })
}

/// Reloads the config on every SIGHUP until aborted; tells systemd (`RELOADING=1`, then
/// `READY=1` again).
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    mut reloader: Reloader,
    scheduler: Arc<Scheduler>,
    bound: SocketAddr,
) {
    while hangup.recv().await.is_some() {
        notify::notify_or_log(notify::RELOADING);
        reloader.reload_and_log().await;
        let langs = scheduler.languages().len();
        notify::notify_or_log(&notify::ready_message(langs, &bound));
    }
}

/// Starts queue mode (docs/queue.md) when `[queue]` is configured: judging on `judge`, consuming
/// the queues of the languages this runner serves, its counters in the daemon's metrics (and
/// `GET /health`).
pub fn start_queue(cfg: &Config, rt: &Runtime, judge: &Judge) -> Option<QueueMode> {
    let q = cfg.queue.clone()?;
    let languages: Vec<String> = rt
        .scheduler
        .languages()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let counters = Arc::new(QueueCounters::default());
    rt.scheduler.metrics().attach_queue(counters.clone());
    tracing::info!(
        broker = %q.url.host(),
        vhost = %q.url.vhost(),
        on_stop = ?q.on_stop,
        "queue mode: on"
    );
    let judger = Arc::new(EngineJudger::new(judge.clone(), languages));
    Some(QueueMode::start(q, judger, counters))
}

/// The API's state: the scheduler behind peer mode's dispatcher (every run local while
/// `[peer]` is absent; a reload may turn it on), and one metrics registry for both. Its
/// settings follow `rt`'s publishers.
pub fn app_state(rt: &Runtime, cache: Arc<FileCache>) -> AppState {
    let peers = Peers::with_settings(rt.publishers.peer.subscribe());
    let dispatcher = Dispatcher::new(rt.scheduler.clone(), cache.clone(), Some(peers));
    let state = AppState::with_live_config(dispatcher, cache, rt.publishers.api.subscribe())
        .with_metrics(rt.scheduler.metrics());
    match &rt.judge {
        Some(judge) => state.with_judge(judge.clone()),
        None => state,
    }
}

/// Descriptors a running job holds in the daemon (pipes, pidfd, cgroup and run directory fds),
/// with room to spare, and a reserve for everything else (logs, cache files, the listener).
const FDS_PER_SLOT: u64 = 32;
const FD_RESERVE: u64 = 256;

/// The open-files limit the daemon needs: one per connection plus the jobs' and a reserve.
pub fn fd_limit_wanted(cfg: &Config) -> u64 {
    cfg.api.max_connections as u64 + FDS_PER_SLOT * cfg.slots as u64 + FD_RESERVE
}

/// Raises `RLIMIT_NOFILE` to [`fd_limit_wanted`]; says so in the log when the hard limit is lower
/// (then accept fails with `EMFILE` under load, is logged and retried, and connections wait).
fn raise_fd_limit(cfg: &Config) {
    let want = fd_limit_wanted(cfg);
    match crate::sys::raise_fd_limit(want) {
        Ok(got) if got < want => tracing::warn!(
            limit = got,
            wanted = want,
            "the open-files hard limit is below max_connections' need; raise LimitNOFILE"
        ),
        Ok(got) => tracing::debug!(limit = got, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
}

/// Processes (pid, uid) whose real uid is one of the slot uids of `cfg`. At a daemon's start
/// none of its own can exist yet, so any is another runner's job (an overlapping
/// `jail.uid_base` on this host) or an account that uses those uids.
pub fn uids_in_use(cfg: &Config) -> Vec<(u32, u32)> {
    let base = cfg.jail.uid_base;
    let range = base..base.saturating_add(u32::try_from(cfg.slots).unwrap_or(u32::MAX));
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let uid = std::fs::read_to_string(e.path().join("status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().next())
                    .and_then(|u| u.parse::<u32>().ok())
            });
        if let Some(uid) = uid.filter(|u| range.contains(u)) {
            out.push((pid, uid));
        }
    }
    out
}

fn warn_uids_in_use(cfg: &Config) {
    let used = uids_in_use(cfg);
    if let Some((pid, uid)) = used.first() {
        tracing::warn!(
            processes = used.len(),
            example_pid = pid,
            uid,
            "processes are running under this daemon's slot uids: another runner on this host \
             with an overlapping jail.uid_base range? Give each runner its own range (docs/peers.md)"
        );
    }
}

/// SIGTERM, SIGINT and SIGHUP, registered with tokio when created: from then on none of them
/// kills the process, and one that arrives before it is awaited is not lost.
struct Signals {
    stop: StopSignals,
    hangup: tokio::signal::unix::Signal,
}

struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> io::Result<Self> {
        Ok(Signals {
            stop: StopSignals::install()?,
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?,
        })
    }
}

impl StopSignals {
    /// SIGTERM and SIGINT only (`runner judge`: a Ctrl-C cancels and cleans up).
    fn install() -> io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM: draining"),
            _ = self.int.recv() => tracing::info!("SIGINT: draining"),
        }
    }
}

/// `runner check`: what this host enforces and which languages it serves.
pub fn check(cfg: &Config) -> Result<String> {
    need_root("check")?;
    let mut out = String::new();
    out.push_str(&format!(
        "kernel: {}\n",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    ));
    out.push_str(&clean_stale_data_dir(&cfg.data_dir));
    let rt = start(cfg, Mode::Cli)?;
    for line in rt.jail.describe() {
        out.push_str(&format!("{line}\n"));
    }
    out.push_str("seccomp: user notification (denied syscalls are named, outcome 19)\n");
    out.push_str(&format!(
        "slots: {} (uids from {})\n",
        cfg.slots, cfg.jail.uid_base
    ));
    let used = uids_in_use(cfg);
    if !used.is_empty() {
        out.push_str(&format!(
            "slot uids: {} processes run under uids {}..{} now (this host's daemon at work, or \
             another runner with an overlapping jail.uid_base)\n",
            used.len(),
            cfg.jail.uid_base,
            cfg.jail.uid_base as usize + cfg.slots
        ));
    }
    out.push_str("languages:\n");
    let settings = rt.scheduler.settings();
    for (id, version) in settings.languages() {
        out.push_str(&format!("  {id} {version}\n"));
    }
    for (id, why) in settings.registry().missing() {
        out.push_str(&format!("  {id}: not available ({why})\n"));
    }
    Ok(out)
}

/// What a daemon killed with SIGKILL leaves in its `data_dir`: run-directory tmpfs mounts under
/// `runs/`. Removed here (as the next daemon's start would) only when provably stale: the
/// directory's lock exists and no process holds it. One line for `runner check`.
fn clean_stale_data_dir(data_dir: &Path) -> String {
    let lock_path = data_dir.join("lock");
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&lock_path);
    let Ok(lock) = lock else {
        return format!("data_dir {}: no daemon has used it\n", data_dir.display());
    };
    if lock.try_lock().is_err() {
        return format!(
            "data_dir {}: in use by a running daemon\n",
            data_dir.display()
        );
    }
    match Jail::remove_stale_run_dirs_of(data_dir) {
        0 => format!(
            "data_dir {}: no daemon running, nothing left behind\n",
            data_dir.display()
        ),
        n => format!(
            "data_dir {}: no daemon running; removed {n} run directories (and their tmpfs \
             mounts) a killed daemon left\n",
            data_dir.display()
        ),
    }
}

/// What `runner run` prints and how it ended.
#[derive(Debug)]
pub struct RunReport {
    /// Jobe's result object (JSON).
    pub json: String,
    pub outcome: Outcome,
}

/// `runner run`'s exit status for `outcome`: 0 for success (15), else the Jobe outcome code
/// (11 compilation error, 12 runtime error, 13 time limit, 17 memory limit, 19 illegal system
/// call, 20 internal error, 21 overload). 1 is runner's own failure (a message on stderr), 2 a
/// usage error (clap).
pub fn run_exit_code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Success => 0,
        other => other.code(),
    }
}

/// `runner run`: one local run, printed as Jobe's result object.
///
/// Order: the files are read first (a missing one is the first thing reported), then the root
/// check, then the language: unknown to every profile, or known but its toolchain missing (its
/// version command alone is run, not every language's), and only then the jail.
pub async fn run_once(
    cfg: &Config,
    lang: &str,
    source_file: &Path,
    input: Option<&Path>,
    cputime: Option<f64>,
) -> Result<RunReport> {
    let source = std::fs::read_to_string(source_file)
        .with_context(|| format!("cannot read {}", source_file.display()))?;
    let input = match input {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        None => String::new(),
    };
    need_root("run")?;
    let lang = lang.to_lowercase();
    let registry = one_language(cfg, &lang)?;
    let rt = start_with(cfg, Mode::Cli, registry)?;
    let job = Job {
        language: lang,
        source,
        source_name: None,
        input,
        files: vec![],
        params: Params {
            cputime,
            ..Params::default()
        },
        debug: false,
        details: false,
    };
    let result = rt
        .scheduler
        .run(job)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(RunReport {
        json: api::result_json(&result),
        outcome: result.outcome,
    })
}

/// The registry of `lang` alone: an error naming what is wrong when it has no profile or its
/// toolchain does not answer its version command.
fn one_language(cfg: &Config, lang: &str) -> Result<Registry> {
    let profiles = match &cfg.profiles_dir {
        Some(dir) => crate::profile::merge(
            crate::profile::embedded_profiles()?,
            crate::profile::dir_profiles(dir)?,
        ),
        None => crate::profile::embedded_profiles()?,
    };
    let known: Vec<String> = profiles.iter().map(|p| p.id.clone()).collect();
    let Some(profile) = profiles.into_iter().find(|p| p.id == lang) else {
        bail!(
            "language '{lang}' is not known (profiles: {})",
            known.join(", ")
        );
    };
    let command = profile.version_command.join(" ");
    let registry = Registry::from_profiles(vec![profile], &HostProbe);
    if let Some((_, why)) = registry.missing().next() {
        bail!(
            "the {lang} toolchain is missing: its version command `{command}` failed ({why}); \
             install it (docs/deployment.md, \"Install the toolchains\")"
        );
    }
    Ok(registry)
}

/// `runner bench-jail`: the jail's own cost (start + teardown around /bin/true) beside a plain
/// fork + exec of /bin/true. Prints one JSON line (read by `cargo xtask bench jail`).
pub async fn bench_jail(cfg: &Config, iterations: usize) -> Result<String> {
    need_root("bench-jail")?;
    use crate::jail::timing::{Mark, StepClock};
    let rt = start(cfg, Mode::Cli)?;
    let slots = rt.jail.make_slots(1)?;
    let slot = &slots[0];
    let (name, _) = Jail::new_run_dir_name();
    let dir = rt.jail.create_run_dir(slot, &name, 1 << 20)?;
    let step = crate::profile::plan::Step {
        argv: vec!["/bin/true".into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        limits: crate::profile::plan::Limits {
            cpu: Duration::from_secs(1),
            wall: Duration::from_secs(2),
            memory_bytes: 64 << 20,
            disk_bytes: 1 << 20,
            stream_bytes: 1 << 16,
            procs: 8,
            address_space_bytes: None,
        },
    };
    let mut jail_ms = Vec::with_capacity(iterations);
    let mut fork_ms = Vec::with_capacity(iterations);
    // CPU time (this process and its reaped children: the jail's init and program, the floor's
    // /bin/true) per spawn: unlike wall time, not inflated by other work on a busy machine.
    let (mut jail_cpu, mut fork_cpu) = (Duration::ZERO, Duration::ZERO);
    // Per mark: its cost in each iteration (µs).
    let mut costs: Vec<Vec<f64>> = vec![Vec::with_capacity(iterations); Mark::ALL.len()];
    for _ in 0..iterations {
        let clock = StepClock::new()?;
        let cpu = crate::sys::cpu_time_with_children();
        let t = Instant::now();
        let out = rt
            .jail
            .spawn_timed(
                JailSpec {
                    step: &step,
                    policy: "default",
                    run_dir: &dir,
                    slot,
                    stdin: None,
                    extra_ro: &[],
                },
                clock.clone(),
            )
            .await?;
        jail_ms.push(t.elapsed().as_secs_f64() * 1e3);
        jail_cpu += crate::sys::cpu_time_with_children().saturating_sub(cpu);
        if out.end != crate::jail::End::Exited(0) {
            bail!("/bin/true in the jail ended with {:?}", out.end);
        }
        for (m, ns) in clock.costs() {
            costs[m as usize].push(ns as f64 / 1e3);
        }
        let cpu = crate::sys::cpu_time_with_children();
        let t = Instant::now();
        let st = std::process::Command::new("/bin/true").status()?;
        fork_ms.push(t.elapsed().as_secs_f64() * 1e3);
        fork_cpu += crate::sys::cpu_time_with_children().saturating_sub(cpu);
        if !st.success() {
            bail!("/bin/true failed");
        }
    }
    // The step table (stderr, for people): median and p90 of each step's cost.
    let mut steps = Vec::new();
    eprintln!(
        "{:<7} {:<8} {:<52} {:>9} {:>9} {:>9}",
        "step", "who", "what", "p10 µs", "p50 µs", "p90 µs"
    );
    for (&m, v) in Mark::ALL.iter().zip(&mut costs) {
        if v.is_empty() {
            continue;
        }
        let (num, what) = m.step();
        v.sort_by(f64::total_cmp);
        let p10 = v[((v.len() - 1) as f64 * 0.1).round() as usize];
        let p50 = v[(v.len() - 1) / 2];
        let p90 = v[((v.len() - 1) as f64 * 0.9).round() as usize];
        let who = format!("{:?}", m.actor()).to_lowercase();
        eprintln!("{num:<7} {who:<8} {what:<52} {p10:>9.1} {p50:>9.1} {p90:>9.1}");
        steps.push(serde_json::json!({
            "mark": format!("{m:?}"), "step": num, "actor": who, "what": what,
            "p10_us": (p10 * 10.0).round() / 10.0, "p50_us": (p50 * 10.0).round() / 10.0,
            "p90_us": (p90 * 10.0).round() / 10.0,
        }));
    }
    let n = iterations.max(1) as f64;
    let (jp10, jp50, jp99) = percentiles(&mut jail_ms);
    let (fp10, fp50, fp99) = percentiles(&mut fork_ms);
    let r = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(serde_json::json!({
        "jail_p10_ms": r(jp10), "jail_p50_ms": r(jp50), "jail_p99_ms": r(jp99),
        "forkexec_p10_ms": r(fp10), "forkexec_p50_ms": r(fp50), "forkexec_p99_ms": r(fp99),
        "jail_cpu_ms": r(jail_cpu.as_secs_f64() * 1e3 / n),
        "forkexec_cpu_ms": r(fork_cpu.as_secs_f64() * 1e3 / n),
        "steps": steps,
    })
    .to_string())
}

/// p10, p50 and p99 (nearest rank).
fn percentiles(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    if v.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (at(0.1), at(0.5), at(0.99))
    }
}

/// `runner plan`: what a job would run, without running it (no jail, no root): the steps of
/// `lang`'s plan for `source_file` as one JSON object, the run directory being `run_dir`.
/// `cargo xtask bench` runs its floors from it, so that a floor starts the very program, with
/// the very environment, a job gets.
pub fn plan_once(
    cfg: &Config,
    lang: &str,
    source_file: &Path,
    source_name: Option<String>,
    run_dir: &str,
) -> Result<String> {
    let profiles = match &cfg.profiles_dir {
        Some(dir) => crate::profile::merge(
            crate::profile::embedded_profiles()?,
            crate::profile::dir_profiles(dir)?,
        ),
        None => crate::profile::embedded_profiles()?,
    };
    let profile = profiles
        .iter()
        .find(|p| p.id == lang)
        .with_context(|| format!("no profile {lang}"))?;
    let source = std::fs::read_to_string(source_file)
        .with_context(|| format!("cannot read {}", source_file.display()))?;
    let job = Job {
        language: lang.to_owned(),
        source,
        source_name,
        input: String::new(),
        files: vec![],
        params: Params::default(),
        debug: false,
        details: false,
    };
    let plan = profile.plan(&job, &cfg.sched.plan, run_dir)?;
    let step = |s: &crate::profile::plan::Step| {
        serde_json::json!({
            "argv": s.argv,
            "env": s.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "cpu_secs": s.limits.cpu.as_secs_f64(),
        })
    };
    Ok(serde_json::json!({
        "files": plan.files.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        "compile": plan.compile.as_ref().map(step),
        "compile_deferred": plan.deferred.is_some(),
        "run": step(&plan.run),
    })
    .to_string())
}

/// `runner check-config`: the config (already validated by `Config::load`), the profiles and the
/// seccomp policies they name, without touching the kernel. Used as systemd `ExecStartPre=` and
/// `ExecReload=`.
pub fn check_config(cfg: &Config) -> Result<String> {
    let profiles = match &cfg.profiles_dir {
        Some(dir) => crate::profile::merge(
            crate::profile::embedded_profiles()?,
            crate::profile::dir_profiles(dir)?,
        ),
        None => crate::profile::embedded_profiles()?,
    };
    let mut policies = Vec::new();
    let texts = cfg.seccomp_policies()?;
    for (name, text) in &texts {
        crate::jail::seccomp::Policy::from_toml(name, text)
            .with_context(|| format!("seccomp policy {name}"))?;
        policies.push(name.as_str());
    }
    for p in &profiles {
        if !policies.contains(&p.seccomp.as_str()) {
            bail!("profile {}: unknown seccomp policy '{}'", p.id, p.seccomp);
        }
    }
    Ok(format!(
        "config OK: listen {}, data_dir {}, {} slots, {} profiles ({})",
        cfg.listen,
        cfg.data_dir.display(),
        cfg.slots,
        profiles.len(),
        profiles
            .iter()
            .map(|p| p.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// `runner judge`'s arguments.
#[derive(Debug, Clone)]
pub struct LocalJudge {
    /// A problem folder, or a tar / tar.gz of one.
    pub testset: std::path::PathBuf,
    pub lang: String,
    pub file: std::path::PathBuf,
    pub compare: Option<crate::judge::CompareMode>,
    pub cputime: Option<f64>,
    pub stop_on_first_failure: bool,
}

/// `runner judge`: judges `args.file` on a local test set in a private data directory, with a
/// live progress line on stderr (one mark per finished case). Returns the table for stdout and
/// whether the verdict is AC.
#[allow(
    clippy::print_stderr,
    reason = "the progress line of a CLI command goes to stderr"
)]
pub async fn judge_local(cfg: &Config, args: LocalJudge) -> Result<(String, bool)> {
    use std::io::{IsTerminal, Write};

    use crate::judge::testset::PutStatus;
    use crate::judge::{Event, SubmissionRequest, SubmitMode, TestsetId, Verdict};

    let mut rt = start(cfg, Mode::Cli)?;
    // From here Ctrl-C (or SIGTERM) cancels the submission and cleans up (jails, cgroups, the
    // private data directory) instead of killing the process mid-case.
    let stop = StopSignals::install().context("cannot install the SIGTERM/SIGINT handlers")?;
    let judge = start_judge(cfg, &mut rt).await?;
    let source = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let spool_path = rt.data_dir.join("testset.tar");
    let mut spool = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&spool_path)
        .with_context(|| format!("cannot create {}", spool_path.display()))?;
    crate::judge::local::testset_archive(&args.testset, args.compare, &mut spool)
        .with_context(|| format!("test set {}", args.testset.display()))?;
    std::io::Seek::rewind(&mut spool)?;
    let problem = args
        .testset
        .file_stem()
        .and_then(|s| s.to_str())
        .map(|s| s.trim_end_matches(".tar"))
        .filter(|s| crate::judge::testset::is_valid_name(s))
        .unwrap_or("local")
        .to_owned();
    let id = TestsetId::new(&problem, "local")?;
    let store = judge.testsets().store().clone();
    let key = id.clone();
    let put = tokio::task::spawn_blocking(move || store.put_archive(&key, spool))
        .await?
        .map_err(|e| anyhow::anyhow!("{}", crate::telemetry::error_chain(&e)))?;
    debug_assert_eq!(put.status, PutStatus::Created);
    let total = put.manifest().cases.len();
    drop(put);
    let _ = std::fs::remove_file(&spool_path);
    let mut req = serde_json::json!({
        "problem": problem, "version": "local", "language_id": args.lang,
        "sourcecode": source, "stop_on_first_failure": args.stop_on_first_failure,
    });
    if let Some(name) = args.file.file_name().and_then(|n| n.to_str()) {
        req["sourcefilename"] = name.into();
    }
    if let Some(c) = args.cputime {
        req["limits"] = serde_json::json!({ "cputime": c });
    }
    let req = SubmissionRequest::from_json(req.to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let submitted = judge
        .submit(req, SubmitMode::Idempotent)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut events = judge
        .subscribe(&submitted.accepted.id, None)
        .await
        .context("the submission is gone")?;
    let tty = std::io::stderr().is_terminal();
    let mut marks = String::new();
    let mut err = std::io::stderr();
    let mut result = None;
    let mut stop = std::pin::pin!(stop.recv());
    let mut interrupted = false;
    loop {
        let next = tokio::select! {
            next = events.next() => next,
            () = &mut stop, if !interrupted => {
                interrupted = true;
                let _ = write!(err, "{}", if tty { "\r\x1b[K" } else { "\n" });
                eprintln!("interrupted: cancelling the submission");
                judge.cancel(&submitted.accepted.id).await;
                continue;
            }
        };
        let Some((_, event)) = next else { break };
        match event {
            // Until the first case: what it is doing; then the marks stay on the line.
            Event::Status(s) if tty && marks.is_empty() => {
                let _ = write!(
                    err,
                    "\r\x1b[K{problem}: {}",
                    format!("{s:?}").to_lowercase()
                );
            }
            Event::Status(_) => {}
            Event::Case(c) => {
                marks.push(mark(c.verdict));
                if tty {
                    let _ = write!(err, "\r\x1b[K{problem} [{marks}] {}/{total}", marks.len());
                } else {
                    let _ = write!(err, "{}", mark(c.verdict));
                }
            }
            Event::Compile(c) if c.verdict != Verdict::Ac => {
                let _ = write!(err, "{}", if tty { "\r\x1b[K" } else { "" });
                eprintln!("compile {}:\n{}", c.verdict, c.output.trim_end());
            }
            Event::Compile(_) => {}
            Event::Done(r) => result = Some(*r),
        }
        let _ = err.flush();
    }
    eprintln!();
    if interrupted {
        judge.drain(Duration::from_secs(5)).await;
        settle(&rt).await;
        bail!("interrupted");
    }
    let r = result.context("the judge stopped before the submission finished")?;
    let mut out = format!(
        "{:<24} {:<7} {:>7} {:>10}  {}\n",
        "case", "verdict", "cpu ms", "memory KB", "message"
    );
    for c in &r.cases {
        out.push_str(&format!(
            "{:<24} {:<7} {:>7} {:>10}  {}\n",
            c.name,
            c.verdict.code(),
            c.cpu_ms,
            c.memory_kb,
            c.message.as_deref().unwrap_or("")
        ));
    }
    let verdict = r.verdict.unwrap_or(Verdict::Ie);
    let s = &r.summary;
    out.push_str(&format!(
        "verdict: {verdict} ({}/{} passed; max cpu {} ms, max wall {} ms, max memory {} KB)\n",
        s.passed, s.total, s.max_cpu_ms, s.max_wall_ms, s.max_memory_kb
    ));
    judge.drain(Duration::from_secs(5)).await;
    Ok((out, verdict == Verdict::Ac))
}

/// Waits (up to a minute) until every slot is free again and no compiled artifact is left, so
/// that the private data directory can go: a compile step that was running when its
/// submission was cancelled ends in its own task, within the language's compile limits.
async fn settle(rt: &Runtime) {
    let artifacts = rt.data_dir.join(crate::jail::ARTIFACTS_DIR);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let idle = rt.scheduler.load().free == rt.scheduler.slots()
            && std::fs::read_dir(&artifacts).map_or(true, |mut d| d.next().is_none());
        if idle || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The progress mark of a case: `.` for AC, else a letter of its verdict (`-` for SK).
fn mark(v: crate::judge::Verdict) -> char {
    use crate::judge::Verdict::*;
    match v {
        Ac => '.',
        Wa => 'W',
        Pe => 'P',
        Ce => 'C',
        Re => 'R',
        Tle => 'T',
        Mle => 'M',
        Ole => 'O',
        Sv => 'S',
        Ie => 'I',
        Sk => '-',
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The CLI's private data directory and lock file (the
    //! symlink attack through the real binary: tests/tests/operator.rs), exit codes.
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn test_private_data_dir_is_new_random_and_private() {
        let a = private_data_dir().unwrap();
        let b = private_data_dir().unwrap();
        assert_ne!(a, b);
        for d in [&a, &b] {
            let name = d.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with("runner-cli-") && name.len() > "runner-cli-".len() + 5);
            let meta = std::fs::symlink_metadata(d).unwrap();
            assert!(meta.is_dir());
            assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{}", d.display());
            std::fs::remove_dir(d).unwrap();
        }
    }

    /// A `lock` planted as a symlink is never followed, neither by a CLI command (O_EXCL) nor
    /// by the daemon (O_NOFOLLOW); the target is untouched.
    #[test]
    fn test_lock_refuses_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let lock = dir.path().join("lock");
        std::os::unix::fs::symlink(&victim, &lock).unwrap();
        assert!(open_lock(&lock, true).is_err());
        let err = open_lock(&lock, false).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        // A fresh lock is created 0600; a CLI lock only once.
        let fresh = dir.path().join("fresh");
        open_lock(&fresh, true).unwrap();
        assert!(open_lock(&fresh, true).is_err());
        open_lock(&fresh, false).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// The example dashboard and alert rules (deploy/monitoring/) use only metrics the daemon
    /// renders: the registry's families (`metrics::FAMILIES`) and peer mode's
    /// (`peer::metrics::PEER_FAMILIES`), a histogram with its `_bucket`, `_sum` and `_count`
    /// series. A module that adds a family list adds it here.
    #[test]
    fn test_dashboard_and_alerts_use_existing_metrics() {
        let known: Vec<&str> = crate::metrics::FAMILIES
            .iter()
            .chain(crate::peer::metrics::PEER_FAMILIES)
            .copied()
            .collect();
        fn strings(v: &serde_json::Value, key: &str, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        match v.as_str() {
                            Some(s) if k == key => out.push(s.to_owned()),
                            _ => strings(v, key, out),
                        }
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, key, out)),
                _ => {}
            }
        }
        let dashboard: serde_json::Value = serde_json::from_str(include_str!(
            "../../deploy/monitoring/runner-dashboard.json"
        ))
        .expect("the dashboard is JSON");
        let mut exprs = Vec::new();
        strings(&dashboard, "expr", &mut exprs);
        strings(&dashboard, "query", &mut exprs);
        let dashboard_exprs = exprs.len();
        let alerts = include_str!("../../deploy/monitoring/runner-alerts.yml");
        exprs.extend(
            alerts
                .lines()
                .filter_map(|l| l.trim().strip_prefix("expr:"))
                .map(|e| e.trim().to_owned()),
        );
        assert!(dashboard_exprs >= 10 && exprs.len() > dashboard_exprs + 4);
        let ident = regex::Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*").unwrap();
        let mut used = 0;
        for e in &exprs {
            for m in ident.find_iter(e) {
                let name = m.as_str();
                if !(name.starts_with("runner_") || name.starts_with("process_")) {
                    continue;
                }
                used += 1;
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| known.contains(f)))
                    .unwrap_or(name);
                assert!(known.contains(&family), "{name} (in `{e}`) is not a metric");
            }
        }
        assert!(used > 20, "the expressions name metrics");
        for alert in [
            "RunnerOverloaded",
            "RunnerQueueGrowing",
            "RunnerPeerDown",
            "RunnerEbpfInactive",
        ] {
            assert!(alerts.contains(&format!("alert: {alert}\n")), "{alert}");
        }
    }

    #[test]
    fn test_run_exit_codes_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for o in Outcome::ALL {
            let code = run_exit_code(o);
            assert!(seen.insert(code), "{o}: {code} twice");
            // 1 and 2 are runner's own failures and usage errors.
            assert!(code != 1 && code != 2, "{o}");
        }
        assert_eq!(run_exit_code(Outcome::Success), 0);
        assert_eq!(run_exit_code(Outcome::TimeLimit), 13);
    }
}
