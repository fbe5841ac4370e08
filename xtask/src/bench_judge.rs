//! `cargo xtask bench judge` (only when named; root): judge mode's throughput against the plain
//! way to do the same work (docs/judge.md).
//!
//! `runner serve` (release) with a private data directory; two problems of 20 small cases each
//! (`a b` → `a+b`), one judged in C, one in python3. At concurrency 1 and = CPUs, `POST
//! /judge/v1/submissions?wait=true` (each must be AC; each a new source, so the compile cache
//! never answers) gives submissions/s and cases/s. The floor,
//! measured in the same run at the same concurrency, in turns with it (`measure_pair`): compile once, then the 20 runs started
//! directly with the argv and environment of the shipped profile (`runner plan`; stdin from the
//! case file, output compared), no jail, no server, no syntax-check process. Target: ratio >= 0.8
//! at concurrency = CPUs; the per-case overhead is what the judge adds per case, in ms of wall time
//! per submission slot. `--runs`, `--secs` and `--warmup` apply as for `bench http` (each
//! submission is 20 cases).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::bench::{
    BenchArgs, PlanStep, http_request, measure_pair, run_step, shipped_steps, wait_ready,
};
use crate::util;

const CASES: usize = 20;
const C_SRC: &str = "#include <stdio.h>\nint main(void){long a,b;if(scanf(\"%ld %ld\",&a,&b)!=2)return 1;printf(\"%ld\\n\",a+b);return 0;}\n";
const PY_SRC: &str = "a, b = map(int, input().split())\nprint(a + b)\n";

/// A language of the bench: its id and an `a b` → `a+b` solution.
#[derive(Clone, Copy)]
struct Lang {
    id: &'static str,
    source: &'static str,
}

const LANGS: [Lang; 2] = [
    Lang {
        id: "c",
        source: C_SRC,
    },
    Lang {
        id: "python3",
        source: PY_SRC,
    },
];

/// The problem folder: `i.in` = `i i+1`, `i.out` = `2i+1`.
fn write_problem(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for i in 1..=CASES {
        std::fs::write(dir.join(format!("{i}.in")), format!("{i} {}\n", i + 1))?;
        std::fs::write(dir.join(format!("{i}.out")), format!("{}\n", 2 * i + 1))?;
    }
    Ok(())
}

