//! `cargo xtask bench queue` (it builds the release daemon and runs this with
//! `cargo bench -p runner-tests --bench queue`): queue mode, numbers and no assertions. Root, a
//! RabbitMQ broker on 127.0.0.1:5672 (xtask starts it), a vhost of its own.
//!
//! `runner serve` (release) processes with 1 slot each, queue mode on; every submission is a
//! python3 program that sleeps 0.2 s (wall-bound) against a one-case test set:
//! 1. floor: the same program started directly (`python3 prog.py < input`), one at a time;
//! 2. one runner: N submissions, from the first publish to the last result;
//! 3. three runners consuming the same queue: the same (target: ≥ 2.7 × the one runner);
//! 4. three runners, one SIGKILLed when half the results are in: results of all N arrive
//!    (0 lost), duplicates counted;
//! 5. three runners, one stopped with SIGTERM (`on_stop = "finish"`) halfway: 0 lost,
//!    0 duplicates.

#![allow(
    unused_crate_dependencies,
    reason = "a bench target uses a subset of the crate's dependencies"
)]
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lapin::BasicProperties;
use lapin::types::{FieldTable, ShortString};
use runner_tests::broker::{Client, Reader, Vhost, message_id};
use runner_tests::daemon::{BinDaemon, request, unique};
use runner_tests::queued::{Testset, serve_queued};

const SLEEP_SECS: f64 = 0.2;
const PROGRAM: &str =
    "import time\ntime.sleep(0.2)\na, b = map(int, input().split())\nprint(a + b)\n";
const INPUT: &str = "1 2\n";
const TARGET_RATIO: f64 = 2.7;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Problem `sum` v1: one case, `INPUT` → `3`.
const SUM: Testset<'static> = Testset {
    problem: "sum",
    version: "v1",
    cases: &[("1", INPUT, "3\n")],
};

/// A `runner serve` in queue mode with 1 slot, the test set uploaded, connected.
async fn runner(url: &str, name: &str) -> BinDaemon {
    let (dir, uid_base) = unique();
    let dir = dir.with_file_name(format!(
        "{}-{name}",
        dir.file_name().unwrap().to_string_lossy()
    ));
    serve_queued(
        &dir,
        uid_base,
        1,
        url,
        "on_stop = \"finish\"\nreconnect_min_secs = 0.1",
        &[SUM],
    )
    .await
}

/// Publishes `n` submissions `<tag>-<i>`.
async fn publish(c: &Client, tag: &str, n: usize) {
    let props = BasicProperties::default().with_content_type(ShortString::from("application/json"));
    for i in 0..n {
        let body = serde_json::json!({"id": format!("{tag}-{i}"), "problem": "sum",
            "version": "v1", "language_id": "python3", "sourcecode": PROGRAM});
        c.submit("python3", body.to_string().as_bytes(), props.clone())
            .await;
    }
}

/// Reads results until every id `<tag>-0..n` has one; `tick` is called with the number of ids
/// in so far after every message or second. Returns (elapsed from `start`, results by id).
async fn collect(
    results: &mut Reader,
    tag: &str,
    n: usize,
    start: Instant,
    mut tick: impl FnMut(usize),
) -> (Duration, BTreeMap<String, usize>) {
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60 + (n as u64) * 2);
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "{tag}: only {} of {n} results arrived",
            got.len()
        );
        if let Some(d) = results.next(Duration::from_secs(1)).await {
            let id = message_id(&d);
            let v: serde_json::Value = serde_json::from_slice(&d.data).expect("JSON");
            assert_eq!(v["verdict"], "AC", "{id}: {v}");
            if id.starts_with(&format!("{tag}-")) {
                *got.entry(id).or_default() += 1;
            }
        }
        tick(got.len());
    }
    let elapsed = start.elapsed();
    // Late duplicates (a redelivered submission judged again after its first result).
    while let Some(d) = results.next(Duration::from_secs(3)).await {
        let id = message_id(&d);
        if id.starts_with(&format!("{tag}-")) {
            *got.entry(id).or_default() += 1;
        }
    }
    (elapsed, got)
}

