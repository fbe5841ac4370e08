//! `cargo xtask bench verdicts`: how precisely and how fast a CPU-time limit ends a job, with the
//! eBPF monitor beside the no-eBPF mode in the same run.
//!
//! Two daemons (`[monitor] ebpf = "require"` and `"off"`, release build, private data dirs, slot
//! uids from 2_190_000 + `RUNNER_TEST_UID_OFFSET`) serve python3 busy loops of 1 and 4 processes
//! with cputime 0.1, 0.5, 1 and 2 s, each `--verdict-runs` times, through `POST /runs` with
//! `runner_details`. Per run:
//! - overshoot = CPU time the job used (cgroup `cpu.stat`, all processes) − the budget;
//! - kill → response = when the client had the whole HTTP response − when the daemon wrote
//!   `cgroup.kill` (`details.killed_at_unix`; same machine, same clock).
//!
//! A run whose wall-time limit (the daemon's default `wall_factor` 2 × cputime) ended it before
//! its CPU budget, which happens on a busy machine, is counted apart (`wall`), not as a negative
//! overshoot; any other run that used less than its budget was killed early, a wrong verdict,
//! and is counted under `errors`.
//!
//! Targets (eBPF mode): overshoot ≤ 5 ms and kill → response ≤ 5 ms at p99, no run killed
//! below its budget. No assertions.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::bench::{BenchArgs, JOBE, http_request, wait_ready};
use crate::ebpf;

const BUDGETS: [f64; 4] = [0.1, 0.5, 1.0, 2.0];
const PROCS: [u32; 2] = [1, 4];
/// The daemons' default `[limits] wall_factor`: a run's wall-time limit is this × its cputime.
const WALL_FACTOR: f64 = 2.0;

/// One case's runs of one mode: overshoots, kill → response times (ms), errors, wall-limit kills.
type Case = (Vec<f64>, Vec<f64>, Vec<String>, usize);

/// How one run ended.
enum Run {
    /// TLE by its CPU budget: CPU time past the budget and kill → response (ms).
    Tle(f64, f64),
    /// TLE by its wall-time limit before it had used its budget (a busy machine).
    Wall,
}

/// A daemon we started; stopped by its pid (SIGTERM, then SIGKILL) and its data dir removed on drop.
struct Daemon {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        crate::util::stop_child(&mut self.child, std::time::Duration::from_secs(20));
        // `_dir` (config, log, data dir) is removed after this, once the daemon is gone.
    }
}

fn busy_source(procs: u32) -> String {
    format!(
        "import os\nfor _ in range({}):\n    if os.fork() == 0:\n        break\nwhile True:\n    pass\n",
        procs - 1
    )
}

fn start(runner: &Path, mode: &str, uid_base: u32) -> Result<(Daemon, String)> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = dir.path().join("runner.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"{addr}\"\ndata_dir = \"{}\"\nslots = 1\n[jail]\nuid_base = {uid_base}\n\
             [monitor]\nebpf = \"{mode}\"\n",
            dir.path().join("data").display()
        ),
    )?;
    let log_path = dir.path().join("runner.log");
    let log = std::fs::File::create(&log_path)?;
    let child = Command::new(runner)
        .args(["--config"])
        .arg(&cfg)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", runner.display()))?;
    let mut d = Daemon { child, _dir: dir };
    wait_ready(&addr, &mut d.child, &log_path)?;
    Ok((d, addr))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    crate::util::percentile(v, p)
}

/// One run, or why it was not a clean TLE.
fn one(addr: &str, procs: u32, budget: f64) -> Result<std::result::Result<Run, String>> {
    let body = serde_json::json!({"run_spec": {
        "language_id": "python3",
        "sourcecode": busy_source(procs),
        "parameters": {"cputime": budget, "numprocs": 20},
        "runner_details": true,
    }})
    .to_string();
    let (status, text) = http_request(addr, "POST", &format!("{JOBE}/runs"), Some(&body))?;
    let done = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    if status != 200 {
        bail!("POST /runs: HTTP {status}: {text}");
    }
    let v: serde_json::Value = serde_json::from_str(&text).context("response JSON")?;
    if v["outcome"] != 13 {
        return Ok(Err(format!("outcome {} (want 13)", v["outcome"])));
    }
    let d = &v["details"];
    let (Some(cpu), Some(wall), Some(killed)) = (
        d["cpu_seconds"].as_f64(),
        d["wall_seconds"].as_f64(),
        d["killed_at_unix"].as_f64(),
    ) else {
        return Ok(Err(format!("details without cpu/wall/kill time: {d}")));
    };
    if cpu < budget {
        if wall >= WALL_FACTOR * budget - 1e-3 {
            return Ok(Ok(Run::Wall));
        }
        return Ok(Err(format!(
            "killed below its budget: {cpu} s of {budget} s CPU after {wall} s"
        )));
    }
    Ok(Ok(Run::Tle((cpu - budget) * 1e3, (done - killed) * 1e3)))
}

