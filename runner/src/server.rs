//! Start-up and the daemon's commands: `serve`, `check`, `run`, `bench-jail`. `main.rs` only
//! parses arguments and calls into here.
//!
//! Start-up order: lock the data directory → jail (kernel probes, cgroup subtree; fails closed)
//! → profiles (version probes) → slots (one netns each) → judge (test-set store, journal;
//! unfinished submissions resume) → file cache → listen → queue mode (with `[queue]`; it
//! connects in the background). Shutdown: SIGTERM or SIGINT stops accepting; in-flight requests
//! finish within `shutdown_grace_secs` while queue mode stops as its `on_stop` says, then the
//! submissions being judged get what is left of the grace (the others stay journaled and run
//! after the restart).
//!
//! Under systemd (`Type=notify`, deploy/runner.service) `serve` reports `READY=1` once the
//! listener is bound, i.e. after the jail, cgroups, profiles and slots are set up, and
//! `STOPPING=1` when the stop signal arrives (`notify`). Started by hand, nothing is sent.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::api::{self, AppState};
use crate::cache::FileCache;
use crate::config::Config;
use crate::jail::{Jail, JailSpec};
use crate::job::{Job, Params};
use crate::judge::testset::TESTSETS_DIR;
use crate::judge::{Backend, Judge, JudgeSettings, Origin, TestsetStore, Testsets};
use crate::metrics::QueueCounters;
use crate::notify;
use crate::peer::{Dispatcher, Peers};
use crate::profile::Registry;
use crate::queue::QueueMode;
use crate::queue::engine::EngineJudger;
use crate::sched::{Executor, Scheduler};

/// Everything a running daemon is made of.
pub struct Runtime {
    pub scheduler: Arc<Scheduler>,
    pub jail: Arc<Jail>,
    /// Judge mode, once [`start_judge`] ran.
    pub judge: Option<Judge>,
    /// The data directory in use (a CLI command's private one, or `data_dir`).
    pub data_dir: std::path::PathBuf,
    _lock: File,
    /// A private data directory of a CLI command, removed on drop.
    temp_dir: Option<std::path::PathBuf>,
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

/// The seccomp policies: the built-in `default` plus `<profiles_dir>/seccomp/<name>.toml`.
pub fn seccomp_policies(cfg: &Config) -> Result<Vec<(String, String)>> {
    let mut policies = cfg.jail.seccomp_policies.clone();
    let Some(dir) = cfg.profiles_dir.as_ref().map(|d| d.join("seccomp")) else {
        return Ok(policies);
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(policies);
    };
    for e in entries {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == "toml") {
            let name = path
                .file_stem()
                .and_then(|n| n.to_str())
                .context("policy file name is not UTF-8")?
                .to_owned();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            policies.retain(|(n, _)| *n != name);
            policies.push((name, text));
        }
    }
    Ok(policies)
}

/// Builds the runtime: fails with a clear message when the host cannot jail safely.
pub fn start(cfg: &Config, mode: Mode) -> Result<Runtime> {
    let temp_dir = (mode == Mode::Cli)
        .then(|| std::env::temp_dir().join(format!("runner-cli-{}", std::process::id())));
    let started = start_in(cfg, temp_dir.clone());
    // A CLI command that fails to start (e.g. `[monitor] ebpf = "require"` without eBPF) must
    // not leave its private data directory behind; `Runtime` removes it otherwise.
    if let (Err(_), Some(dir)) = (&started, &temp_dir) {
        let _ = std::fs::remove_dir_all(dir);
    }
    started
}

