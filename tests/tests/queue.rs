//! Tier: privileged + broker (docs/testing.md). Queue mode against a real RabbitMQ broker (a
//! vhost of its own per test; a node of its own for the restart and broker-down tests) with real
//! runners: the real judge engine and real jails, python3 and php programs. Routing by
//! language, the flow-control window, ack only after the broker confirmed the result, poison
//! messages, a broker restart mid-load, a broker down at start, both stop policies and the drain
//! timeout (in-process, and by SIGTERM to `runner serve`), a stop while the judge has not started
//! a delivery, SIGKILL, the same id twice, and the Python publisher of docs/queue.md.
//!
//! One test, `test_queue_requeues_a_language_that_went_away`, uses a fake judge instead of the
//! engine: it is about the broker alone (requeue, the quorum queue's delivery limit, dead
//! letters), and no real runner loses a language while it runs.

#![allow(
    unused_crate_dependencies,
    reason = "integration test crate uses a subset"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use runner::judge::Verdict;
use runner::judge::{CompileResult, Event, Status, SubmissionRequest, SubmissionResult, Summary};
use runner::metrics::QueueCounters;
use runner::queue::topology::judge_queue_arguments;
use runner::queue::{BoxFuture, Judger, Judging, Names, OnStop, QueueMode, Refusal};
use runner_tests::broker::{self, Client, Node, Reader, Vhost, args, json, message_id};
use runner_tests::daemon::{assert_no_jailed, free_port, request, unique};
use runner_tests::queued::{QueueRunner, SUM_TESTSET, queue_config, serve_queued};
use serde_json::{Value, json};

const TEST_TIMEOUT: Duration = Duration::from_secs(240);

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test took longer than its bound");
}

const PY_SUM: &str = "a, b = map(int, input().split())\nprint(a + b)\n";
const PHP_SUM: &str = "<?php\n[$a, $b] = array_map('intval', explode(' ', trim(fgets(STDIN))));\necho $a + $b, \"\\n\";\n";

/// A python3 sum that sleeps `secs` first (wall-bound, not CPU-bound).
fn py_sleepy(secs: f64) -> String {
    format!("import time\ntime.sleep({secs})\n{PY_SUM}")
}

fn php_sleepy(secs: f64) -> String {
    let us = (secs * 1e6) as u64;
    PHP_SUM.replacen("<?php\n", &format!("<?php\nusleep({us});\n"), 1)
}

/// A submission of problem `sum` v1.
fn submission(id: &str, lang: &str, source: &str) -> Vec<u8> {
    json!({"id": id, "problem": "sum", "version": "v1", "language_id": lang,
           "sourcecode": source, "limits": {"cputime": 10}})
    .to_string()
    .into_bytes()
}

fn props() -> BasicProperties {
    BasicProperties::default().with_content_type(ShortString::from("application/json"))
}

/// A test client with every exchange declared and a `results` queue bound to all results.
async fn client_with_results(url: &str, results_args: FieldTable) -> (Client, Reader) {
    let c = Client::connect(url).await;
    c.declare_exchanges().await;
    c.bind_queue("results", "runner.results", "#", results_args)
        .await;
    let r = c.consume("results").await;
    (c, r)
}

