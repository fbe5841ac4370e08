//! `cargo xtask bench peers`: peer mode against one runner alone and against CodeRunner's own
//! spreading (a random host per run, no peer mode). Numbers, no assertions. Needs root.
//!
//! Three `runner serve` (release) with 1 slot each; every run is a python3 program that sleeps
//! 200 ms (wall-bound), offered at concurrency 12:
//! 1. one runner alone;
//! 2. peer mode: every run sent to runner A, whose peers are B and C;
//! 3. peer mode again, runner B killed (SIGKILL) halfway: failed runs (target 0);
//! 4. both: a random host per run, every runner a peer of the other two;
//! 5. CodeRunner-style: each run to a random one of the three, no peer mode;
//! 6. the same with one runner killed halfway.
//!
//! Target: peer mode ≥ 2.7× the single runner's throughput, 0 failed runs in 3. A killed
//! runner is restarted on its data directory and stopped with SIGTERM, which removes what the
//! kill left (its cgroups and run directories).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::{JOBE, http_request, wait_ready};
use crate::util;

const KEY: &str = "bench-peer-key";
const SLEEPY: &str = "import time\ntime.sleep(0.2)\nprint('ok')\n";
const CONCURRENCY: usize = 12;

/// A `runner serve`; SIGTERM and wait on drop.
struct Runner {
    child: Option<Child>,
    addr: String,
    config: PathBuf,
    log: PathBuf,
    bin: PathBuf,
}

impl Runner {
    fn start(bin: &Path, dir: &Path, name: &str, uid_base: u32, peer: &str) -> Result<Runner> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        Runner::start_at(bin, dir, name, uid_base, peer, addr)
    }

    fn start_at(
        bin: &Path,
        dir: &Path,
        name: &str,
        uid_base: u32,
        peer: &str,
        addr: String,
    ) -> Result<Runner> {
        let data = dir.join(name);
        std::fs::create_dir_all(&data)?;
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\nslots = 1\nshutdown_grace_secs = 5.0\n[jail]\nuid_base = {uid_base}\n{peer}",
                data.display()
            ),
        )?;
        let mut r = Runner {
            child: None,
            addr,
            config,
            log: dir.join(format!("{name}.log")),
            bin: bin.to_owned(),
        };
        r.spawn()?;
        Ok(r)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut child = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .args(["serve", "--listen", &self.addr])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        wait_ready(&self.addr, &mut child, &self.log)?;
        self.child = Some(child);
        Ok(())
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// SIGKILL now; `recover` restarts it on its data directory and stops it cleanly.
    fn kill(&mut self) {
        self.signal("-KILL");
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    fn recover(&mut self) -> Result<()> {
        self.spawn()?;
        self.stop();
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::util::stop_child(&mut c, Duration::from_secs(20));
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop();
    }
}

fn peer_section(enabled: bool, peers: &[&str]) -> String {
    let mut s = format!(
        "[peer]\nenabled = {enabled}\nkey = \"{KEY}\"\nprobe_interval_ms = 200\nprobe_timeout_ms = 200\nrise = 2\nfall = 3\ncooldown_ms = 2000\n"
    );
    for p in peers {
        s.push_str(&format!("[[peer.peers]]\nurl = \"http://{p}\"\n"));
    }
    s
}

struct Outcome {
    runs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: usize,
    first_failure: Option<String>,
}

/// `total` runs over `CONCURRENCY` threads; `target(i)` picks the address of run `i`;
/// `halfway` is called once when half the runs have started.
fn load(
    total: usize,
    target: &(dyn Fn(usize) -> String + Sync),
    halfway: &mut (dyn FnMut() + Send),
) -> Outcome {
    let next = AtomicUsize::new(0);
    let lat = Mutex::new(Vec::new());
    let fails = Mutex::new(Vec::new());
    let half = Mutex::new(Some(halfway));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CONCURRENCY {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= total {
                        return;
                    }
                    if i == total / 2
                        && let Some(f) = half.lock().expect("no panics").take()
                    {
                        f();
                    }
                    let body = serde_json::json!({"run_spec": {
                        "language_id": "python3", "sourcecode": SLEEPY,
                        "parameters": {"cputime": 5}}})
                    .to_string();
                    let t = Instant::now();
                    let r = http_request(&target(i), "POST", &format!("{JOBE}/runs"), Some(&body));
                    let ok = match &r {
                        Ok((200, b)) => {
                            let v: serde_json::Value =
                                serde_json::from_str(b).unwrap_or(serde_json::Value::Null);
                            v["outcome"] == 15 && v["stdout"] == "ok\n"
                        }
                        _ => false,
                    };
                    lat.lock().expect("no panics").push(t.elapsed());
                    if !ok {
                        // `{:#}`: the error chain on one line (no backtrace).
                        let why = match &r {
                            Ok((status, body)) => format!("HTTP {status}: {body}"),
                            Err(e) => format!("{e:#}"),
                        };
                        fails.lock().expect("no panics").push(why);
                    }
                }
            });
        }
    });
    let wall = start.elapsed();
    let ms = util::sorted_ms(&lat.into_inner().expect("no panics"));
    let pct = |p: f64| util::percentile(&ms, p);
    let fails = fails.into_inner().expect("no panics");
    Outcome {
        runs_per_s: total as f64 / wall.as_secs_f64(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        failed: fails.len(),
        first_failure: fails.first().cloned(),
    }
}