fn start_in(cfg: &Config, temp_dir: Option<std::path::PathBuf>) -> Result<Runtime> {
    let mut cfg = cfg.clone();
    if let Some(dir) = &temp_dir {
        cfg.data_dir = dir.clone();
        cfg.jail.data_dir = dir.clone();
    }
    cfg.jail.seccomp_policies = seccomp_policies(&cfg)?;
    let cfg = &cfg;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data directory {}", cfg.data_dir.display()))?;
    let lock_path = cfg.data_dir.join("lock");
    let lock = File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!(
            "another runner is using the data directory {} (locked)",
            cfg.data_dir.display()
        );
    }
    let jail = Jail::new(&cfg.jail).context("cannot set up the jail")?;
    jail.remove_stale_run_dirs();
    jail.remove_stale_artifacts();
    let registry = match &cfg.profiles_dir {
        Some(dir) => Registry::load_dir(dir),
        None => Registry::embedded(),
    }
    .context("cannot load language profiles")?;
    for (id, _) in registry.languages() {
        let profile = registry.get(&id).context("listed language has a profile")?;
        if !jail.has_policy(&profile.seccomp) {
            bail!("profile {id}: unknown seccomp policy '{}'", profile.seccomp);
        }
    }
    let slots = jail.make_slots(cfg.slots).context("cannot create slots")?;
    let jail = Arc::new(jail);
    let scheduler = Arc::new(Scheduler::new(
        registry,
        jail.clone(),
        slots,
        cfg.sched.clone(),
    ));
    // `GET /metrics` shows the eBPF monitor's counters (the registry never reaches into it).
    if let Some(counters) = jail.ebpf_counters() {
        scheduler.metrics().attach_ebpf(counters);
    }
    Ok(Runtime {
        scheduler,
        jail,
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

/// `runner serve`.
pub async fn serve(cfg: Config) -> Result<()> {
    // Handlers first: a SIGTERM that arrives during start-up, or right after READY=1, must
    // drain and exit 0, not kill the daemon with the default action.
    let stop = StopSignals::install().context("cannot install the SIGTERM/SIGINT handlers")?;
    let mut rt = start(&cfg, Mode::Daemon)?;
    let judge = start_judge(&cfg, &mut rt).await?;
    for line in rt.jail.describe() {
        tracing::info!("{line}");
    }
    let langs = rt.scheduler.languages();
    tracing::info!(
        languages = %langs.iter().map(|(l, v)| format!("{l} {v}")).collect::<Vec<_>>().join(", "),
        slots = cfg.slots,
        "ready"
    );
    let cache = Arc::new(
        FileCache::open(cfg.cache_dir.clone(), cfg.cache_max_bytes)
            .context("cannot open the file cache")?,
    );
    let state = Arc::new(app_state(&cfg, &rt, cache));
    raise_fd_limit(&cfg);
    let listener =
        api::bind(cfg.listen).with_context(|| format!("cannot listen on {}", cfg.listen))?;
    tracing::info!(
        listen = %cfg.listen,
        "serving the Jobe API at /jobe/index.php/restapi/, judge mode at /judge/v1/ (and GET /metrics, GET /health)"
    );
    // Ready only now: a start-up failure above exits non-zero before systemd hears READY=1.
    let bound = listener.local_addr().unwrap_or(cfg.listen);
    notify::notify_or_log(&notify::ready_message(langs.len(), &bound));
    // Queue mode: connects in the background (retrying while the broker is down).
    let queue = start_queue(&cfg, &rt, &judge);
    let (stopping, mut stop_seen) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        stop.recv().await;
        notify::notify_or_log(notify::STOPPING);
        stopping.send_replace(true);
    };
    let drain_started = std::sync::Arc::new(std::sync::OnceLock::new());
    let started = drain_started.clone();
    let shutdown = async move {
        shutdown.await;
        let _ = started.set(Instant::now());
    };
    // On the stop signal queue mode stops as `on_stop` says, while HTTP drains; the judge
    // drains after both (queue mode's running submissions need it).
    let queue_stopped = async move {
        if let Some(q) = queue {
            let _ = stop_seen.wait_for(|s| *s).await;
            q.stop().await;
        }
    };
    let (served, ()) = tokio::join!(api::serve(listener, state, shutdown), queue_stopped);
    served.context("server failed")?;
    let spent = drain_started.get().map_or(Duration::ZERO, Instant::elapsed);
    judge.drain(cfg.shutdown_grace.saturating_sub(spent)).await;
    judge.shutdown();
    tracing::info!("stopped");
    Ok(())
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

/// The API's state for `cfg`: the scheduler behind peer mode's dispatcher (every run local
/// without `[peer]`), and one metrics registry for both.
pub fn app_state(cfg: &Config, rt: &Runtime, cache: Arc<FileCache>) -> AppState {
    let peers = Peers::from_config(&cfg.peer, &cfg.sched);
    let dispatcher = Dispatcher::new(rt.scheduler.clone(), cache.clone(), peers);
    let state =
        AppState::new(dispatcher, cache, cfg.api.clone()).with_metrics(rt.scheduler.metrics());
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

/// SIGTERM and SIGINT, registered with tokio when created: from then on neither kills the
/// process, and one that arrives before `recv` is polled is not lost.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
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
    let rt = start(cfg, Mode::Cli)?;
    let mut out = String::new();
    out.push_str(&format!(
        "kernel: {}\n",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    ));
    for line in rt.jail.describe() {
        out.push_str(&format!("{line}\n"));
    }
    out.push_str("seccomp: user notification (denied syscalls are named, outcome 19)\n");
    out.push_str(&format!(
        "slots: {} (uids from {})\n",
        cfg.slots, cfg.jail.uid_base
    ));
    out.push_str("languages:\n");
    let langs = rt.scheduler.languages();
    for (id, version) in &langs {
        out.push_str(&format!("  {id} {version}\n"));
    }
    for (id, why) in rt.scheduler.registry().missing() {
        out.push_str(&format!("  {id}: not available ({why})\n"));
    }
    Ok(out)
}

/// `runner run`: one local run, printed as Jobe's result object.
pub async fn run_once(
    cfg: &Config,
    lang: &str,
    source_file: &Path,
    input: Option<&Path>,
    cputime: Option<f64>,
) -> Result<String> {
    let rt = start(cfg, Mode::Cli)?;
    let source = std::fs::read_to_string(source_file)
        .with_context(|| format!("cannot read {}", source_file.display()))?;
    let input = match input {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        None => String::new(),
    };
    let job = Job {
        language: lang.to_lowercase(),
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
    Ok(api::result_json(&result))
}

/// `runner bench-jail`: the jail's own cost (start + teardown around /bin/true) beside a plain
/// fork + exec of /bin/true. Prints one JSON line (read by `cargo xtask bench jail`).
pub async fn bench_jail(cfg: &Config, iterations: usize) -> Result<String> {
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
        },
    };
    let mut jail_ms = Vec::with_capacity(iterations);
    let mut fork_ms = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        let out = rt
            .jail
            .spawn(JailSpec {
                step: &step,
                policy: "default",
                run_dir: &dir,
                slot,
                stdin: None,
                extra_ro: &[],
            })
            .await?;
        jail_ms.push(t.elapsed().as_secs_f64() * 1e3);
        if out.end != crate::jail::End::Exited(0) {
            bail!("/bin/true in the jail ended with {:?}", out.end);
        }
        let t = Instant::now();
        let st = std::process::Command::new("/bin/true").status()?;
        fork_ms.push(t.elapsed().as_secs_f64() * 1e3);
        if !st.success() {
            bail!("/bin/true failed");
        }
    }
    let (jp50, jp99) = percentiles(&mut jail_ms);
    let (fp50, fp99) = percentiles(&mut fork_ms);
    Ok(format!(
        "{{\"jail_p50_ms\":{jp50:.3},\"jail_p99_ms\":{jp99:.3},\"forkexec_p50_ms\":{fp50:.3},\"forkexec_p99_ms\":{fp99:.3}}}"
    ))
}

fn percentiles(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    if v.is_empty() {
        (0.0, 0.0)
    } else {
        (at(0.5), at(0.99))
    }
}

/// `runner check-config`: the config (already validated by `Config::load`), the profiles and the
/// seccomp policies they name, without touching the kernel. Used as systemd `ExecStartPre=`.
pub fn check_config(cfg: &Config) -> Result<String> {
    let profiles = match &cfg.profiles_dir {
        Some(dir) => crate::profile::merge(
            crate::profile::embedded_profiles()?,
            crate::profile::dir_profiles(dir)?,
        ),
        None => crate::profile::embedded_profiles()?,
    };
    let mut policies = Vec::new();
    let texts = seccomp_policies(cfg)?;
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