/// Results by id (the verdict of each; ids counted to see duplicates).
fn verdicts(ds: &[lapin::message::Delivery]) -> BTreeMap<String, (String, usize)> {
    let mut m: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for d in ds {
        let v = json(d);
        assert_eq!(message_id(d), v["id"].as_str().unwrap(), "message_id = id");
        assert_eq!(
            d.properties.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(
            d.properties.delivery_mode(),
            &Some(2),
            "results are persistent"
        );
        let e = m
            .entry(v["id"].as_str().unwrap().to_owned())
            .or_insert((String::new(), 0));
        e.0 = v["verdict"].as_str().unwrap_or("").to_owned();
        e.1 += 1;
    }
    m
}

/// A profile directory whose `php` cannot start (its version command does not exist): a
/// runner started with it does not serve php.
struct NoPhp(PathBuf);

impl NoPhp {
    fn new() -> NoPhp {
        let dir = std::env::temp_dir().join(format!("runner-queue-nophp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let php = include_str!("../../profiles/php.toml").replacen(
            "version_command = [\"/usr/bin/php\", \"--version\"]",
            "version_command = [\"/nonexistent/php\", \"--version\"]",
            1,
        );
        assert!(php.contains("/nonexistent/php"));
        std::fs::write(dir.join("php.toml"), php).unwrap();
        NoPhp(dir)
    }
}

impl Drop for NoPhp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A runner without php never receives php: its submissions wait in their queue (declared by
/// the site, as runners declare it) until a runner with php joins and takes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_queue_routes_by_language() {
    if !broker::broker() {
        return;
    }
    bounded(async {
        let vh = Vhost::new("routing");
        let nophp = NoPhp::new();
        let a =
            QueueRunner::start(1, queue_config(&vh.url()), Some(&nophp.0), &[SUM_TESTSET]).await;
        a.connected(Duration::from_secs(30)).await;
        let (c, mut results) = client_with_results(&vh.url(), FieldTable::default()).await;
        // The site adds php before any runner has it: it declares php's queue as runners do.
        c.bind_queue(
            "judge.php",
            "runner.judge",
            "php",
            judge_queue_arguments(&Names::default(), 10),
        )
        .await;
        for i in 0..3 {
            c.submit(
                "python3",
                &submission(&format!("py-{i}"), "python3", PY_SUM),
                props(),
            )
            .await;
            c.submit(
                "php",
                &submission(&format!("php-{i}"), "php", PHP_SUM),
                props(),
            )
            .await;
        }
        let got = verdicts(&results.take(3, Duration::from_secs(60)).await);
        assert_eq!(
            got.keys().cloned().collect::<Vec<_>>(),
            ["py-0", "py-1", "py-2"]
        );
        assert!(got.values().all(|(v, n)| v == "AC" && *n == 1), "{got:?}");
        assert!(
            results.next(Duration::from_secs(2)).await.is_none(),
            "no php result without a php runner"
        );
        assert_eq!(counts(&vh, &c, "judge.php").await, (3, 0), "php waits");
        assert!(vh.consumers("judge.php").is_empty());
        assert_eq!(a.counters.deliveries(), 3, "runner A never received php");
        // A runner with php joins (a rolling update): it takes them.
        let b = QueueRunner::start(1, queue_config(&vh.url()), None, &[SUM_TESTSET]).await;
        let got = verdicts(&results.take(3, Duration::from_secs(90)).await);
        assert_eq!(
            got.keys().cloned().collect::<Vec<_>>(),
            ["php-0", "php-1", "php-2"]
        );
        assert!(got.values().all(|(v, n)| v == "AC" && *n == 1), "{got:?}");
        assert_eq!(
            a.counters.deliveries(),
            3,
            "runner A still never received php"
        );
        assert_eq!(counts(&vh, &c, "judge.php").await, (0, 0));
        a.stop().await;
        b.stop().await;
    })
    .await;
}

/// The runner never holds more unacknowledged deliveries than its window (slots + prefetch),
/// over two language queues, as the runner and the broker count them; and the window is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_queue_window_bounds_unacked_deliveries() {
    if !broker::broker() {
        return;
    }
    bounded(async {
        let vh = Arc::new(Vhost::new("window"));
        let mut q = queue_config(&vh.url());
        q.prefetch = 1;
        let r = QueueRunner::start(2, q, None, &[SUM_TESTSET]).await;
        r.connected(Duration::from_secs(30)).await;
        assert_eq!(r.window, 3);
        let c = Client::connect(&vh.url()).await;
        c.declare_exchanges().await;
        c.bind_queue("results", "runner.results", "#", FieldTable::default())
            .await;
        let n = 8;
        for i in 0..n {
            c.submit(
                "python3",
                &submission(&format!("py-{i}"), "python3", &py_sleepy(0.8)),
                props(),
            )
            .await;
            c.submit(
                "php",
                &submission(&format!("php-{i}"), "php", &php_sleepy(0.8)),
                props(),
            )
            .await;
        }
        // The broker's view of unacknowledged deliveries, sampled on a thread of its own
        // (rabbitmqctl takes about a second); the test reads no result meanwhile, so every
        // unacknowledged message in the vhost is the runner's.
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let (vh, done) = (vh.clone(), done.clone());
            tokio::task::spawn_blocking(move || {
                let mut samples = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    samples.push(vh.unacked());
                }
                samples
            })
        };
        let mut max_local = 0;
        let mut waited_while_full = false;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(Instant::now() < deadline, "results missing");
            let held = r.counters.unacked();
            max_local = max_local.max(held);
            let ready = c.ready("judge.python3").await + c.ready("judge.php").await;
            waited_while_full |= held == 3 && ready > 0;
            if c.ready("results").await == 2 * n as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        done.store(true, Ordering::Relaxed);
        let samples = sampler.await.unwrap();
        let mut results = c.consume("results").await;
        let got = results.take(2 * n, Duration::from_secs(10)).await;
        let by_id = verdicts(&got);
        assert_eq!(by_id.len(), 2 * n);
        assert!(by_id.values().all(|(v, _)| v == "AC"), "{by_id:?}");
        assert!(max_local <= 3, "runner held {max_local} > window 3");
        let max_broker = samples.iter().copied().max().unwrap_or(0);
        assert!(
            max_broker <= 3,
            "broker saw {max_broker} unacked > 3: {samples:?}"
        );
        assert_eq!(max_local, 3, "the window is used");
        assert!(
            waited_while_full,
            "messages waited in the queues while the runner held its window"
        );
        eprintln!("window: broker-side unacked samples {samples:?}");
        r.stop().await;
    })
    .await;
}

