//! Tier: privileged (docs/testing.md). Soak (root). Mixed runs through the HTTP API of the
//! `runner` binary at concurrency 2 × slots: ok, compile error, runtime error, time limit, memory
//! limit and an illegal syscall, each with a per-run token so that a result given to the wrong
//! request is caught. Asserts zero lost or wrong results, flat daemon RSS, and at the end no
//! leaked cgroup, run directory, jailed process or daemon descriptor; then SIGTERM must stop it
//! cleanly.
//!
//! In the suite: `SOAK_RUNS` (default 300). `cargo xtask soak [--runs N]` runs this test in
//! release with 10 000 runs (docs/robustness.md).

#![allow(
    unused_crate_dependencies,
    reason = "integration test crate uses a subset"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use runner_tests::daemon::*;
use runner_tests::privileged;
use serde_json::{Value, json};

/// RSS may grow this much from after the warm-up to the end (KiB). A leak of 1 KiB per run
/// crosses it within 10 000 runs; allocator noise stays well below it.
const RSS_GROWTH_MAX_KIB: u64 = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Ok,
    CompileError,
    RuntimeError,
    TimeLimit,
    MemoryLimit,
    IllegalSyscall,
}

const KINDS: [Kind; 6] = [
    Kind::Ok,
    Kind::CompileError,
    Kind::RuntimeError,
    Kind::TimeLimit,
    Kind::MemoryLimit,
    Kind::IllegalSyscall,
];

impl Kind {
    fn spec(self, n: usize) -> Value {
        let (src, params) = match self {
            Kind::Ok => (format!("print({n})\n"), json!({})),
            Kind::CompileError => (format!("print({n}\n"), json!({})),
            Kind::RuntimeError => (
                format!("import sys\nprint({n})\nsys.exit('e{n}')\n"),
                json!({}),
            ),
            Kind::TimeLimit => (
                format!("print({n}, flush=True)\nwhile True:\n    pass\n"),
                json!({"cputime": 0.2}),
            ),
            Kind::MemoryLimit => (
                format!("print({n}, flush=True)\nx = b'x' * (300 << 20)\nprint('no')\n"),
                json!({"memorylimit": 64}),
            ),
            Kind::IllegalSyscall => (
                format!(
                    "import ctypes\nprint({n}, flush=True)\nctypes.CDLL(None).ptrace(0, 0, 0, 0)\nprint('after')\n"
                ),
                json!({}),
            ),
        };
        json!({"language_id": "python3", "sourcecode": src, "sourcefilename": "__tester__.python3",
               "input": "", "file_list": [], "parameters": params})
    }

    /// `Err` says what is wrong with the answer to run `n`.
    fn check(self, n: usize, r: &Value) -> Result<(), String> {
        let line = format!("{n}\n");
        let (outcome, stdout, stderr) = match self {
            Kind::Ok => (15, line.as_str(), Some(String::new())),
            Kind::CompileError => (11, "", Some(String::new())),
            Kind::RuntimeError => (12, line.as_str(), Some(format!("e{n}\n"))),
            Kind::TimeLimit => (13, line.as_str(), Some(String::new())),
            Kind::MemoryLimit => (17, line.as_str(), None),
            Kind::IllegalSyscall => (
                19,
                line.as_str(),
                Some("Illegal system call: ptrace\n".to_owned()),
            ),
        };
        let ok = r["outcome"] == outcome
            && r["stdout"] == stdout
            && stderr.is_none_or(|e| r["stderr"] == e)
            && (self != Kind::CompileError || r["cmpinfo"].as_str().is_some_and(|c| !c.is_empty()));
        if ok {
            Ok(())
        } else {
            Err(format!("run {n} ({self:?}): {r}"))
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Every directory in the daemon's cgroup subtrees (slots and any job cgroup below them).
fn cgroup_dirs(pid: u32) -> usize {
    fn count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| 1 + count(&e.path()))
                .sum()
        })
    }
    own_cgroups(pid).iter().map(|p| 1 + count(p)).sum()
}

#[derive(Default)]
struct Tally {
    by_kind: BTreeMap<Kind, usize>,
    wrong: Vec<String>,
    lost: Vec<String>,
}