/// A cheap deterministic spread for "random host per run" (CodeRunner uses mt_rand per job).
fn pick(i: usize, n: usize) -> usize {
    let mut z = (i as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) % n as u64) as usize
}

pub(crate) fn run(runner: &Path, runs: usize) -> Result<()> {
    if !util::is_root() {
        bail!("bench peers needs root (real jails)");
    }
    let dir = tempfile::Builder::new()
        .prefix("runner-bench-peers-")
        .tempdir()?;
    // RUNNER_BENCH_KEEP=1 keeps the directory with the runners' configs and logs.
    let (d, _remove) = if std::env::var_os("RUNNER_BENCH_KEEP").is_some() {
        (dir.keep(), None)
    } else {
        (dir.path().to_owned(), Some(dir))
    };
    let d = d.as_path();
    let offset = util::uid_offset();
    let uid = |i: u32| 1_996_000 + offset + i * 16;
    let bin = runner;
    let mut rows: Vec<(String, Outcome)> = Vec::new();
    let none = &mut || {};

    eprintln!(
        "xtask: bench peers: {runs} runs per scenario, concurrency {CONCURRENCY}, logs in {}",
        d.display()
    );
    {
        let one = Runner::start(bin, d, "single", uid(0), "")?;
        let _ = load(CONCURRENCY, &|_| one.addr.clone(), none); // warm-up
        rows.push((
            "one runner alone".into(),
            load(runs, &|_| one.addr.clone(), none),
        ));
    }
    {
        let mut b = Runner::start(bin, d, "b", uid(1), &peer_section(false, &[]))?;
        let c = Runner::start(bin, d, "c", uid(2), &peer_section(false, &[]))?;
        let a = Runner::start(
            bin,
            d,
            "a",
            uid(3),
            &peer_section(true, &[&b.addr, &c.addr]),
        )?;
        std::thread::sleep(Duration::from_millis(1000)); // probes admit B and C
        let _ = load(CONCURRENCY, &|_| a.addr.clone(), none);
        rows.push((
            "peer mode (all runs to A)".into(),
            load(runs, &|_| a.addr.clone(), none),
        ));
        let mut kill = || b.kill();
        rows.push((
            "peer mode, B killed halfway".into(),
            load(runs, &|_| a.addr.clone(), &mut kill),
        ));
        b.recover()?;
    }
    {
        // The recommended set-up: CodeRunner's `;` list names all three, each a peer of the others.
        let addrs: Vec<String> = (0..3)
            .map(|_| -> Result<String> {
                let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
                Ok(format!("127.0.0.1:{port}"))
            })
            .collect::<Result<_>>()?;
        let runners: Vec<Runner> = (0..3)
            .map(|i| {
                let others: Vec<&str> = (0..3)
                    .filter(|j| *j != i)
                    .map(|j| addrs[j].as_str())
                    .collect();
                Runner::start_at(
                    bin,
                    d,
                    &format!("pm{i}"),
                    uid(7 + i as u32),
                    &peer_section(true, &others),
                    addrs[i].clone(),
                )
            })
            .collect::<Result<_>>()?;
        std::thread::sleep(Duration::from_millis(1000));
        let _ = load(CONCURRENCY, &|i| addrs[pick(i, 3)].clone(), none);
        rows.push((
            "peer mode + random host (all peers)".into(),
            load(runs, &|i| addrs[pick(i + 7, 3)].clone(), none),
        ));
        drop(runners);
    }
    {
        let addrs: Vec<Runner> = (0..3)
            .map(|i| Runner::start(bin, d, &format!("cr{i}"), uid(4 + i), ""))
            .collect::<Result<_>>()?;
        let list: Vec<String> = addrs.iter().map(|r| r.addr.clone()).collect();
        let _ = load(CONCURRENCY, &|i| list[pick(i, 3)].clone(), none);
        rows.push((
            "CodeRunner-style (random host)".into(),
            load(runs, &|i| list[pick(i + 7, 3)].clone(), none),
        ));
        let mut addrs = addrs;
        let victim = Mutex::new(addrs.pop().expect("three runners"));
        let mut kill = || victim.lock().expect("no panics").kill();
        rows.push((
            "CodeRunner-style, one killed halfway".into(),
            load(runs, &|i| list[pick(i + 99, 3)].clone(), &mut kill),
        ));
        victim.into_inner().expect("no panics").recover()?;
    }

    let base = rows[0].1.runs_per_s;
    println!(
        "{:<38} {:>8} {:>7} {:>8} {:>8} {:>7}",
        "scenario (3 × 1 slot, python3 sleep 200 ms, c=12)",
        "runs/s",
        "× one",
        "p50 ms",
        "p99 ms",
        "failed"
    );
    for (name, o) in &rows {
        println!(
            "{name:<38} {:>8.2} {:>7.2} {:>8.0} {:>8.0} {:>7}",
            o.runs_per_s,
            o.runs_per_s / base,
            o.p50_ms,
            o.p99_ms,
            o.failed
        );
        if let Some(f) = &o.first_failure {
            eprintln!("xtask: {name}: first failure: {f}");
        }
    }
    println!("targets: peer mode >= 2.7x one runner alone; 0 failed runs with a peer killed");
    Ok(())
}