/// A result the broker refuses (the results queue rejects publishes: a negative confirm) is
/// never acknowledged: the submission goes back to its queue, and after the delivery limit it
/// is dead-lettered. Nothing was acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_queue_acks_only_after_the_result_is_confirmed() {
    if !broker::broker() {
        return;
    }
    bounded(async {
        let vh = Vhost::new("confirm");
        let mut q = queue_config(&vh.url());
        q.delivery_limit = 2;
        let r = QueueRunner::start(1, q, None, &[SUM_TESTSET]).await;
        r.connected(Duration::from_secs(30)).await;
        let full = args(&[
            ("x-max-length", AMQPValue::LongLongInt(0)),
            ("x-overflow", AMQPValue::LongString("reject-publish".into())),
        ]);
        let (c, mut results) = client_with_results(&vh.url(), full).await;
        let mut dead = c.consume("runner.dead").await;
        c.submit(
            "python3",
            &submission("blocked-1", "python3", PY_SUM),
            props(),
        )
        .await;
        let d = dead
            .next(Duration::from_secs(90))
            .await
            .expect("dead-lettered after the delivery limit");
        assert_eq!(json(&d)["id"], "blocked-1");
        assert!(results.next(Duration::from_millis(500)).await.is_none());
        let q = &r.counters;
        let text = runner_metrics(&r).await;
        assert_eq!(metric(&text, "runner_amqp_acks_total"), 0.0, "{text}");
        assert!(metric(&text, "runner_amqp_nacks_total") >= 2.0, "{text}");
        assert!(
            metric(&text, "runner_amqp_deliveries_total") >= 2.0,
            "{text}"
        );
        assert!(metric(&text, "runner_amqp_publish_confirm_seconds_count") >= 2.0);
        assert_eq!(q.unacked(), 0);
        assert_eq!(counts(&vh, &c, "judge.python3").await, (0, 0));
        r.stop().await;
    })
    .await;
}

/// `(ready, unacknowledged)` of `queue`: ready from a passive declare, unacknowledged over the
/// vhost's channels (the runner's, while the test holds none).
async fn counts(vh: &Vhost, c: &Client, queue: &str) -> (u64, u64) {
    let ready = c.ready(queue).await;
    (ready, tokio::task::block_in_place(|| vh.unacked()))
}

async fn runner_metrics(r: &QueueRunner) -> String {
    request(r.addr, "GET", "/metrics", None)
        .await
        .expect("GET /metrics")
        .text()
}

/// The value of an unlabelled sample.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

/// Bad messages are rejected to the dead-letter queue, with an IE result naming the problem
/// when their id can be read; the runner goes on judging.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_queue_dead_letters_poison_messages() {
    if !broker::broker() {
        return;
    }
    bounded(async {
        let vh = Vhost::new("poison");
        let mut q = queue_config(&vh.url());
        q.max_message_bytes = 4096;
        let r = QueueRunner::start(1, q, None, &[SUM_TESTSET]).await;
        r.connected(Duration::from_secs(30)).await;
        let (c, mut results) = client_with_results(&vh.url(), FieldTable::default()).await;
        let mut dead = c.consume("runner.dead").await;
        let with_id = |id: &str| props().with_message_id(ShortString::from(id));
        let good: Value = serde_json::from_slice(&submission("x", "python3", PY_SUM)).unwrap();
        let without = |key: &str, id: &str| {
            let mut v = good.clone();
            v.as_object_mut().unwrap().remove(key);
            if !id.is_empty() {
                v["id"] = id.into();
            }
            v.to_string().into_bytes()
        };
        let mut unknown = good.clone();
        unknown["id"] = "p-unknown".into();
        unknown["problem"] = "nosuch".into();
        let mut other_lang = good.clone();
        other_lang["id"] = "p-lang".into();
        other_lang["language_id"] = "php".into();
        let cases: Vec<(Vec<u8>, BasicProperties, Option<&str>, &str)> = vec![
            (
                b"not json".to_vec(),
                with_id("p-notjson"),
                Some("p-notjson"),
                "body:",
            ),
            (b"\xff\xfe{".to_vec(), props(), None, ""),
            (
                without("sourcecode", "p-missing"),
                props(),
                Some("p-missing"),
                "sourcecode:",
            ),
            (without("id", ""), props(), None, ""),
            (
                unknown.to_string().into_bytes(),
                props(),
                Some("p-unknown"),
                "unknown test set",
            ),
            (
                other_lang.to_string().into_bytes(),
                props(),
                Some("p-lang"),
                "language_id:",
            ),
            (
                vec![b' '; 8192],
                with_id("p-big"),
                Some("p-big"),
                "body: larger",
            ),
        ];
        for (body, p, _, _) in &cases {
            c.submit("python3", body, p.clone()).await;
        }
        c.submit("python3", &submission("p-ok", "python3", PY_SUM), props())
            .await;
        let answered: Vec<_> = cases.iter().filter(|c| c.2.is_some()).collect();
        let got = results
            .take(answered.len() + 1, Duration::from_secs(60))
            .await;
        let by_id: BTreeMap<String, Value> = got.iter().map(|d| (message_id(d), json(d))).collect();
        for (_, _, id, reason) in &answered {
            let v = &by_id[id.unwrap()];
            assert_eq!(v["verdict"], "IE", "{v}");
            assert_eq!(v["status"], "done");
            let why = v["compile"]["output"].as_str().unwrap();
            assert!(
                why.contains(reason),
                "{id:?}: {why:?} should name {reason:?}"
            );
        }
        assert_eq!(by_id["p-ok"]["verdict"], "AC", "the runner goes on judging");
        let deads = dead.take(cases.len(), Duration::from_secs(30)).await;
        assert_eq!(deads.len(), cases.len());
        assert!(dead.next(Duration::from_millis(500)).await.is_none());
        let text = runner_metrics(&r).await;
        assert_eq!(
            metric(&text, "runner_amqp_dead_lettered_total"),
            cases.len() as f64,
            "{text}"
        );
        assert_eq!(metric(&text, "runner_amqp_acks_total"), 1.0);
        assert!(r.counters.connected());
        r.stop().await;
    })
    .await;
}

