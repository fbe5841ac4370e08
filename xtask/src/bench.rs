//! `cargo xtask bench [http|jail|peers|verdicts]`: numbers to compare against the targets, no
//! assertions (docs/performance.md has the method, the figures and what they mean).
//!
//! - `http` (run with `jail` when none is named): every language (`--langs`) at concurrency 1,
//!   CPUs and 2 × CPUs (`--levels`), through `runner serve` in release with a config of its own
//!   (default slots: one per CPU), with CodeRunner's client: one new connection per request
//!   (`--client keep-alive` reuses one per client thread, `--client curl` starts a curl per
//!   request, for comparison only). Beside each figure its floor, measured in the same run in
//!   turns with it (`measure_pair`): the same steps started directly, with the
//!   argv and environment a job gets (`runner plan`, shipped profiles), in a fresh directory per
//!   run; compile + run for compiled languages, the run alone for interpreted ones (never
//!   runner's syntax check). Every source is unique (a counter in a comment), as a class's
//!   submissions are, so a compile cache could not serve the table; after it, C and Java once
//!   more at concurrency = CPUs with one source sent again and again (the rate a compile cache
//!   would multiply).
//!   CPU per run (`cpu ms`): the daemon's threads (its `/proc/<pid>/stat` utime+stime), its
//!   reaped children (the jails, cutime+cstime) and the kernel's threads and interrupts (work
//!   done outside any task, e.g. namespace and cgroup teardown), read before and after the
//!   batch; the floor's the same way. `cpu/step` is what a run costs beyond its floor, per jailed
//!   step, split into those three. `mach`: the machine's busy time from /proc/stat minus the
//!   client's own (getrusage), which includes everyone else's work on a busy machine. Targets
//!   (issue 15): ratio ≥ 0.8 (python3, php), ≥ 0.9 (c), ≥ 0.85 (nodejs) at concurrency = CPUs;
//!   cpu/step ≤ 3 ms.
//! - `peers` (only when named; root): peer mode vs one runner vs random spreading, see
//!   `bench_peers.rs`.
//! - `judge` (only when named; root): judge mode's submissions/s and cases/s against compiling
//!   once and running the cases directly, see `bench_judge.rs`.
//! - `queue` (only when named; root): queue mode on RabbitMQ, see `bench_queue.rs`.
//! - `jail`: `runner bench-jail --iterations N` prints one JSON line
//!   `{"jail_p50_ms":..,"jail_p99_ms":..,"forkexec_p50_ms":..,"forkexec_p99_ms":..,
//!   "jail_cpu_ms":..,"forkexec_cpu_ms":..,"steps":[..]}` (the step table on its stderr, passed
//!   through). The floor is a direct fork + exec of the same /bin/true, alternating with the
//!   jail in the same run; printed: both, the cost (jail − floor) and the ratio (floor / jail),
//!   for wall time and CPU time per spawn. Target (issue 15 goal 3): cost <= 1 ms at p50 on a
//!   quiet machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use crate::util;

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Which benchmark (default: http, then jail).
    which: Option<Which>,
    /// Measured runs per (language, concurrency); fewer if `--secs` runs out first.
    #[arg(long, default_value_t = 40)]
    runs: usize,
    /// At most this many seconds of measured runs per (language, concurrency), runner and
    /// floor each (at least 8 runs are always made).
    #[arg(long, default_value_t = 20.0)]
    secs: f64,
    /// Warm-up runs per (language, concurrency), not measured.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// `http`: the languages, comma-separated (default: all eight).
    #[arg(long, value_delimiter = ',')]
    langs: Vec<String>,
    /// `http`: the concurrency levels, comma-separated (default: 1, CPUs, 2 × CPUs).
    #[arg(long, value_delimiter = ',')]
    levels: Vec<usize>,
    /// `http`: how the client talks to the daemon: a new connection per request (CodeRunner's
    /// way, the default), one kept-alive connection per client thread, or one `curl` process per
    /// request (what a shell script does; its CPU competes with the daemon's).
    #[arg(long, value_enum, default_value_t = Client::Fresh)]
    client: Client,
    /// `http`: the daemon loads this profiles directory (e.g. a variant to compare); the floors
    /// always follow the shipped profiles.
    #[arg(long)]
    profiles_dir: Option<PathBuf>,
    /// Iterations for `runner bench-jail`.
    #[arg(long, default_value_t = 200)]
    iterations: u32,
    /// Benchmark this runner binary instead of building `target/release/runner`.
    #[arg(long)]
    runner: Option<PathBuf>,
    /// `verdicts`: runs per (mode, processes, budget).
    #[arg(long, default_value_t = 10)]
    pub(crate) verdict_runs: usize,
    /// `queue`: submissions per phase.
    #[arg(long, default_value_t = 300)]
    submissions: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Client {
    Fresh,
    KeepAlive,
    Curl,
}