/// Runs `range` at `conc` requests at a time; results go into `tally`.
async fn drive(
    addr: std::net::SocketAddr,
    range: std::ops::Range<usize>,
    conc: usize,
    tally: &Arc<Mutex<Tally>>,
) {
    let next = Arc::new(AtomicUsize::new(range.start));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conc {
        let next = next.clone();
        let tally = tally.clone();
        let end = range.end;
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    return;
                }
                let kind = KINDS[n % KINDS.len()];
                let body = json!({ "run_spec": kind.spec(n) }).to_string();
                let r = request(addr, "POST", &format!("{BASE}/runs"), Some(body.as_bytes())).await;
                let mut t = tally.lock().unwrap();
                match r {
                    Ok(r) if r.status == 200 => match kind.check(n, &r.json()) {
                        Ok(()) => *t.by_kind.entry(kind).or_default() += 1,
                        Err(e) => t.wrong.push(e),
                    },
                    Ok(r) => t
                        .wrong
                        .push(format!("run {n}: HTTP {} {}", r.status, r.text())),
                    Err(e) => t.lost.push(format!("run {n}: {e}")),
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("soak client task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_soak_mixed_runs() {
    if !privileged() {
        return;
    }
    let runs = env_usize("SOAK_RUNS", 300).max(KINDS.len() * 2);
    let slots = env_usize(
        "SOAK_SLOTS",
        std::thread::available_parallelism().map_or(2, |n| n.get()),
    );
    let conc = 2 * slots;
    let (dir, uid_base) = unique();
    let mut d = BinDaemon::start(&dir, uid_base, slots as u32).await;
    let pid = d.pid();
    let cgroups_idle = cgroup_dirs(pid);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();

    // Warm-up (allocator arenas, thread pools, page cache), then the baselines.
    let warmup = (runs / 10).clamp(KINDS.len(), 200);
    drive(d.addr, 0..warmup, conc, &tally).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss_base, fds_base) = (rss_kib(pid), fd_count(pid));
    let mut rss_max = rss_base;
    let step = ((runs - warmup) / 10).max(1);
    let mut done = warmup;
    while done < runs {
        let upto = (done + step).min(runs);
        drive(d.addr, done..upto, conc, &tally).await;
        done = upto;
        let rss = rss_kib(pid);
        rss_max = rss_max.max(rss);
        eprintln!(
            "soak: {done}/{runs} runs, {:.0} s, daemon RSS {rss} KiB, fds {}",
            start.elapsed().as_secs_f64(),
            fd_count(pid)
        );
    }
    let secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss_end, fds_end) = (rss_kib(pid), fd_count(pid));
    let tally = Arc::try_unwrap(tally)
        .ok()
        .expect("client tasks are done")
        .into_inner()
        .unwrap();
    let ok: usize = tally.by_kind.values().sum();
    eprintln!(
        "soak: {runs} runs in {secs:.0} s ({:.1} runs/s) at concurrency {conc} on {slots} slots; \
         correct {ok}, wrong {}, lost {}; by kind {:?}",
        runs as f64 / secs,
        tally.wrong.len(),
        tally.lost.len(),
        tally.by_kind
    );
    eprintln!(
        "soak: daemon RSS {rss_base} → {rss_end} KiB (max {rss_max}, bound +{RSS_GROWTH_MAX_KIB}); \
         fds {fds_base} → {fds_end}; cgroup dirs {cgroups_idle} → {}",
        cgroup_dirs(pid)
    );
    let show = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join("\n");
    assert!(
        tally.lost.is_empty(),
        "lost results:\n{}",
        show(&tally.lost)
    );
    assert!(
        tally.wrong.is_empty(),
        "wrong results:\n{}",
        show(&tally.wrong)
    );
    assert_eq!(ok, runs);
    assert!(
        rss_end <= rss_base + RSS_GROWTH_MAX_KIB,
        "daemon RSS grew from {rss_base} to {rss_end} KiB"
    );
    assert!(fds_end <= fds_base, "daemon fds {fds_base} → {fds_end}");
    // Nothing of a run is left while the daemon idles.
    assert_eq!(cgroup_dirs(pid), cgroups_idle, "job cgroups left");
    let left = run_dirs_left(&dir.join("runs"), Duration::from_secs(5));
    assert!(left.is_empty(), "run directories left: {left:?}");
    assert_no_jailed(d.uids.clone(), Duration::from_secs(2));
    // And a clean stop.
    d.signal("-TERM");
    let st = d.wait(Duration::from_secs(30)).await;
    assert!(st.success(), "runner exited with {st}:\n{}", d.log_text());
    assert!(own_cgroups(pid).is_empty(), "cgroups left after stop");
    let _ = std::fs::remove_dir_all(&dir);
}