pub(crate) fn run(runner: &Path, args: &BenchArgs) -> Result<()> {
    if !util::is_root() {
        bail!("bench judge needs root (it runs real jails)");
    }
    let tmp = tempfile::tempdir().context("temp dir")?;
    let problem = tmp.path().join("problem");
    write_problem(&problem)?;
    // A plain tar of ASCII files is valid UTF-8, which the bench's HTTP client sends.
    let tar = Command::new("tar")
        .args(["-cf", "-", "-C"])
        .arg(&problem)
        .arg(".")
        .output()
        .context("tar")?;
    let tar = String::from_utf8(tar.stdout).context("the tar is not UTF-8")?;

    let data_dir = tmp.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = tmp.path().join("runner.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[jail]\nuid_base = {}\n",
            data_dir.display(),
            1_990_700 + util::uid_offset()
        ),
    )?;
    let log_path = util::target_dir()?.join("bench-judge-runner.log");
    let log = std::fs::File::create(&log_path)?;
    eprintln!(
        "xtask: starting {} serve --listen {addr} (log: {})",
        runner.display(),
        log_path.display()
    );
    let child = Command::new(runner)
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen", &addr])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", runner.display()))?;
    let mut daemon = Daemon(child);
    wait_ready(&addr, &mut daemon.0, &log_path)?;
    let (status, body) = http_request(
        &addr,
        "PUT",
        "/judge/v1/problems/bench/testsets/v1",
        Some(&tar),
    )?;
    if status != 201 && status != 200 {
        bail!("uploading the test set: HTTP {status}: {body}");
    }

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load before: {}", load.trim());
    println!(
        "{:<8} {:>4} {:>8} {:>8} {:>11} {:>6} {:>14} {:>8}",
        "lang", "conc", "subs/s", "cases/s", "floor subs/s", "ratio", "overhead ms/case", "errors"
    );
    let floor_dir = tmp.path().join("floor");
    std::fs::create_dir_all(&floor_dir)?;
    for lang in LANGS {
        // The floor runs what a job of the language runs (the shipped profile's argv and
        // environment), without the deferred syntax check, which is runner's own overhead.
        let (files, steps) = shipped_steps(runner, lang.id, lang.source, tmp.path())?;
        let plan = (files.as_slice(), steps.as_slice());
        for conc in [1, cpus] {
            let pid = daemon.0.id();
            let (served, floor) = measure_pair(
                args,
                conc,
                pid,
                |i, _| submit(&addr, lang, i),
                |i, _| floor(&floor_dir, &problem, lang, plan, i),
            )?;
            // Wall time one submission takes per concurrent slot, judge minus floor, per case.
            let per_case_ms = (conc as f64 / served.runs_per_s - conc as f64 / floor.runs_per_s)
                * 1000.0
                / CASES as f64;
            println!(
                "{:<8} {:>4} {:>8.2} {:>8.1} {:>11.2} {:>6.2} {:>14.1} {:>8}",
                lang.id,
                conc,
                served.runs_per_s,
                served.runs_per_s * CASES as f64,
                floor.runs_per_s,
                served.runs_per_s / floor.runs_per_s,
                per_case_ms,
                served.errors + floor.errors
            );
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load after: {}", load.trim());
    println!("target: ratio >= 0.8 at concurrency = CPUs ({cpus})");
    drop(daemon);
    Ok(())
}

/// The solution with a comment naming submission `i`: every submission is new source, as on a
/// judge, so the compile cache (docs/performance.md, §7) does not stand in for the compile the
/// floor makes.
fn unique_source(lang: Lang, i: usize) -> String {
    match lang.id {
        "c" => format!("{}/* submission {i} */\n", lang.source),
        _ => format!("{}# submission {i}\n", lang.source),
    }
}

/// One submission with `?wait=true`; `Some(msg)` unless it is AC on all cases.
fn submit(addr: &str, lang: Lang, i: usize) -> Result<Option<String>> {
    let body = serde_json::json!({
        "problem": "bench", "version": "v1", "language_id": lang.id,
        "sourcecode": unique_source(lang, i),
    })
    .to_string();
    let (status, resp) =
        http_request(addr, "POST", "/judge/v1/submissions?wait=true", Some(&body))?;
    let v: serde_json::Value = serde_json::from_str(&resp).unwrap_or_default();
    if status != 200 || v["verdict"] != "AC" || v["summary"]["passed"] != CASES {
        return Ok(Some(format!("{} HTTP {status}: {resp}", lang.id)));
    }
    Ok(None)
}

/// The floor: the plan's compile step (if any) once in a fresh directory, then its run step for
/// each of the 20 cases, started directly with the case's input, each output compared.
fn floor(
    base: &Path,
    problem: &Path,
    lang: Lang,
    (files, steps): (&[String], &[PlanStep]),
    i: usize,
) -> Result<Option<String>> {
    let dir = base.join(format!("{}-{i}", lang.id));
    std::fs::create_dir(&dir)?;
    for name in files {
        std::fs::write(dir.join(name), unique_source(lang, i))?;
    }
    let (run, compile) = steps.split_last().context("a plan without a run step")?;
    for step in compile {
        let c = run_step(step, &dir, Stdio::null())?;
        if !c.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Ok(Some(format!(
                "floor compile: {}",
                String::from_utf8_lossy(&c.stderr)
            )));
        }
    }
    let mut wrong = None;
    for case in 1..=CASES {
        let input = std::fs::File::open(problem.join(format!("{case}.in")))?;
        let out = run_step(run, &dir, Stdio::from(input))?;
        let expected = std::fs::read(problem.join(format!("{case}.out")))?;
        if !out.status.success() || out.stdout != expected {
            wrong = Some(format!("floor {} case {case}: {}", lang.id, out.status));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(wrong)
}

/// The daemon under test, stopped (SIGTERM, then SIGKILL after 20 s) when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        util::stop_child(&mut self.0, Duration::from_secs(20));
    }
}