impl Client {
    fn describe(self) -> &'static str {
        match self {
            Client::Fresh => "one new connection per request (CodeRunner)",
            Client::KeepAlive => "keep-alive (one connection per client thread)",
            Client::Curl => "one curl process per request",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Http,
    Jail,
    /// Peer mode vs one runner vs random spreading (root; only when named).
    Peers,
    /// CPU-limit overshoot and kill → response time, eBPF vs no-eBPF (only when named).
    Verdicts,
    /// Judge mode against compile once + direct runs (root; only when named).
    Judge,
    /// Queue mode on RabbitMQ: 3 runners vs 1, a runner killed and one stopped halfway (root;
    /// only when named).
    Queue,
}

const EXPECTED: &str = "hello world\n";
pub(crate) const JOBE: &str = "/jobe/index.php/restapi";

pub(crate) fn run(args: &BenchArgs) -> Result<()> {
    if args.which == Some(Which::Queue) {
        return crate::bench_queue::run(args.submissions);
    }
    let runner = match &args.runner {
        Some(r) => r.clone(),
        None => {
            if args.which == Some(Which::Verdicts) {
                crate::bench_verdicts::prepare();
            }
            util::build_release_runner()?
        }
    };
    if args.which == Some(Which::Peers) {
        return crate::bench_peers::run(&runner, args.runs);
    }
    if args.which == Some(Which::Verdicts) {
        return crate::bench_verdicts::run(args, &runner);
    }
    if args.which == Some(Which::Judge) {
        return crate::bench_judge::run(&runner, args);
    }
    if args.which != Some(Which::Jail) {
        http(args, &runner)?;
    }
    if args.which != Some(Which::Http) {
        jail(args, &runner)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// http

/// The daemon we started; stopped by its pid (SIGTERM, then SIGKILL) when dropped, so that it
/// removes its cgroups and run directories itself.
struct Daemon {
    child: Child,
    addr: String,
    config: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        crate::util::stop_child(&mut self.child, std::time::Duration::from_secs(20));
    }
}

/// A language of the table: its hello world, unique per run `i` (a comment), so that no run
/// could be served from a compile cache.
struct Lang {
    id: &'static str,
    source: fn(usize) -> String,
}

const LANGS: &[Lang] = &[
    Lang {
        id: "c",
        source: |i| {
            format!(
                "/* run {i} */\n#include <stdio.h>\n\nint main(void) {{\n    printf(\"hello world\\n\");\n    return 0;\n}}\n"
            )
        },
    },
    Lang {
        id: "cpp",
        source: |i| {
            format!(
                "// run {i}\n#include <iostream>\n\nint main() {{\n    std::cout << \"hello world\" << std::endl;\n}}\n"
            )
        },
    },
    Lang {
        id: "java",
        source: |i| {
            format!(
                "// run {i}\npublic class Hello {{\n    public static void main(String[] args) {{\n        System.out.println(\"hello world\");\n    }}\n}}\n"
            )
        },
    },
    Lang {
        id: "nodejs",
        source: |i| format!("// run {i}\nconsole.log(\"hello world\");\n"),
    },
    Lang {
        id: "octave",
        source: |i| format!("% run {i}\ndisp('hello world')\n"),
    },
    Lang {
        id: "pascal",
        source: |i| {
            format!("{{ run {i} }}\nprogram hello;\nbegin\n  writeln('hello world');\nend.\n")
        },
    },
    Lang {
        id: "php",
        source: |i| format!("<?php // run {i}\necho \"hello world\\n\";\n"),
    },
    Lang {
        id: "python3",
        source: |i| format!("# run {i}\nprint(\"hello world\")\n"),
    },
];

/// One batch of runs: throughput, latency and where the CPU went (milliseconds per run).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batch {
    runs: usize,
    pub(crate) runs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    pub(crate) errors: usize,
    /// The machine's busy time (/proc/stat) minus the client's own: the whole cost, but on a
    /// busy machine also everyone else's work.
    machine_ms: f64,
    /// The client's CPU (this process's threads, and its curl processes).
    client_ms: f64,
    /// The daemon's own threads (zero for a floor).
    daemon_ms: f64,
    /// Reaped children: the daemon's (jails) or, for a floor, the bench's (the programs).
    children_ms: f64,
    /// Kernel threads (kworkers: teardown deferred out of any task) and interrupt time.
    kernel_ms: f64,
    /// Jailed steps per run (1 for a floor).
    steps: f64,
}

/// CPU counters of the machine, the daemon and this process, read around a batch.
struct CpuSnapshot {
    machine_ticks: u64,
    /// Kernel threads' utime + stime, plus the machine's irq and softirq time.
    kernel_ticks: u64,
    daemon_ticks: (u64, u64),
    own: Duration,
    own_children: Duration,
}

impl CpuSnapshot {
    fn take(daemon: Option<u32>) -> Result<CpuSnapshot> {
        let (machine_ticks, irq_ticks) = machine_busy_ticks()?;
        Ok(CpuSnapshot {
            machine_ticks,
            kernel_ticks: irq_ticks + kernel_thread_ticks(),
            daemon_ticks: match daemon {
                Some(pid) => process_ticks(pid)?,
                None => (0, 0),
            },
            own: rusage(libc::RUSAGE_SELF),
            own_children: rusage(libc::RUSAGE_CHILDREN),
        })
    }
}

/// Busy time of all CPUs since boot in clock ticks: user, nice, system, irq, softirq, steal
/// (not idle, not iowait); and of that, irq + softirq.
fn machine_busy_ticks() -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let sum = |fields: &[usize]| fields.iter().map(|&i| v.get(i).copied().unwrap_or(0)).sum();
    Ok((sum(&[0, 1, 2, 5, 6, 7]), sum(&[5, 6])))
}