pub(crate) fn run(args: &BenchArgs, runner: &Path) -> Result<()> {
    let offset = crate::util::uid_offset();
    let modes = [("ebpf", "require"), ("no-ebpf", "off")];
    let daemons: Vec<_> = modes
        .iter()
        .enumerate()
        .map(|(i, (_, m))| start(runner, m, 2_190_000 + offset + 16 * i as u32))
        .collect();
    let mut started = Vec::new();
    for (d, (label, _)) in daemons.into_iter().zip(&modes) {
        match d {
            Ok(d) => started.push((*label, d)),
            Err(e) if *label == "ebpf" => eprintln!(
                "xtask: the eBPF mode cannot start ({e:#}); measuring the no-eBPF mode only"
            ),
            Err(e) => return Err(e),
        }
    }
    println!(
        "{:<8} {:>5} {:>7} {:>5} {:>13} {:>13} {:>13} {:>13} {:>5} {:>6}",
        "mode",
        "procs",
        "budget",
        "runs",
        "over p50 ms",
        "over p99 ms",
        "kill→resp p50",
        "kill→resp p99",
        "wall",
        "errors"
    );
    let mut all: Vec<(&str, Vec<f64>, Vec<f64>)> = Vec::new();
    for &procs in &PROCS {
        for &budget in &BUDGETS {
            // The two modes take turns run by run, so machine load hits both alike.
            let mut res: Vec<Case> = vec![Case::default(); started.len()];
            for _ in 0..args.verdict_runs {
                for (i, (_, (_, addr))) in started.iter().enumerate() {
                    match one(addr, procs, budget)? {
                        Ok(Run::Tle(over, resp)) => {
                            res[i].0.push(over);
                            res[i].1.push(resp);
                        }
                        Ok(Run::Wall) => res[i].3 += 1,
                        Err(e) => res[i].2.push(e),
                    }
                }
            }
            for (i, (label, _)) in started.iter().enumerate() {
                let (over, resp, errs, walls) = &mut res[i];
                println!(
                    "{:<8} {:>5} {:>7.1} {:>5} {:>13.1} {:>13.1} {:>13.2} {:>13.2} {:>5} {:>6}",
                    label,
                    procs,
                    budget,
                    over.len(),
                    pct(over, 0.5),
                    pct(over, 0.99),
                    pct(resp, 0.5),
                    pct(resp, 0.99),
                    walls,
                    errs.len()
                );
                if let Some(e) = errs.first() {
                    eprintln!("  first error: {e}");
                }
                match all.iter_mut().find(|(l, _, _)| l == label) {
                    Some((_, o, r)) => {
                        o.extend_from_slice(over);
                        r.extend_from_slice(resp);
                    }
                    None => all.push((label, over.clone(), resp.clone())),
                }
            }
        }
    }
    for (label, over, resp) in &mut all {
        println!(
            "{label:<8} all: overshoot p50 {:.1} ms p99 {:.1} ms; kill→response p50 {:.2} ms p99 {:.2} ms ({} runs)",
            pct(over, 0.5),
            pct(over, 0.99),
            pct(resp, 0.5),
            pct(resp, 0.99),
            over.len()
        );
    }
    println!(
        "target (eBPF mode): overshoot <= 5 ms and kill→response <= 5 ms at p99; errors 0 \
         (no run killed below its budget)"
    );
    Ok(())
}

/// Says before the release build when the eBPF toolchain is missing (the release binary's
/// build.rs then embeds no object and the eBPF mode will not start).
pub(crate) fn prepare() {
    if let Err(e) = ebpf::check() {
        eprintln!("xtask: no eBPF object ({e:#}): the eBPF mode will not start");
    }
}
