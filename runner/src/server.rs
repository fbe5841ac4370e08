//! Start-up and the daemon's commands: `serve`, `check`, `run`, `bench-jail`. `main.rs` only
//! parses arguments and calls into here.
//!
//! Start-up order: lock the data directory → jail (kernel probes, cgroup subtree; fails closed)
//! → profiles (version probes) → slots (one netns each) → file cache → listen. Shutdown: SIGTERM
//! or SIGINT stops accepting; in-flight requests finish within `shutdown_grace_secs`.
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
use crate::notify;
use crate::peer::{Dispatcher, Peers};
use crate::profile::Registry;
use crate::sched::{Executor, Scheduler};

/// Everything a running daemon is made of.
pub struct Runtime {
    pub scheduler: Arc<Scheduler>,
    pub jail: Arc<Jail>,
    _lock: File,
    /// A private data directory of a CLI command, removed on drop.
    temp_dir: Option<std::path::PathBuf>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
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
    let registry = match &cfg.profiles_dir {
        Some(dir) => Registry::load_dir(dir),
        None => Registry::embedded(),
    }
    .context("cannot load language profiles")?;
    let jail_cfg = crate::jail::JailConfig {
        extra_ro_mount_points: registry.extra_ro_paths(),
        ..cfg.jail.clone()
    };
    let jail = Jail::new(&jail_cfg).context("cannot set up the jail")?;
    // The daemon loads its eBPF monitor once: the parsed kernel BTF (~15 MB) and the heap it
    // freed would otherwise stay resident, and every jail's clone3 copies the page tables of
    // what the daemon holds (docs/jail.md, "What each step costs").
    crate::monitor::forget_kernel_btf();
    crate::sys::release_free_heap();
    jail.remove_stale_run_dirs();
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
        _lock: lock,
        temp_dir,
    })
}

/// `runner serve`.
pub async fn serve(cfg: Config) -> Result<()> {
    // Handlers first: a SIGTERM that arrives during start-up, or right after READY=1, must
    // drain and exit 0, not kill the daemon with the default action.
    let stop = StopSignals::install().context("cannot install the SIGTERM/SIGINT handlers")?;
    let rt = start(&cfg, Mode::Daemon)?;
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
        "serving the Jobe API at /jobe/index.php/restapi/ (and GET /metrics, GET /health)"
    );
    // Ready only now: a start-up failure above exits non-zero before systemd hears READY=1.
    let bound = listener.local_addr().unwrap_or(cfg.listen);
    notify::notify_or_log(&notify::ready_message(langs.len(), &bound));
    let shutdown = async move {
        stop.recv().await;
        notify::notify_or_log(notify::STOPPING);
    };
    api::serve(listener, state, shutdown)
        .await
        .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// The API's state for `cfg`: the scheduler behind peer mode's dispatcher (every run local
/// without `[peer]`), and one metrics registry for both.
pub fn app_state(cfg: &Config, rt: &Runtime, cache: Arc<FileCache>) -> AppState {
    let peers = Peers::from_config(&cfg.peer, &cfg.sched);
    let dispatcher = Dispatcher::new(rt.scheduler.clone(), cache.clone(), peers);
    AppState::new(dispatcher, cache, cfg.api.clone()).with_metrics(rt.scheduler.metrics())
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