/// Deliveries a runner took so far (`runner_amqp_deliveries_total`).
async fn deliveries(d: &BinDaemon) -> u64 {
    let m = request(d.addr, "GET", "/metrics", None)
        .await
        .expect("metrics")
        .text();
    m.lines()
        .find_map(|l| l.strip_prefix("runner_amqp_deliveries_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn floor(n: usize) -> Duration {
    let dir = std::env::temp_dir().join(format!("runner-bench-queue-floor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prog = dir.join("prog.py");
    std::fs::write(&prog, PROGRAM).unwrap();
    let input = dir.join("in");
    std::fs::write(&input, INPUT).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        let out = Command::new("/usr/bin/python3")
            .arg(&prog)
            .stdin(std::fs::File::open(&input).unwrap())
            .stderr(Stdio::null())
            .output()
            .expect("python3");
        assert_eq!(out.stdout, b"3\n");
    }
    let _ = std::fs::remove_dir_all(&dir);
    t.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let n = arg("--submissions", 300);
    let floor_n = arg("--floor-runs", 50);
    println!(
        "bench queue: {n} submissions of a python3 program that sleeps {SLEEP_SECS} s; load {}",
        loadavg()
    );
    let per_floor = floor(floor_n).as_secs_f64() / floor_n as f64;
    println!(
        "floor (direct start, one at a time, {floor_n} runs): {:.1} ms per run → {:.1} s for {n}",
        per_floor * 1e3,
        per_floor * n as f64
    );
    let vh = Vhost::new("bench");
    let c = Client::connect(&vh.url()).await;
    c.declare_exchanges().await;
    c.bind_queue("results", "runner.results", "#", FieldTable::default())
        .await;
    let mut results = c.consume("results").await;

    // 2. One runner.
    let r1 = runner(&vh.url(), "r1").await;
    let t = Instant::now();
    publish(&c, "one", n).await;
    let (t1, got) = collect(&mut results, "one", n, t, |_| {}).await;
    let one_dups: usize = got.values().map(|k| k - 1).sum();
    println!(
        "1 runner × 1 slot:  {n} results in {:.1} s ({:.2}/s, {:.0} ms per submission; floor {:.0} ms; duplicates {one_dups})",
        t1.as_secs_f64(),
        n as f64 / t1.as_secs_f64(),
        t1.as_secs_f64() * 1e3 / n as f64,
        per_floor * 1e3
    );

    // 3. Three runners on the same queue.
    let mut r2 = runner(&vh.url(), "r2").await;
    let r3 = runner(&vh.url(), "r3").await;
    let before = [
        deliveries(&r1).await,
        deliveries(&r2).await,
        deliveries(&r3).await,
    ];
    let t = Instant::now();
    publish(&c, "three", n).await;
    let (t3, got) = collect(&mut results, "three", n, t, |_| {}).await;
    let share = [
        deliveries(&r1).await - before[0],
        deliveries(&r2).await - before[1],
        deliveries(&r3).await - before[2],
    ];
    let three_dups: usize = got.values().map(|k| k - 1).sum();
    let ratio = t1.as_secs_f64() / t3.as_secs_f64();
    println!(
        "3 runners × 1 slot: {n} results in {:.1} s ({:.2}/s); ratio to 1 runner {ratio:.2} (target ≥ {TARGET_RATIO}); duplicates {three_dups}; deliveries per runner {share:?}",
        t3.as_secs_f64(),
        n as f64 / t3.as_secs_f64()
    );

    // 4. One of three SIGKILLed halfway.
    let t = Instant::now();
    publish(&c, "kill", n).await;
    let mut killed_at = None;
    let (tk, got) = collect(&mut results, "kill", n, t, |k| {
        if k >= n / 2 && killed_at.is_none() {
            r2.signal("-KILL");
            killed_at = Some(t.elapsed());
        }
    })
    .await;
    let _ = r2.wait(Duration::from_secs(10)).await;
    let lost = n - got.len();
    let kill_dups: usize = got.values().map(|k| k - 1).sum();
    println!(
        "3 runners, one SIGKILLed at {:.1} s: {}/{n} results ({lost} lost), {kill_dups} duplicate(s), {:.1} s",
        killed_at.unwrap_or_default().as_secs_f64(),
        got.len(),
        tk.as_secs_f64()
    );

    // 5. One of three stopped with SIGTERM (on_stop = "finish") halfway.
    let mut r4 = runner(&vh.url(), "r4").await;
    let t = Instant::now();
    publish(&c, "finish", n).await;
    let mut stopped: Option<Instant> = None;
    let mut exit_after = None;
    let (tf, got) = collect(&mut results, "finish", n, t, |k| {
        if k >= n / 2 && stopped.is_none() {
            r4.signal("-TERM");
            stopped = Some(Instant::now());
        }
        if let (Some(s), None) = (stopped, exit_after)
            && let Ok(Some(_)) = r4.child.try_wait()
        {
            exit_after = Some(s.elapsed());
        }
    })
    .await;
    let st = r4.wait(Duration::from_secs(60)).await;
    let exit_after = exit_after.or_else(|| stopped.map(|s| s.elapsed()));
    let lost = n - got.len();
    let finish_dups: usize = got.values().map(|k| k - 1).sum();
    println!(
        "3 runners, one stopped (finish) halfway: {}/{n} results ({lost} lost), {finish_dups} duplicate(s), {:.1} s; the stopped runner exited with {st}, {:.1} s after SIGTERM",
        got.len(),
        tf.as_secs_f64(),
        exit_after.unwrap_or_default().as_secs_f64()
    );
    println!("load at the end {}", loadavg());

    // Clean up: the killed runner's leftovers are removed by a restart on its data directory and
    // a SIGTERM (as after a crash).
    drop(r1);
    drop(r3);
    drop(r4);
    let r2_dir = r2.data_dir.clone();
    let r2_uids = r2.uids.clone();
    let mut again = BinDaemon::start_with(&r2_dir, r2_uids.start, 1, "", "").await;
    again.signal("-TERM");
    let _ = again.wait(Duration::from_secs(30)).await;
    drop(again);
    drop(r2);
    drop(results);
    drop(c);
    drop(vh);
}