/// A fake judge for a test about the broker alone: it serves what it is told, and counts the
/// submissions it was asked to judge (it answers AC at once).
struct FakeJudge {
    languages: Mutex<Vec<String>>,
    judged: AtomicUsize,
}

impl Judger for FakeJudge {
    fn languages(&self) -> Vec<String> {
        self.languages.lock().unwrap().clone()
    }

    fn serves(&self, language: &str) -> bool {
        self.languages.lock().unwrap().iter().any(|l| l == language)
    }

    fn capacity(&self) -> usize {
        1
    }

    fn judge(&self, id: String, req: SubmissionRequest) -> BoxFuture<'_, Result<Judging, Refusal>> {
        Box::pin(async move {
            self.judged.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let result = SubmissionResult {
                id,
                problem: req.testset.problem().into(),
                version: req.testset.version().into(),
                testset_sha256: None,
                language_id: req.language_id,
                status: Status::Done,
                verdict: Some(Verdict::Ac),
                compile: Some(CompileResult {
                    verdict: Verdict::Ac,
                    output: String::new(),
                }),
                cases: vec![],
                summary: Summary::default(),
            };
            tx.send(Event::Done(Box::new(result))).await.unwrap();
            Ok(Judging::new(rx, Box::new(|| {})))
        })
    }
}

