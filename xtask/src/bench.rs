//! `cargo xtask bench [http|jail|verdicts]`: numbers to compare against the targets, no
//! assertions. `verdicts` is in `bench_verdicts.rs`.
//!
//! - `http`: `runner serve` in release on a free port; Jobe `POST /runs` of a python3 and a C
//!   hello world at concurrency 1, 2, 4 (and the CPU count), one connection per request like
//!   CodeRunner. The floor is the same compile + run done directly (no sandbox, no HTTP) at the same
//!   concurrency. Target: ratio >= 0.8 at concurrency = CPUs.
//! - `peers` (only when named; root): peer mode vs one runner vs random spreading, see
//!   `bench_peers.rs`.
//! - `judge` (only when named; root): judge mode's submissions/s and cases/s against compiling
//!   once and running the cases directly, see `bench_judge.rs`.
//! - `queue` (only when named; root): queue mode on RabbitMQ, see `bench_queue.rs`.
//! - `jail`: `runner bench-jail --iterations N` prints one JSON line
//!   `{"jail_p50_ms":..,"jail_p99_ms":..,"forkexec_p50_ms":..,"forkexec_p99_ms":..}`.
//!   Target: jail cost <= 2 ms over fork+exec (p50).

use std::io::{Read, Write};
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
    /// Which benchmark (default: both).
    which: Option<Which>,
    /// Measured runs per (language, concurrency).
    #[arg(long, default_value_t = 60)]
    runs: usize,
    /// Warm-up runs per (language, concurrency), not measured.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
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

const PY_SRC: &str = "print(\"hello world\")\n";
const C_SRC: &str =
    "#include <stdio.h>\n\nint main(void) {\n    printf(\"hello world\\n\");\n    return 0;\n}\n";
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
        return crate::bench_judge::run(&runner, args.runs.min(20), args.warmup.min(2));
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
pub(crate) struct Daemon(pub(crate) Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        crate::util::stop_child(&mut self.0, std::time::Duration::from_secs(20));
    }
}

#[derive(Clone, Copy)]
enum Lang {
    Python3,
    C,
}

impl Lang {
    fn id(self) -> &'static str {
        match self {
            Lang::Python3 => "python3",
            Lang::C => "c",
        }
    }
    fn source(self) -> &'static str {
        match self {
            Lang::Python3 => PY_SRC,
            Lang::C => C_SRC,
        }
    }
}

/// One (language, concurrency) measurement.
pub(crate) struct Sample {
    pub(crate) runs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    pub(crate) errors: usize,
}

fn http(args: &BenchArgs, runner: &Path) -> Result<()> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let log_path = util::target_dir()?.join("bench-runner.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    eprintln!(
        "xtask: starting {} serve --listen {addr} (log: {})",
        runner.display(),
        log_path.display()
    );
    let child = Command::new(runner)
        .args(["serve", "--listen", &addr])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", runner.display()))?;
    let mut daemon = Daemon(child);
    wait_ready(&addr, &mut daemon.0, &log_path)?;

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut levels = vec![1, 2, 4];
    if !levels.contains(&cpus) {
        levels.push(cpus);
        levels.sort_unstable();
    }
    let floor_dir = tempfile::tempdir().context("temp dir for the floor")?;
    println!(
        "{:<8} {:>4} {:>8} {:>12} {:>6} {:>8} {:>8} {:>6}",
        "lang", "conc", "runs/s", "floor runs/s", "ratio", "p50 ms", "p99 ms", "errors"
    );
    for lang in [Lang::Python3, Lang::C] {
        for &conc in &levels {
            let served = measure(conc, args.warmup, args.runs, |_| jobe_run(&addr, lang))?;
            let floor = measure(conc, args.warmup, args.runs, |i| {
                floor_run(floor_dir.path(), lang, i)
            })?;
            println!(
                "{:<8} {:>4} {:>8.1} {:>12.1} {:>6.2} {:>8.1} {:>8.1} {:>6}",
                lang.id(),
                conc,
                served.runs_per_s,
                floor.runs_per_s,
                served.runs_per_s / floor.runs_per_s,
                served.p50_ms,
                served.p99_ms,
                served.errors + floor.errors,
            );
        }
    }
    println!("target: ratio >= 0.8 at concurrency = CPUs ({cpus})");
    Ok(())
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