/// utime + stime of every kernel thread (kthreadd and its children), in ticks. A kworker that
/// exits during a batch takes its time with it: a lower bound.
fn kernel_thread_ticks() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            // Field 4 is the parent pid; kthreadd is pid 2.
            let ppid = *f.get(1)?;
            (pid == 2 || ppid == 2)
                .then(|| f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0))
        })
        .sum()
}

/// A process's own CPU time (utime + stime) and its reaped children's (cutime + cstime), ticks.
fn process_ticks(pid: u32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // After the command name in parentheses: state is field 3, utime 14 … cstime 17.
    let rest = &stat[stat.rfind(')').context("bad /proc/pid/stat")? + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let at = |field: usize| f.get(field - 3).copied().unwrap_or(0);
    Ok((at(14) + at(15), at(16) + at(17)))
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: getrusage fills the struct we pass; an all-zero rusage is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid `who` and a pointer to a live rusage.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn tick_ms() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1000.0 / if hz > 0 { hz as f64 } else { 100.0 }
}

/// `uptime`'s load averages, for the record of every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// One step of a plan: argv and environment.
pub(crate) type PlanStep = (Vec<String>, Vec<(String, String)>);

/// What `runner plan` says a job runs: the compile step unless it is a deferred check, and the
/// run step; the names of the files written.
#[derive(Debug, Clone)]
struct FloorPlan {
    files: Vec<String>,
    steps: Vec<PlanStep>,
    /// Jailed steps of a clean run of the daemon's own plan.
    daemon_steps: f64,
}

/// Replaced by each floor run's directory in the plan's paths and environment.
const PLAN_DIR: &str = "/runner-bench-floor-dir";

fn plan(
    runner: &Path,
    config: Option<&Path>,
    id: &str,
    source: &str,
    dir: &Path,
) -> Result<serde_json::Value> {
    let src = dir.join(format!("plan-{id}.src"));
    std::fs::write(&src, source)?;
    let mut cmd = Command::new(runner);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd
        .args(["plan", "--lang", id, "--run-dir", PLAN_DIR])
        .arg(&src)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {} plan", runner.display()))?;
    if !out.status.success() {
        bail!(
            "`runner plan --lang {id}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("`runner plan` printed no JSON")
}

/// What a job of language `id` runs for `source` under the shipped profiles (`runner plan`): the
/// names of the files written, then the compile step unless it is a deferred check, and the run
/// step, with [`PLAN_DIR`] standing for the run directory.
pub(crate) fn shipped_steps(
    runner: &Path,
    id: &str,
    source: &str,
    dir: &Path,
) -> Result<(Vec<String>, Vec<PlanStep>)> {
    let shipped = plan(runner, None, id, source, dir)?;
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let step = |v: &serde_json::Value| -> PlanStep {
        let env = strings(&v["env"])
            .into_iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect();
        (strings(&v["argv"]), env)
    };
    let mut steps = Vec::new();
    if !shipped["compile"].is_null() && shipped["compile_deferred"] != true {
        steps.push(step(&shipped["compile"]));
    }
    steps.push(step(&shipped["run"]));
    Ok((strings(&shipped["files"]), steps))
}

fn floor_plan(runner: &Path, daemon: &Daemon, lang: &Lang, dir: &Path) -> Result<FloorPlan> {
    let source = (lang.source)(0);
    let (files, steps) = shipped_steps(runner, lang.id, &source, dir)?;
    let served = plan(runner, Some(&daemon.config), lang.id, &source, dir)?;
    let two = !served["compile"].is_null() && served["compile_deferred"] != true;
    Ok(FloorPlan {
        files,
        steps,
        daemon_steps: if two { 2.0 } else { 1.0 },
    })
}

/// Starts `runner serve` with a config of its own (data directory, uids from
/// `RUNNER_TEST_UID_OFFSET` plus `uid_shift`, `--profiles-dir`, then `extra` tables) on a free
/// port, logging to `target/<log_name>`.
fn start_daemon(
    runner: &Path,
    args: &BenchArgs,
    uid_shift: u32,
    extra: &str,
    log_name: &str,
) -> Result<Daemon> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("runner.toml");
    let mut text = format!(
        "listen = \"{addr}\"\ndata_dir = \"{}\"\n",
        dir.path().join("data").display()
    );
    if let Some(p) = &args.profiles_dir {
        let p = std::fs::canonicalize(p).with_context(|| format!("{}", p.display()))?;
        text.push_str(&format!("profiles_dir = \"{}\"\n", p.display()));
    }
    text.push_str(extra);
    text.push_str(&format!(
        "\n[jail]\nuid_base = {}\n",
        1_991_000 + util::uid_offset() + uid_shift
    ));
    std::fs::write(&config, text)?;
    let log = util::target_dir()?.join(log_name);
    let logf =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    eprintln!(
        "xtask: starting {} serve --listen {addr} (log: {})",
        runner.display(),
        log.display()
    );
    let child = Command::new(runner)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .spawn()
        .with_context(|| format!("starting {}", runner.display()))?;
    let mut d = Daemon {
        child,
        addr,
        config,
        log,
        _dir: dir,
    };
    wait_ready(&d.addr, &mut d.child, &d.log)?;
    Ok(d)
}

/// Deferred checks the daemon ran so far (passed + failed), from `GET /metrics`.
fn checks_run(addr: &str) -> f64 {
    let Ok((200, text)) = http_request(addr, "GET", "/metrics", None) else {
        return 0.0;
    };
    text.lines()
        .filter(|l| {
            l.starts_with("runner_deferred_checks_total{result=\"passed\"}")
                || l.starts_with("runner_deferred_checks_total{result=\"failed\"}")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn http(args: &BenchArgs, runner: &Path) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut levels = if args.levels.is_empty() {
        vec![1, cpus, 2 * cpus]
    } else {
        args.levels.clone()
    };
    levels.sort_unstable();
    levels.dedup();
    let langs: Vec<&Lang> = if args.langs.is_empty() {
        LANGS.iter().collect()
    } else {
        args.langs
            .iter()
            .map(|id| {
                LANGS
                    .iter()
                    .find(|l| l.id == id)
                    .with_context(|| format!("--langs: no language {id}"))
            })
            .collect::<Result<_>>()?
    };
    let daemon = start_daemon(runner, args, 0, "", "bench-runner.log")?;
    let work = tempfile::tempdir().context("temp dir for the floors")?;
    let served: Vec<String> =
        match http_request(&daemon.addr, "GET", &format!("{JOBE}/languages"), None) {
            Ok((200, text)) => serde_json::from_str::<Vec<(String, String)>>(&text)
                .unwrap_or_default()
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
            _ => Vec::new(),
        };
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(util::workspace_root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!(
        "runner bench http: {} (checkout {commit}), {} CPUs, kernel {}, {}client: {}, load average at start {}",
        runner.display(),
        cpus,
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        args.profiles_dir
            .as_ref()
            .map(|p| format!("profiles_dir {}, ", p.display()))
            .unwrap_or_default(),
        args.client.describe(),
        load_average(),
    );
    println!("{HEADER}");
    let mut repeat = Vec::new();
    for lang in langs {
        if !served.iter().any(|id| id == lang.id) {
            println!(
                "{:<8} not served by this daemon (toolchain missing?)",
                lang.id
            );
            continue;
        }
        let plan = floor_plan(runner, &daemon, lang, work.path())?;
        for &conc in &levels {
            let (r, f) = measure_with_floor(args, &daemon, lang, conc, &plan, work.path())?;
            print_row(lang.id, conc, &r, &f);
        }
        if lang.id == "c" || lang.id == "java" {
            repeat.push((lang, plan));
        }
    }
    // One source sent again and again against a new one each time: what the compile cache
    // serves (issue 15, goal 2; docs/performance.md, "Compile cache"). `off`: a second daemon
    // with the cache turned off (its own slot uids), the uncached rate of the same requests.
    let off = if repeat.is_empty() {
        None
    } else {
        println!(
            "\nrepeated identical source at concurrency {cpus}: new = a new source every run (cache on: \
             every run a miss), off = the same source, cache off, on = the same source, cache on"
        );
        println!(
            "{:<8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}",
            "lang", "floor/s", "new/s", "off/s", "on/s", "on÷off", "on÷new", "on÷floor"
        );
        let extra = "[compile_cache]\nenabled = false\n";
        Some(start_daemon(
            runner,
            args,
            500,
            extra,
            "bench-runner-nocache.log",
        )?)
    };
    for (lang, plan) in &repeat {
        let Some(off) = &off else { break };
        let floor = measure_floor(args, lang, cpus, plan, work.path())?;
        let new = measure_runner(args, &daemon, lang, cpus, plan, true)?;
        let uncached = measure_runner(args, off, lang, cpus, plan, false)?;
        let same = measure_runner(args, &daemon, lang, cpus, plan, false)?;
        println!(
            "{:<8} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>9.2} {:>9.2} {:>9.2}",
            lang.id,
            floor.runs_per_s,
            new.runs_per_s,
            uncached.runs_per_s,
            same.runs_per_s,
            same.runs_per_s / uncached.runs_per_s,
            same.runs_per_s / new.runs_per_s,
            same.runs_per_s / floor.runs_per_s,
        );
    }
    println!("load average at end {}", load_average());
    println!("{LEGEND}");
    Ok(())
}

/// The table's header; [`print_row`] prints its rows.
const HEADER: &str = "lang     conc  runs/s floor/s ratio cpu-ratio  p50 ms  p99 ms  cpu ms  floor steps cpu/step daemon   jail kernel  mach  mach fl client err";

const LEGEND: &str = "
ratio = runs/s ÷ floor/s (the floor: the same steps started directly, measured in turns with
  the runner's runs, five rounds of --secs ÷ 5 each).
cpu-ratio = floor ÷ (cpu ms + client): the ratio when the CPUs are the bottleneck (concurrency
  ≥ CPUs on a quiet machine); unlike ratio, it holds up when other work shares the machine.
cpu ms = CPU per run of the daemon's threads, its jails (reaped children) and the kernel's
  threads and interrupts; floor = the same of the floor's programs.
cpu/step = (cpu − floor) ÷ jailed steps per run, split into daemon (its threads), jail (jail
  processes beyond the floor's programs) and kernel (kernel threads and interrupts beyond the
  floor's). mach / mach fl = the machine's busy time per run minus the client's, runner and
  floor: equal to cpu ms and floor on a quiet machine, larger by everyone else's work on a busy
  one. client = the client's CPU per request (it shares the machine with the daemon; the floor
  has none). Times in ms. Figures taken under load (see the load averages) are preliminary.";

fn print_row(id: &str, conc: usize, r: &Batch, f: &Batch) {
    let per_step = |x: f64| x / r.steps.max(1.0);
    let cpu = r.daemon_ms + r.children_ms + r.kernel_ms;
    let floor = f.children_ms + f.kernel_ms;
    println!(
        "{:<8} {:>4} {:>7.1} {:>7.1} {:>5.2} {:>9.2} {:>7.1} {:>7.1} {:>7.1} {:>6.1} {:>5.2} {:>8.2} {:>6.2} {:>6.2} {:>6.2} {:>5.0} {:>7.0} {:>6.2} {:>3}",
        id,
        conc,
        r.runs_per_s,
        f.runs_per_s,
        r.runs_per_s / f.runs_per_s,
        floor / (cpu + r.client_ms),
        r.p50_ms,
        r.p99_ms,
        cpu,
        floor,
        r.steps,
        per_step(cpu - floor),
        per_step(r.daemon_ms),
        per_step(r.children_ms - f.children_ms),
        per_step(r.kernel_ms - f.kernel_ms),
        r.machine_ms,
        f.machine_ms,
        r.client_ms,
        r.errors + f.errors,
    );
}

/// Runs through the daemon. `unique`: a new source per run, else run 0's every time.
fn measure_runner(
    args: &BenchArgs,
    daemon: &Daemon,
    lang: &Lang,
    conc: usize,
    plan: &FloorPlan,
    unique: bool,
) -> Result<Batch> {
    let pid = daemon.child.id();
    let (b, ()) = with_steps(args, daemon, plan, || {
        let b = measure(args, conc, Some(pid), |i, conn| {
            let source = (lang.source)(if unique { i } else { 0 });
            jobe_run(&daemon.addr, lang.id, &source, args.client, conn)
        })?;
        Ok((b, ()))
    })?;
    Ok(b)
}

/// `measure()`'s runner batch with its jailed steps per run: the plan's, plus the deferred
/// checks the daemon ran meanwhile (warm-up included).
fn with_steps<T>(
    args: &BenchArgs,
    daemon: &Daemon,
    plan: &FloorPlan,
    measure: impl FnOnce() -> Result<(Batch, T)>,
) -> Result<(Batch, T)> {
    let checks_before = checks_run(&daemon.addr);
    let (mut b, rest) = measure()?;
    let checks = checks_run(&daemon.addr) - checks_before;
    b.steps = plan.daemon_steps + checks / (b.runs + args.warmup) as f64;
    Ok((b, rest))
}

/// Runs through the daemon (a new source per run) and their floor, in turns
/// ([`measure_pair`]).
fn measure_with_floor(
    args: &BenchArgs,
    daemon: &Daemon,
    lang: &Lang,
    conc: usize,
    plan: &FloorPlan,
    base: &Path,
) -> Result<(Batch, Batch)> {
    with_steps(args, daemon, plan, || {
        measure_pair(
            args,
            conc,
            daemon.child.id(),
            |i, conn| jobe_run(&daemon.addr, lang.id, &(lang.source)(i), args.client, conn),
            |i, _| floor_run(base, lang, plan, i),
        )
    })
}

fn measure_floor(
    args: &BenchArgs,
    lang: &Lang,
    conc: usize,
    plan: &FloorPlan,
    base: &Path,
) -> Result<Batch> {
    measure(args, conc, None, |i, _| floor_run(base, lang, plan, i))
}

/// How one batch of calls is made: `one(i, connection)` returns an error message for a wrong
/// result (counted, the first printed) and `Err` only when it cannot run.
type One<'a> =
    dyn Fn(usize, &mut Option<BufReader<TcpStream>>) -> Result<Option<String>> + Sync + 'a;

/// Rounds a pair of batches is split into (`measure_pair`): each side runs `secs / ROUNDS` per
/// round, runner and floor in turn, so a machine whose speed drifts (a busy host under the VM)
/// slows both alike.
const ROUNDS: u32 = 5;

/// What one side of a measurement has made so far: calls, their latencies and errors, and the
/// CPU counters' growth while they ran.
#[derive(Default)]
struct Tally {
    wall: Duration,
    lat: Vec<Duration>,
    errs: Vec<String>,
    own: Duration,
    own_children: Duration,
    machine_ticks: u64,
    kernel_ticks: u64,
    daemon_ticks: (u64, u64),
}

impl Tally {
    /// Up to `total` more calls of `one` over `conc` threads, for `budget` at most (but at least
    /// `min` calls), counted into this tally.
    fn run(
        &mut self,
        conc: usize,
        daemon: Option<u32>,
        one: &One<'_>,
        total: usize,
        min: usize,
        budget: Option<Duration>,
    ) -> Result<()> {
        static NEXT_SOURCE: AtomicUsize = AtomicUsize::new(1);
        let next = AtomicUsize::new(0);
        let lat = Mutex::new(Vec::with_capacity(total));
        let errs = Mutex::new(Vec::new());
        let before = CpuSnapshot::take(daemon)?;
        let start = Instant::now();
        std::thread::scope(|s| -> Result<()> {
            let handles: Vec<_> = (0..conc)
                .map(|_| {
                    s.spawn(|| -> Result<()> {
                        let mut conn = None;
                        loop {
                            let over = budget.is_some_and(|b| start.elapsed() > b);
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= total || (over && i >= min) {
                                return Ok(());
                            }
                            let t = Instant::now();
                            let r = one(NEXT_SOURCE.fetch_add(1, Ordering::Relaxed), &mut conn)?;
                            lat.lock().expect("no panics").push(t.elapsed());
                            if let Some(e) = r {
                                errs.lock().expect("no panics").push(e);
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("bench thread panicked")?;
            }
            Ok(())
        })?;
        self.wall += start.elapsed();
        let after = CpuSnapshot::take(daemon)?;
        self.lat.extend(lat.into_inner().expect("no panics"));
        self.errs.extend(errs.into_inner().expect("no panics"));
        self.own += after.own.saturating_sub(before.own);
        self.own_children += after.own_children.saturating_sub(before.own_children);
        self.machine_ticks += after.machine_ticks.saturating_sub(before.machine_ticks);
        // Kernel threads come and go: their sum can drop between the snapshots (counted as 0).
        self.kernel_ticks += after.kernel_ticks.saturating_sub(before.kernel_ticks);
        self.daemon_ticks.0 += after.daemon_ticks.0.saturating_sub(before.daemon_ticks.0);
        self.daemon_ticks.1 += after.daemon_ticks.1.saturating_sub(before.daemon_ticks.1);
        Ok(())
    }

    /// The batch these calls make; `daemon`: whether they went through the daemon.
    fn batch(self, daemon: bool) -> Batch {
        if let Some(first) = self.errs.first() {
            eprintln!("xtask: {} wrong result(s); first: {first}", self.errs.len());
        }
        let n = self.lat.len().max(1) as f64;
        let ms = util::sorted_ms(&self.lat);
        let tick = tick_ms();
        let own = self.own.as_secs_f64() * 1e3;
        let own_children = self.own_children.as_secs_f64() * 1e3;
        let machine = self.machine_ticks as f64 * tick;
        // A runner batch's reaped children are the client's curl processes (the daemon is not
        // reaped); a floor batch's are the floor's programs.
        let (client, daemon_ms, children_ms) = if daemon {
            (
                own + own_children,
                self.daemon_ticks.0 as f64 * tick,
                self.daemon_ticks.1 as f64 * tick,
            )
        } else {
            (own, 0.0, own_children)
        };
        Batch {
            runs: self.lat.len(),
            runs_per_s: self.lat.len() as f64 / self.wall.as_secs_f64(),
            p50_ms: util::percentile(&ms, 0.50),
            p99_ms: util::percentile(&ms, 0.99),
            errors: self.errs.len(),
            machine_ms: (machine - client) / n,
            client_ms: client / n,
            daemon_ms: daemon_ms / n,
            children_ms: children_ms / n,
            kernel_ms: self.kernel_ticks as f64 * tick / n,
            steps: 1.0,
        }
    }
}

/// `warmup` then up to `runs` calls of `one(i, connection)` (for `--secs` at most, 8 at least)
/// over `conc` threads, each with a connection slot of its own.
pub(crate) fn measure(
    args: &BenchArgs,
    conc: usize,
    daemon: Option<u32>,
    one: impl Fn(usize, &mut Option<BufReader<TcpStream>>) -> Result<Option<String>> + Sync,
) -> Result<Batch> {
    Tally::default().run(conc, daemon, &one, args.warmup, 0, None)?;
    let mut t = Tally::default();
    let budget = Duration::from_secs_f64(args.secs);
    t.run(conc, daemon, &one, args.runs, 8, Some(budget))?;
    Ok(t.batch(daemon.is_some()))
}

/// `measure` of the runner (`served`, through the daemon `daemon`) and of its floor at once:
/// each side's warm-up, then [`ROUNDS`] rounds of `--secs / ROUNDS` each, runner then floor, so
/// both see the machine at the same speed. Up to `runs` calls a side, at least 8.
pub(crate) fn measure_pair(
    args: &BenchArgs,
    conc: usize,
    daemon: u32,
    served: impl Fn(usize, &mut Option<BufReader<TcpStream>>) -> Result<Option<String>> + Sync,
    floor: impl Fn(usize, &mut Option<BufReader<TcpStream>>) -> Result<Option<String>> + Sync,
) -> Result<(Batch, Batch)> {
    Tally::default().run(conc, Some(daemon), &served, args.warmup, 0, None)?;
    Tally::default().run(conc, None, &floor, args.warmup, 0, None)?;
    let round = Duration::from_secs_f64(args.secs / f64::from(ROUNDS));
    let (mut r, mut f) = (Tally::default(), Tally::default());
    let rounds = ROUNDS as usize;
    let (per_round_min, per_round_max) = (8usize.div_ceil(rounds), args.runs.div_ceil(rounds));
    for _ in 0..ROUNDS {
        let left = args.runs.saturating_sub(r.lat.len()).min(per_round_max);
        if left > 0 {
            r.run(
                conc,
                Some(daemon),
                &served,
                left,
                per_round_min,
                Some(round),
            )?;
        }
        let left = args.runs.saturating_sub(f.lat.len()).min(per_round_max);
        if left > 0 {
            f.run(conc, None, &floor, left, per_round_min, Some(round))?;
        }
    }
    Ok((r.batch(true), f.batch(false)))
}

pub(crate) fn wait_ready(addr: &str, child: &mut Child, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "runner serve exited ({status}) before answering; see {}",
                log.display()
            );
        }
        if let Ok((200, _)) = http_request(addr, "GET", &format!("{JOBE}/languages"), None) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "runner serve did not answer GET {JOBE}/languages with 200 in 30 s; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One Jobe run over HTTP as `client` talks (`conn`: the thread's kept-alive connection);
/// `Some(msg)` if the answer is not outcome 15 with `hello world\n`.
fn jobe_run(
    addr: &str,
    lang: &str,
    source: &str,
    client: Client,
    conn: &mut Option<BufReader<TcpStream>>,
) -> Result<Option<String>> {
    let body = serde_json::json!({
        "run_spec": { "language_id": lang, "sourcecode": source }
    })
    .to_string();
    let path = format!("{JOBE}/runs");
    let (status, resp) = match client {
        Client::Fresh => http_request(addr, "POST", &path, Some(&body))?,
        Client::KeepAlive => keep_alive_request(addr, conn, &path, &body)?,
        Client::Curl => curl_request(addr, &path, &body)?,
    };
    let v: serde_json::Value = serde_json::from_str(&resp).unwrap_or(serde_json::Value::Null);
    if status != 200 || v["outcome"] != 15 || v["stdout"] != EXPECTED {
        return Ok(Some(format!("{lang} HTTP {status}: {resp}")));
    }
    Ok(None)
}

/// `POST path` by a `curl` process of its own.
fn curl_request(addr: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let mut child = Command::new("curl")
        .args([
            "-s",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
        ])
        .args(["-w", "\n%{http_code}"])
        .arg(format!("http://{addr}{path}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting curl")?;
    child
        .stdin
        .take()
        .context("curl stdin")?
        .write_all(body.as_bytes())?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (resp, code) = text.rsplit_once('\n').context("curl printed no status")?;
    Ok((code.trim().parse().unwrap_or(0), resp.to_owned()))
}

/// `POST path` on a kept-alive connection (opened when `conn` is empty); the answer must have a
/// Content-Length (runner's do).
fn keep_alive_request(
    addr: &str,
    conn: &mut Option<BufReader<TcpStream>>,
    path: &str,
    body: &str,
) -> Result<(u16, String)> {
    if conn.is_none() {
        let s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        *conn = Some(BufReader::new(s));
    }
    let r = conn.as_mut().context("connection")?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    r.get_mut().write_all(req.as_bytes())?;
    let mut status_line = String::new();
    r.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("bad HTTP status line")?;
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().context("bad Content-Length")?;
        }
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok((status, String::from_utf8_lossy(&buf).into_owned()))
}

/// The floor: the plan's steps started directly, with its environment, in a fresh directory.
fn floor_run(base: &Path, lang: &Lang, plan: &FloorPlan, i: usize) -> Result<Option<String>> {
    let dir = base.join(format!("{}-{i}", lang.id));
    std::fs::create_dir(&dir)?;
    let source = (lang.source)(i);
    for name in &plan.files {
        std::fs::write(dir.join(name), &source)?;
    }
    let mut outcome = None;
    for step in &plan.steps {
        outcome = Some(run_step(step, &dir, Stdio::null())?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    match outcome {
        Some(o) if o.stdout == EXPECTED.as_bytes() && o.stderr.is_empty() => Ok(None),
        Some(o) => Ok(Some(format!(
            "floor {}: {} stdout {:?} stderr {:?}",
            lang.id,
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ))),
        None => Ok(Some(format!("floor {}: no step", lang.id))),
    }
}

/// Starts one plan step directly in `dir` (the run directory for [`PLAN_DIR`]), with the step's
/// environment only, and waits for it.
pub(crate) fn run_step(
    (argv, env): &PlanStep,
    dir: &Path,
    stdin: Stdio,
) -> Result<std::process::Output> {
    let dir_s = dir.to_string_lossy();
    let argv: Vec<String> = argv.iter().map(|a| a.replace(PLAN_DIR, &dir_s)).collect();
    let first = argv.first().context("a plan step without argv")?;
    let program = match first.strip_prefix("./") {
        Some(rel) => dir.join(rel),
        None => PathBuf::from(first),
    };
    Command::new(program)
        .args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v.replace(PLAN_DIR, &dir_s))))
        .current_dir(dir)
        .stdin(stdin)
        .output()
        .with_context(|| format!("running {first}"))
}

/// A minimal HTTP/1.1 client: one connection per request, `Connection: close`.
pub(crate) fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("HTTP response without a header end")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = &raw[split + 4..];
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("bad HTTP status line")?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_ascii_lowercase())
        })
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut out = Vec::new();
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .context("bad chunk")?;
            let size_str = String::from_utf8_lossy(&rest[..eol]);
            let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
                .context("bad chunk size")?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size).context("short chunk")?);
            rest = rest.get(size + 2..).unwrap_or_default();
        }
        out
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest[..len.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

// ---------------------------------------------------------------------------------------------
// jail

fn jail(args: &BenchArgs, runner: &Path) -> Result<()> {
    let iterations = args.iterations.to_string();
    eprintln!(
        "xtask: $ {} bench-jail --iterations {iterations}",
        runner.display()
    );
    let out = Command::new(runner)
        .args(["bench-jail", "--iterations", &iterations])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {}", runner.display()))?;
    if !out.status.success() {
        bail!(
            "`runner bench-jail` failed ({}); the hidden subcommand may not exist yet. stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // The per-step table (and any log lines) that bench-jail writes for people.
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line)
        .with_context(|| format!("`runner bench-jail` must print one JSON line, got: {line:?}"))?;
    let get = |k: &str| {
        v[k].as_f64()
            .with_context(|| format!("`runner bench-jail` output lacks {k}: {line}"))
    };
    let (jp50, jp99) = (get("jail_p50_ms")?, get("jail_p99_ms")?);
    let (fp50, fp99) = (get("forkexec_p50_ms")?, get("forkexec_p99_ms")?);
    let (jcpu, fcpu) = (get("jail_cpu_ms")?, get("forkexec_cpu_ms")?);
    let ratio = |floor: f64, x: f64| if x > 0.0 { floor / x } else { 0.0 };
    println!(
        "{:<22} {:>8} {:>8} {:>12}",
        "", "p50 ms", "p99 ms", "CPU ms/spawn"
    );
    println!("{:<22} {jp50:>8.2} {jp99:>8.2} {jcpu:>12.2}", "jail");
    println!(
        "{:<22} {fp50:>8.2} {fp99:>8.2} {fcpu:>12.2}",
        "floor (fork+exec)"
    );
    println!(
        "{:<22} {:>8.2} {:>8.2} {:>12.2}",
        "cost (jail - floor)",
        jp50 - fp50,
        jp99 - fp99,
        jcpu - fcpu
    );
    println!(
        "{:<22} {:>8.2} {:>8.2} {:>12.2}",
        "ratio (floor / jail)",
        ratio(fp50, jp50),
        ratio(fp99, jp99),
        ratio(fcpu, jcpu)
    );
    println!("target: cost <= 1 ms at p50 on a quiet machine (issue 15 goal 3)");
    Ok(())
}