/// A delivery of a language the runner no longer serves goes back to its queue, again and
/// again, until the quorum queue's delivery limit dead-letters it; it is never judged.
/// (Fake judge: this is about the broker alone, see the file's header.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_queue_requeues_a_language_that_went_away() {
    if !broker::broker() {
        return;
    }
    bounded(async {
        let vh = Vhost::new("gone");
        let mut q = queue_config(&vh.url());
        q.delivery_limit = 3;
        let fake = Arc::new(FakeJudge {
            languages: Mutex::new(vec!["c".into()]),
            judged: AtomicUsize::new(0),
        });
        let counters = Arc::new(QueueCounters::default());
        let mode = QueueMode::start(q, fake.clone(), counters.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        while !counters.connected() {
            assert!(Instant::now() < deadline, "not connected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let c = Client::connect(&vh.url()).await;
        let mut dead = c.consume("runner.dead").await;
        // The language goes away (say its toolchain was removed) while its queue is consumed.
        fake.languages.lock().unwrap().clear();
        let mut body: Value =
            serde_json::from_slice(&submission("gone-1", "c", "int main(){}")).unwrap();
        body["language_id"] = "c".into();
        c.submit("c", body.to_string().as_bytes(), props()).await;
        let d = dead
            .next(Duration::from_secs(60))
            .await
            .expect("dead-lettered at the delivery limit");
        assert_eq!(json(&d)["id"], "gone-1");
        assert_eq!(fake.judged.load(Ordering::Relaxed), 0, "never judged");
        let m = runner::metrics::Metrics::new();
        m.attach_queue(counters.clone());
        let text = m.render();
        assert!(metric(&text, "runner_amqp_nacks_total") >= 3.0, "{text}");
        assert!(
            metric(&text, "runner_amqp_redelivered_total") >= 2.0,
            "{text}"
        );
        assert_eq!(
            metric(&text, "runner_amqp_dead_lettered_total"),
            0.0,
            "the broker did it"
        );
        assert_eq!(counts(&vh, &c, "judge.c").await, (0, 0));
        mode.stop().await;
    })
    .await;
}

/// The broker restarts while a runner works through a load: the runner reconnects, and every
/// submission's result arrives (a result lost with the connection is judged again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_queue_broker_restart_mid_load() {
    if !broker::broker() {
        return;
    }
    bounded(async {
        let node = Arc::new(tokio::task::spawn_blocking(Node::start).await.unwrap());
        let vh = node.vhost("restart");
        let r = QueueRunner::start(2, queue_config(&vh.url()), None, &[SUM_TESTSET]).await;
        r.connected(Duration::from_secs(30)).await;
        let n = 16;
        let mut ids = BTreeSet::new();
        {
            let (c, mut results) = client_with_results(&vh.url(), FieldTable::default()).await;
            for i in 0..n {
                let id = format!("rs-{i}");
                c.submit(
                    "python3",
                    &submission(&id, "python3", &py_sleepy(0.4)),
                    props(),
                )
                .await;
                ids.insert(id);
            }
            for d in results.take(4, Duration::from_secs(60)).await {
                assert_eq!(json(&d)["verdict"], "AC");
                ids.remove(&message_id(&d));
            }
        }
        let restart = tokio::task::spawn_blocking({
            let node = node.clone();
            move || node.restart()
        });
        let mut saw_down = false;
        while !restart.is_finished() {
            saw_down |= !r.counters.connected();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        restart.await.unwrap();
        assert!(saw_down, "the runner noticed the broker going away");
        r.connected(Duration::from_secs(60)).await;
        let (_c, mut results) = client_with_results(&vh.url(), FieldTable::default()).await;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut dups = 0;
        while !ids.is_empty() {
            assert!(Instant::now() < deadline, "results missing: {ids:?}");
            if let Some(d) = results.next(Duration::from_secs(1)).await {
                assert_eq!(json(&d)["verdict"], "AC");
                if !ids.remove(&message_id(&d)) {
                    dups += 1;
                }
            }
        }
        eprintln!(
            "broker restart: every result arrived; {dups} duplicate(s) after the restart; \
             redelivered {}",
            metric(&runner_metrics(&r).await, "runner_amqp_redelivered_total")
        );
        r.stop().await;
        drop(vh);
        tokio::task::spawn_blocking(move || drop(node))
            .await
            .unwrap();
    })
    .await;
}

/// The broker is down when the runner starts: HTTP serves (Jobe runs work), `/health` and the
/// metrics say disconnected; once the broker is up the runner connects and judges.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_queue_broker_down_at_start() {
    if !broker::broker() {
        return;
    }
    bounded(async {
        let port = free_port();
        let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
        let r = QueueRunner::start(1, queue_config(&url), None, &[SUM_TESTSET]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let h = request(r.addr, "GET", "/health", None).await.unwrap();
        assert_eq!(h.status, 200);
        let health = h.json();
        assert_eq!(health["status"], "ready", "{health}");
        assert_eq!(health["queue"], "disconnected", "{health}");
        assert_eq!(
            metric(&runner_metrics(&r).await, "runner_amqp_connected"),
            0.0
        );
        let run = runner_tests::daemon::post_run(
            r.addr,
            runner_tests::daemon::spec("python3", "print(6*7)", None, json!({})),
        )
        .await;
        assert_eq!(run.status, 200);
        assert_eq!(run.json()["stdout"], "42\n");
        let node = tokio::task::spawn_blocking(move || Node::start_on(port))
            .await
            .unwrap();
        r.connected(Duration::from_secs(60)).await;
        let h = request(r.addr, "GET", "/health", None).await.unwrap();
        assert_eq!(h.json()["queue"], "connected");
        let (c, mut results) = client_with_results(&url, FieldTable::default()).await;
        c.submit("python3", &submission("late-1", "python3", PY_SUM), props())
            .await;
        let d = results
            .next(Duration::from_secs(60))
            .await
            .expect("a result");
        assert_eq!(json(&d)["verdict"], "AC");
        drop(c);
        r.stop().await;
        tokio::task::spawn_blocking(move || drop(node))
            .await
            .unwrap();
    })
    .await;
}

/// Submits `n` sleepy python3 submissions to a runner with 2 slots and prefetch 2 (window 4)
/// and waits until it holds its window with two of them running.
async fn loaded(
    tag: &str,
    n: usize,
    secs: f64,
    drain: Duration,
) -> (Vhost, QueueRunner, Client, Reader) {
    let vh = Vhost::new(tag);
    let mut q = queue_config(&vh.url());
    q.prefetch = 2;
    q.drain_timeout = drain;
    let r = QueueRunner::start(2, q, None, &[SUM_TESTSET]).await;
    r.connected(Duration::from_secs(30)).await;
    let (c, results) = client_with_results(&vh.url(), FieldTable::default()).await;
    for i in 0..n {
        c.submit(
            "python3",
            &submission(&format!("{tag}-{i}"), "python3", &py_sleepy(secs)),
            props(),
        )
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.counters.unacked() < 4 {
        assert!(Instant::now() < deadline, "the window never filled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Two of them are compiling or running now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    (vh, r, c, results)
}

/// `on_stop = "finish"`: the running submissions finish, publish and are acked; the deliveries
/// not started go back to their queue at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_queue_stop_finish() {
    if !broker::broker() {
        return;
    }
    bounded(async {
        let (vh, mut r, c, mut results) = loaded("finish", 6, 2.0, Duration::from_secs(60)).await;
        let took = r.stop_queue(OnStop::Finish).await;
        let got = verdicts(&results.take(2, Duration::from_secs(5)).await);
        assert!(got.values().all(|(v, n)| v == "AC" && *n == 1), "{got:?}");
        assert!(
            results.next(Duration::from_secs(1)).await.is_none(),
            "only the running two"
        );
        let text = runner_metrics(&r).await;
        assert_eq!(metric(&text, "runner_amqp_acks_total"), 2.0, "{text}");
        assert_eq!(metric(&text, "runner_amqp_nacks_total"), 2.0, "{text}");
        assert_eq!(r.counters.unacked(), 0);
        assert_eq!(counts(&vh, &c, "judge.python3").await, (4, 0));
        assert!(took < Duration::from_secs(10), "finish took {took:?}");
        eprintln!("on_stop finish: {took:?}");
        r.stop().await;
    })
    .await;
}

/// `on_stop = "finish"` while a delivery waits inside the judge behind an HTTP submission (the
/// slot is the HTTP one's): it was not started, so it goes back at once; the stop does not wait
/// for the HTTP submission.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_queue_stop_finish_gives_back_what_the_judge_has_not_started() {
    if !broker::broker() {
        return;
    }
    bounded(async {
        let vh = Vhost::new("notstarted");
        let mut q = queue_config(&vh.url());
        q.prefetch = 0;
        q.drain_timeout = Duration::from_secs(60);
        let mut r = QueueRunner::start(1, q, None, &[SUM_TESTSET]).await;
        r.connected(Duration::from_secs(30)).await;
        let http = json!({"id": "http-1", "problem": "sum", "version": "v1",
            "language_id": "python3", "sourcecode": py_sleepy(4.0)});
        let posted = request(
            r.addr,
            "POST",
            "/judge/v1/submissions",
            Some(http.to_string().as_bytes()),
        )
        .await
        .unwrap();
        assert!(posted.status < 300, "{} {}", posted.status, posted.text());
        let deadline = Instant::now() + Duration::from_secs(30);
        while r.judge().get("http-1").await.map(|x| x.status) != Some(Status::Running) {
            assert!(Instant::now() < deadline, "the HTTP submission never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (c, mut results) = client_with_results(&vh.url(), FieldTable::default()).await;
        c.submit("python3", &submission("q-1", "python3", PY_SUM), props())
            .await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while r.judge().get("q-1").await.map(|x| x.status) != Some(Status::Queued) {
            assert!(
                Instant::now() < deadline,
                "the delivery never reached the judge"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = r.stop_queue(OnStop::Finish).await;
        assert!(took < Duration::from_secs(2), "finish took {took:?}");
        assert!(results.next(Duration::from_secs(1)).await.is_none());
        assert_eq!(counts(&vh, &c, "judge.python3").await, (1, 0));
        let text = runner_metrics(&r).await;
        assert_eq!(metric(&text, "runner_amqp_nacks_total"), 1.0, "{text}");
        assert_eq!(metric(&text, "runner_amqp_acks_total"), 0.0, "{text}");
        r.stop().await;
    })
    .await;
}

/// `on_stop = "requeue"`: running jails are aborted and every held delivery goes back at once
/// (in under a second); no result is published, no jailed process is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_queue_stop_requeue() {
    if !broker::broker() {
        return;
    }
    bounded(async {
        let (vh, mut r, c, mut results) = loaded("requeue", 6, 5.0, Duration::from_secs(60)).await;
        let took = r.stop_queue(OnStop::Requeue).await;
        assert!(took < Duration::from_secs(1), "requeue took {took:?}");
        assert_no_jailed(r.uids.clone(), Duration::from_secs(2));
        assert!(results.next(Duration::from_secs(2)).await.is_none());
        assert_eq!(counts(&vh, &c, "judge.python3").await, (6, 0));
        let text = runner_metrics(&r).await;
        assert_eq!(metric(&text, "runner_amqp_nacks_total"), 4.0, "{text}");
        assert_eq!(metric(&text, "runner_amqp_acks_total"), 0.0, "{text}");
        eprintln!("on_stop requeue: {took:?}");
        r.stop().await;
    })
    .await;
}

/// `on_stop = "finish"` with running submissions that outlast `drain_timeout_secs`: they are
/// aborted and requeued at the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_queue_stop_finish_drain_timeout() {
    if !broker::broker() {
        return;
    }
    bounded(async {
        let (vh, mut r, c, mut results) = loaded("drain", 6, 8.0, Duration::from_secs(1)).await;
        let took = r.stop_queue(OnStop::Finish).await;
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(3),
            "took {took:?}"
        );
        assert!(results.next(Duration::from_secs(1)).await.is_none());
        assert_eq!(counts(&vh, &c, "judge.python3").await, (6, 0));
        assert_no_jailed(r.uids.clone(), Duration::from_secs(2));
        r.stop().await;
    })
    .await;
}

/// The same id twice (at-least-once): it is judged twice, and both results are published with
/// `message_id` = the id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_queue_same_id_twice_is_judged_twice() {
    if !broker::broker() {
        return;
    }
    bounded(async {
        let vh = Vhost::new("dup");
        let mut q = queue_config(&vh.url());
        q.prefetch = 0;
        let r = QueueRunner::start(1, q, None, &[SUM_TESTSET]).await;
        r.connected(Duration::from_secs(30)).await;
        let (c, mut results) = client_with_results(&vh.url(), FieldTable::default()).await;
        c.bind_queue("events", "runner.events", "dup-1.#", FieldTable::default())
            .await;
        let mut events = c.consume("events").await;
        for _ in 0..2 {
            c.submit("python3", &submission("dup-1", "python3", PY_SUM), props())
                .await;
        }
        let got = results.take(2, Duration::from_secs(60)).await;
        for d in &got {
            assert_eq!(message_id(d), "dup-1");
            assert_eq!(json(d)["verdict"], "AC");
        }
        let mut names = Vec::new();
        while let Some(e) = events.next(Duration::from_secs(2)).await {
            assert_eq!(message_id(&e), "dup-1");
            let name = e.properties.kind().as_ref().map(|s| s.to_string()).unwrap();
            assert_eq!(e.routing_key.as_str(), format!("dup-1.{name}"));
            assert_eq!(
                e.properties.delivery_mode(),
                &Some(1),
                "events are transient"
            );
            names.push(name);
        }
        let count = |n: &str| names.iter().filter(|x| *x == n).count();
        assert_eq!(count("done"), 2, "judged twice: {names:?}");
        assert_eq!(count("compile"), 2, "compiled twice: {names:?}");
        assert_eq!(count("case"), 2, "{names:?}");
        r.stop().await;
    })
    .await;
}

/// SIGKILL of a `runner serve` holding deliveries: the broker gives every unacknowledged
/// message back, and another runner judges them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_queue_sigkill_redelivers() {
    if !broker::broker() {
        return;
    }
    bounded(async {
        let vh = Vhost::new("kill");
        let (dir, uid_base) = unique();
        let mut d = serve_queued(
            &dir,
            uid_base,
            1,
            &vh.url(),
            "reconnect_min_secs = 0.1",
            &[SUM_TESTSET],
        )
        .await;
        let (c, mut results) = client_with_results(&vh.url(), FieldTable::default()).await;
        for i in 0..3 {
            c.submit(
                "python3",
                &submission(&format!("k-{i}"), "python3", &py_sleepy(8.0)),
                props(),
            )
            .await;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = counts(&vh, &c, "judge.python3").await;
            if now.1 == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the runner never held its window of 2: {now:?}\n{}",
                d.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        d.signal("-KILL");
        let st = d.wait(Duration::from_secs(10)).await;
        assert!(!st.success());
        assert_no_jailed(uid_base..uid_base + 1, Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(30);
        while counts(&vh, &c, "judge.python3").await != (3, 0) {
            assert!(
                Instant::now() < deadline,
                "the broker did not take them back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = QueueRunner::start(2, queue_config(&vh.url()), None, &[SUM_TESTSET]).await;
        let got = verdicts(&results.take(3, Duration::from_secs(60)).await);
        assert_eq!(got.len(), 3);
        assert!(got.values().all(|(v, n)| v == "AC" && *n == 1), "{got:?}");
        assert!(r.counters.deliveries() >= 3);
        assert!(metric(&runner_metrics(&r).await, "runner_amqp_redelivered_total") >= 2.0);
        r.stop().await;
        drop(d);
    })
    .await;
}

/// SIGTERM to `runner serve` in queue mode (1 slot, prefetch 1: a window of 2) while it runs one
/// submission (`secs` long) and holds another not started, a third waiting in the queue; stopping
/// as `on_stop` says. Returns how long the process took to exit after the signal, the results
/// that arrived, and the queue's `(ready, unacknowledged)` afterwards. Checks the exit status
/// (0) and that no jailed process is left.
async fn sigterm_serve(
    tag: &str,
    on_stop: &str,
    secs: f64,
) -> (Duration, BTreeMap<String, (String, usize)>, (u64, u64)) {
    let vh = Vhost::new(tag);
    let (dir, uid_base) = unique();
    let mut d = serve_queued(
        &dir,
        uid_base,
        1,
        &vh.url(),
        &format!("on_stop = \"{on_stop}\"\nprefetch = 1\ndrain_timeout_secs = 30"),
        &[SUM_TESTSET],
    )
    .await;
    let (c, mut results) = client_with_results(&vh.url(), FieldTable::default()).await;
    c.bind_queue("events", "runner.events", "#", FieldTable::default())
        .await;
    let mut events = c.consume("events").await;
    for i in 0..3 {
        c.submit(
            "python3",
            &submission(&format!("{tag}-{i}"), "python3", &py_sleepy(secs)),
            props(),
        )
        .await;
    }
    // One is running: its cases started (`{"status":"running"}`).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(e) = events.next(Duration::from_secs(1)).await
            && json(&e)["status"] == "running"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing started running\n{}",
            d.log_text()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts(&vh, &c, "judge.python3").await != (1, 2) {
        assert!(
            Instant::now() < deadline,
            "the runner never held its window of 2\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = Instant::now();
    d.signal("-TERM");
    let st = d.wait(Duration::from_secs(60)).await;
    let took = t.elapsed();
    assert!(st.success(), "{st}\n{}", d.log_text());
    assert_no_jailed(d.uids.clone(), Duration::from_secs(2));
    let log = d.log_text();
    assert!(log.contains("queue mode: stopped"), "{log}");
    let mut ds = Vec::new();
    while let Some(d) = results.next(Duration::from_secs(2)).await {
        ds.push(d);
    }
    let got = verdicts(&ds);
    // Read (and ack) the events, so that only the runner's deliveries could count as unacked.
    while events.next(Duration::from_millis(500)).await.is_some() {}
    let after = counts(&vh, &c, "judge.python3").await;
    eprintln!("on_stop {on_stop}: runner serve exited {took:?} after SIGTERM; results {got:?}");
    (took, got, after)
}

/// SIGTERM with `on_stop = "finish"` (the default) through `runner serve`: the running submission
/// finishes, its result is published and acked; the one held but not started goes back at once;
/// the daemon exits 0 once that is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_queue_sigterm_serve_finish() {
    if !broker::broker() {
        return;
    }
    bounded(async {
        let (took, got, after) = sigterm_serve("termfinish", "finish", 3.0).await;
        assert_eq!(got.len(), 1, "the running one: {got:?}");
        assert!(got.values().all(|(v, n)| v == "AC" && *n == 1), "{got:?}");
        assert_eq!(after, (2, 0), "the other two wait in the queue");
        assert!(took < Duration::from_secs(15), "exit took {took:?}");
    })
    .await;
}

/// SIGTERM with `on_stop = "requeue"` through `runner serve`: the running jail is aborted,
/// both held deliveries go back, no result is published, and the daemon exits at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_queue_sigterm_serve_requeue() {
    if !broker::broker() {
        return;
    }
    bounded(async {
        let (took, got, after) = sigterm_serve("termrequeue", "requeue", 20.0).await;
        assert!(got.is_empty(), "no result: {got:?}");
        assert_eq!(after, (3, 0), "all three wait in the queue");
        assert!(took < Duration::from_secs(1), "exit took {took:?}");
    })
    .await;
}

/// The Python publisher of docs/queue.md, as a user runs it (Debian's python3 with pika):
/// it submits, prints the events and the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_queue_python_example_from_the_docs() {
    if !broker::broker() {
        return;
    }
    let python = "/usr/bin/python3";
    let has_pika = std::process::Command::new(python)
        .args(["-c", "import pika"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_pika {
        let why = "Debian's python3-pika is not installed (`cargo xtask test` installs it)";
        assert!(std::env::var_os("RUNNER_REQUIRE_ALL").is_none(), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    bounded(async {
        let vh = Vhost::new("python");
        let r = QueueRunner::start(1, queue_config(&vh.url()), None, &[SUM_TESTSET]).await;
        r.connected(Duration::from_secs(30)).await;
        let doc = include_str!("../../docs/queue.md");
        let start = doc
            .find("```python\n")
            .expect("a python block in docs/queue.md")
            + 10;
        let code = &doc[start..start + doc[start..].find("```").unwrap()];
        let dir = std::env::temp_dir().join(format!("runner-queue-py-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("judge_submit.py"), code).unwrap();
        std::fs::write(dir.join("sum.py"), PY_SUM).unwrap();
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::process::Command::new(python)
                .arg(dir.join("judge_submit.py"))
                .args([&vh.url(), "sum", "v1", "python3"])
                .arg(dir.join("sum.py"))
                .output(),
        )
        .await
        .expect("the example finished")
        .expect("python3 ran");
        let _ = std::fs::remove_dir_all(&dir);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        for want in [
            "submitted ",
            "event status",
            "event compile",
            "event case",
            "event done",
            "verdict AC",
        ] {
            assert!(stdout.contains(want), "{want:?} not in:\n{stdout}");
        }
        r.stop().await;
    })
    .await;
}