/// Run `warmup` then `runs` calls of `one` over `conc` threads; `one(i)` returns an error message
/// for a wrong result (counted, first one printed) and `Err` only when it cannot run at all.
pub(crate) fn measure(
    conc: usize,
    warmup: usize,
    runs: usize,
    one: impl Fn(usize) -> Result<Option<String>> + Sync,
) -> Result<Sample> {
    let go = |total: usize, offset: usize| -> Result<(Duration, Vec<Duration>, Vec<String>)> {
        let next = AtomicUsize::new(0);
        let lat = Mutex::new(Vec::with_capacity(total));
        let errs = Mutex::new(Vec::new());
        let start = Instant::now();
        std::thread::scope(|s| -> Result<()> {
            let handles: Vec<_> = (0..conc)
                .map(|_| {
                    s.spawn(|| -> Result<()> {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= total {
                                return Ok(());
                            }
                            let t = Instant::now();
                            let r = one(offset + i)?;
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
        let wall = start.elapsed();
        Ok((
            wall,
            lat.into_inner().expect("no panics"),
            errs.into_inner().expect("no panics"),
        ))
    };
    go(warmup, 0)?;
    let (wall, lat, errs) = go(runs, warmup)?;
    if let Some(first) = errs.first() {
        eprintln!("xtask: {} wrong result(s); first: {first}", errs.len());
    }
    let ms = util::sorted_ms(&lat);
    let pct = |p: f64| util::percentile(&ms, p);
    Ok(Sample {
        runs_per_s: runs as f64 / wall.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors: errs.len(),
    })
}

/// One Jobe run over HTTP; `Some(msg)` if the answer is not outcome 15 with `hello world\n`.
fn jobe_run(addr: &str, lang: Lang) -> Result<Option<String>> {
    let body = serde_json::json!({
        "run_spec": { "language_id": lang.id(), "sourcecode": lang.source() }
    })
    .to_string();
    let (status, resp) = http_request(addr, "POST", &format!("{JOBE}/runs"), Some(&body))?;
    let v: serde_json::Value = serde_json::from_str(&resp).unwrap_or(serde_json::Value::Null);
    if status != 200 || v["outcome"] != 15 || v["stdout"] != EXPECTED {
        return Ok(Some(format!("{} HTTP {status}: {resp}", lang.id())));
    }
    Ok(None)
}

/// The floor: the same compile + run with no sandbox and no HTTP, in a fresh directory.
fn floor_run(base: &Path, lang: Lang, i: usize) -> Result<Option<String>> {
    let dir = base.join(format!("{}-{i}", lang.id()));
    std::fs::create_dir_all(&dir)?;
    let (src, compile, run): (&str, Vec<&str>, Vec<&str>) = match lang {
        Lang::Python3 => (
            "prog.py",
            vec!["/usr/bin/python3", "-m", "py_compile", "prog.py"],
            vec!["/usr/bin/python3", "-BE", "prog.py"],
        ),
        Lang::C => (
            "prog.c",
            vec![
                "gcc",
                "-Wall",
                "-Werror",
                "-std=c99",
                "-x",
                "c",
                "-o",
                "prog.c.exe",
                "prog.c",
                "-lm",
            ],
            vec!["./prog.c.exe"],
        ),
    };
    std::fs::write(dir.join(src), lang.source())?;
    let exec = |argv: &[&str]| {
        Command::new(argv[0])
            .args(&argv[1..])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", argv[0]))
    };
    let c = exec(&compile)?;
    let out = if c.status.success() {
        Some(exec(&run)?)
    } else {
        None
    };
    let _ = std::fs::remove_dir_all(&dir);
    match out {
        Some(o) if o.status.success() && o.stdout == EXPECTED.as_bytes() => Ok(None),
        Some(o) => Ok(Some(format!(
            "floor {}: {} {:?}",
            lang.id(),
            o.status,
            String::from_utf8_lossy(&o.stdout)
        ))),
        None => Ok(Some(format!(
            "floor {} compile: {}",
            lang.id(),
            String::from_utf8_lossy(&c.stderr)
        ))),
    }
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
    println!("{:<10} {:>8} {:>8}", "", "p50 ms", "p99 ms");
    println!("{:<10} {jp50:>8.2} {jp99:>8.2}", "jail");
    println!("{:<10} {fp50:>8.2} {fp99:>8.2}", "fork+exec");
    println!("{:<10} {:>8.2} {:>8.2}", "cost", jp50 - fp50, jp99 - fp99);
    println!("target: jail cost <= 2 ms over fork+exec (p50)");
    Ok(())
}
