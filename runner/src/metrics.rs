//! The daemon's metrics: a small hand-written registry rendered in the Prometheus text exposition
//! format 0.0.4 (`GET /metrics`).
//!
//! One `Metrics` per daemon, shared by `Arc` between `api` (requests, runs, file cache, draining)
//! and `sched` (queue, slots). Counters and gauges are atomics; labelled counters and histograms
//! sit behind a `Mutex` (held for a map update or a bucket increment only).
//!
//! Label values are bounded sets: languages are served ids (a run in any other language is refused
//! before it is counted), outcomes are `Outcome::name`, routes are fixed names, statuses are HTTP
//! codes. No raw client input becomes a label. Peer metrics live in `peer::metrics` and are
//! rendered after these (through the dispatcher).
//!
//! Runs are counted by `api` when answered, wherever they ran (`runner_runs_total`); their usage
//! is observed by `sched` for the runs that ran here only (`record_usage`), so that a run a peer
//! ran is not observed with zero usage by the runner that forwarded it.
//!
//! The process families (`process_*`, the names every Prometheus client library uses) are read
//! from the kernel at each scrape; `runner_build_info` is the build (`version`).
//!
//! The eBPF monitor's counters are [`EbpfCounters`], defined here and incremented by `monitor`;
//! `server` hands them to the registry when it wires the daemon ([`Metrics::attach_ebpf`]), so
//! the registry never reaches into the monitor and holds no process-wide state.
//!
//! Queue mode's counters are [`QueueCounters`], likewise defined here, updated by `queue` and
//! attached by `server` ([`Metrics::attach_queue`]); `GET /health` reads its connection state.
//!
//! Every family in [`FAMILIES`] is set somewhere and rendered with at least one sample once the
//! daemon has served a run (checked in `runner/tests/http_api.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::enums::enum_with_all;
use crate::job::{Outcome, Usage};
use crate::sync::lock;
use crate::version::BUILD;

/// Every metric family this registry renders, in rendering order.
pub const FAMILIES: &[&str] = &[
    "runner_runs_total",
    "runner_run_cpu_seconds",
    "runner_run_wall_seconds",
    "runner_run_peak_memory_bytes",
    "runner_queue_waiting",
    "runner_queue_wait_seconds",
    "runner_slots",
    "runner_slots_busy",
    "runner_overload_total",
    "runner_http_requests_total",
    "runner_file_cache_bytes",
    "runner_file_cache_hits_total",
    "runner_file_cache_misses_total",
    "runner_deferred_checks_total",
    "runner_compile_cache_hits_total",
    "runner_compile_cache_misses_total",
    "runner_compile_cache_bytes",
    "runner_compile_cache_entries",
    "runner_ebpf_active",
    "runner_ebpf_events_total",
    "runner_draining",
    "runner_build_info",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "runner_amqp_connected",
    "runner_amqp_window",
    "runner_amqp_unacked",
    "runner_amqp_deliveries_total",
    "runner_amqp_redelivered_total",
    "runner_amqp_acks_total",
    "runner_amqp_nacks_total",
    "runner_amqp_dead_lettered_total",
    "runner_amqp_results_dropped_total",
    "runner_amqp_publish_confirm_seconds",
];

const SECONDS_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const MIB: f64 = 1024.0 * 1024.0;
const MEMORY_BUCKETS: &[f64] = &[
    MIB,
    4.0 * MIB,
    16.0 * MIB,
    32.0 * MIB,
    64.0 * MIB,
    128.0 * MIB,
    256.0 * MIB,
    512.0 * MIB,
    1024.0 * MIB,
    2048.0 * MIB,
];
const CONFIRM_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
const QUEUE_WAIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A cumulative histogram with fixed upper bounds (`+Inf` is implicit).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    state: Mutex<HistState>,
}

#[derive(Debug, Default, Clone)]
struct HistState {
    /// Non-cumulative counts per bound, plus one for `+Inf`.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            state: Mutex::new(HistState {
                counts: vec![0; bounds.len() + 1],
                sum: 0.0,
                count: 0,
            }),
        }
    }

    pub fn observe(&self, v: f64) {
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        let mut s = lock(&self.state);
        s.counts[i] += 1;
        s.sum += v;
        s.count += 1;
    }

    fn render(&self, out: &mut String, name: &str) {
        self.render_labelled(out, name, "");
    }

    /// As `render`, with `labels` (already escaped, e.g. `peer="x"`; empty: none) on every sample.
    pub fn render_labelled(&self, out: &mut String, name: &str, labels: &str) {
        let s = lock(&self.state).clone();
        let (open, sep) = if labels.is_empty() {
            (String::new(), "")
        } else {
            (format!("{{{labels}}}"), ",")
        };
        let mut cum = 0u64;
        for (i, c) in s.counts.iter().enumerate() {
            cum += c;
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| fmt_f64(*b));
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cum}");
        }
        let _ = writeln!(out, "{name}_sum{open} {}", fmt_f64(s.sum));
        let _ = writeln!(out, "{name}_count{open} {}", s.count);
    }
}

enum_with_all! {
    /// What the eBPF monitor counts of its ring buffer: the `kind` label of
    /// `runner_ebpf_events_total`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum EbpfEventKind {
        Exit,
        Oom,
        Budget,
        NetDenied,
        /// An event of a job that was already gone (counted besides its own kind).
        Unattributed,
    }
}

impl EbpfEventKind {
    pub fn label(self) -> &'static str {
        match self {
            EbpfEventKind::Exit => "exit",
            EbpfEventKind::Oom => "oom",
            EbpfEventKind::Budget => "budget",
            EbpfEventKind::NetDenied => "net_denied",
            EbpfEventKind::Unattributed => "unattributed",
        }
    }
}

enum_with_all! {
    /// What became of a deferred check (docs/profiles.md, "Deferred check"), one per run whose
    /// plan deferred it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum DeferredCheck {
        /// The run's output showed the check could say nothing: one step.
        Skipped,
        /// The check ran and passed: the run's verdict stands.
        Passed,
        /// The check ran and failed: outcome 11 (or 19).
        Failed,
        /// The check's result came from the compile cache (no check step).
        Cached,
    }
}

impl DeferredCheck {
    pub fn label(self) -> &'static str {
        match self {
            DeferredCheck::Skipped => "skipped",
            DeferredCheck::Passed => "passed",
            DeferredCheck::Failed => "failed",
            DeferredCheck::Cached => "cached",
        }
    }
}

/// The eBPF monitor's counters: `monitor` increments them, the registry only reads them. One per
/// loaded monitor, shared by `Arc`.
#[derive(Debug, Default)]
pub struct EbpfCounters {
    active: AtomicBool,
    events: [AtomicU64; EbpfEventKind::ALL.len()],
}

impl EbpfCounters {
    /// Whether the monitor is loaded (it says so when it loads and when it is dropped).
    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Relaxed);
    }

    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// One event of `kind` read from the ring buffer.
    pub fn count(&self, kind: EbpfEventKind) {
        self.events[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn events(&self, kind: EbpfEventKind) -> u64 {
        self.events[kind as usize].load(Ordering::Relaxed)
    }
}

/// Queue mode's counters (docs/queue.md, docs/operations.md): `queue` updates them, the registry
/// renders them, `GET /health` reads [`QueueCounters::connected`]. One per daemon, shared by `Arc`.
#[derive(Debug)]
pub struct QueueCounters {
    connected: AtomicBool,
    window: AtomicI64,
    unacked: AtomicI64,
    deliveries: AtomicU64,
    redelivered: AtomicU64,
    acks: AtomicU64,
    nacks: AtomicU64,
    dead_lettered: AtomicU64,
    results_dropped: AtomicU64,
    confirm: Histogram,
}

impl Default for QueueCounters {
    fn default() -> Self {
        QueueCounters {
            connected: AtomicBool::new(false),
            window: AtomicI64::new(0),
            unacked: AtomicI64::new(0),
            deliveries: AtomicU64::new(0),
            redelivered: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            nacks: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            results_dropped: AtomicU64::new(0),
            confirm: Histogram::new(CONFIRM_BUCKETS),
        }
    }
}

impl QueueCounters {
    /// The connection to the broker is up (consuming) or not.
    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The most deliveries held at once: judge capacity plus prefetch headroom.
    pub fn set_window(&self, n: usize) {
        self.window
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// A delivery arrived (`redelivered`: the broker delivered it before).
    pub fn delivered(&self, redelivered: bool) {
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        self.unacked.fetch_add(1, Ordering::Relaxed);
        if redelivered {
            self.redelivered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A delivery was acknowledged (its result confirmed by the broker).
    pub fn acked(&self) {
        self.acks.fetch_add(1, Ordering::Relaxed);
        self.unacked.fetch_sub(1, Ordering::Relaxed);
    }

    /// A delivery was given back to its queue (nack with requeue).
    pub fn nacked(&self) {
        self.nacks.fetch_add(1, Ordering::Relaxed);
        self.unacked.fetch_sub(1, Ordering::Relaxed);
    }

    /// A delivery was rejected without requeue (to the dead-letter exchange).
    pub fn dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        self.unacked.fetch_sub(1, Ordering::Relaxed);
    }

    /// A delivery was let go without a settlement: its channel is gone, and the broker
    /// redelivers it. `with_result`: a finished result was not published for it.
    pub fn abandoned(&self, with_result: bool) {
        self.unacked.fetch_sub(1, Ordering::Relaxed);
        if with_result {
            self.results_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Time from publishing a result to the broker's confirm.
    pub fn observe_confirm(&self, d: Duration) {
        self.confirm.observe(d.as_secs_f64());
    }

    pub fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }

    pub fn unacked(&self) -> i64 {
        self.unacked.load(Ordering::Relaxed)
    }

    fn render(&self, o: &mut String) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge(
            o,
            "runner_amqp_connected",
            "1 while queue mode is connected to the broker and consuming, else 0.",
            i64::from(self.connected()),
        );
        gauge(
            o,
            "runner_amqp_window",
            "Most deliveries held at once: judge capacity plus prefetch headroom.",
            self.window.load(Ordering::Relaxed),
        );
        gauge(
            o,
            "runner_amqp_unacked",
            "Deliveries held now (judging, waiting for a slot, or publishing), not yet settled.",
            self.unacked(),
        );
        counter(
            o,
            "runner_amqp_deliveries_total",
            "Submissions delivered by the broker.",
            load(&self.deliveries),
        );
        counter(
            o,
            "runner_amqp_redelivered_total",
            "Deliveries the broker had delivered before (redelivered flag or x-delivery-count).",
            load(&self.redelivered),
        );
        counter(
            o,
            "runner_amqp_acks_total",
            "Deliveries acknowledged after their result was confirmed by the broker.",
            load(&self.acks),
        );
        counter(
            o,
            "runner_amqp_nacks_total",
            "Deliveries given back to their queue (nack with requeue).",
            load(&self.nacks),
        );
        counter(
            o,
            "runner_amqp_dead_lettered_total",
            "Deliveries rejected without requeue, to the dead-letter exchange (bad messages).",
            load(&self.dead_lettered),
        );
        counter(
            o,
            "runner_amqp_results_dropped_total",
            "Finished results not published because the connection was lost (redelivered).",
            load(&self.results_dropped),
        );
        hist(
            o,
            &self.confirm,
            "runner_amqp_publish_confirm_seconds",
            "Time from publishing a result to the broker's confirm, in seconds.",
        );
    }
}

/// The registry. Create one per daemon with [`Metrics::new`] and share it by `Arc`.
#[derive(Debug)]
pub struct Metrics {
    runs: Mutex<BTreeMap<(String, &'static str), u64>>,
    run_cpu: Histogram,
    run_wall: Histogram,
    run_memory: Histogram,
    queue_waiting: AtomicI64,
    queue_wait: Histogram,
    slots_total: AtomicI64,
    slots_busy: AtomicI64,
    overload: AtomicU64,
    http: Mutex<BTreeMap<(&'static str, u16), u64>>,
    cache_bytes: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    deferred_checks: [AtomicU64; DeferredCheck::ALL.len()],
    /// Compile cache lookups by (language, hit).
    compile_cache: Mutex<BTreeMap<(String, bool), u64>>,
    compile_cache_bytes: AtomicU64,
    compile_cache_entries: AtomicU64,
    /// The eBPF monitor's counters, once `server` attached them (none: the no-eBPF mode).
    ebpf: OnceLock<Arc<EbpfCounters>>,
    draining: AtomicI64,
    /// Queue mode's counters, once `server` attached them (none: queue mode off).
    queue: OnceLock<Arc<QueueCounters>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            runs: Mutex::new(BTreeMap::new()),
            run_cpu: Histogram::new(SECONDS_BUCKETS),
            run_wall: Histogram::new(SECONDS_BUCKETS),
            run_memory: Histogram::new(MEMORY_BUCKETS),
            queue_waiting: AtomicI64::new(0),
            queue_wait: Histogram::new(QUEUE_WAIT_BUCKETS),
            slots_total: AtomicI64::new(0),
            slots_busy: AtomicI64::new(0),
            overload: AtomicU64::new(0),
            http: Mutex::new(BTreeMap::new()),
            cache_bytes: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            deferred_checks: Default::default(),
            compile_cache: Mutex::new(BTreeMap::new()),
            compile_cache_bytes: AtomicU64::new(0),
            compile_cache_entries: AtomicU64::new(0),
            ebpf: OnceLock::new(),
            draining: AtomicI64::new(0),
            queue: OnceLock::new(),
        }
    }

    /// One answered run, wherever it ran: counts it by language and outcome, and counts
    /// overloads. `lang` must be a served language id (a bounded label: `api` counts only runs
    /// whose language passed its check).
    pub fn record_run(&self, lang: &str, outcome: Outcome) {
        *lock(&self.runs)
            .entry((lang.to_owned(), outcome.name()))
            .or_insert(0) += 1;
        if outcome == Outcome::ServerOverload {
            self.overload.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The usage of a run that ran here (`sched`; never an overload, which did not run).
    pub fn record_usage(&self, usage: &Usage) {
        self.run_cpu.observe(usage.cpu_secs);
        self.run_wall.observe(usage.wall_secs);
        #[allow(clippy::cast_precision_loss, reason = "a histogram value")]
        self.run_memory.observe(usage.peak_memory_bytes as f64);
    }

    /// One HTTP response. `route` is a fixed route name.
    pub fn record_http(&self, route: &'static str, status: u16) {
        *lock(&self.http).entry((route, status)).or_insert(0) += 1;
    }

    /// A request starts waiting for a slot.
    pub fn queue_enter(&self) {
        self.queue_waiting.fetch_add(1, Ordering::Relaxed);
    }

    /// A request stops waiting (with or without a slot) after `waited`.
    pub fn queue_leave(&self, waited: Duration) {
        self.queue_waiting.fetch_sub(1, Ordering::Relaxed);
        self.queue_wait.observe(waited.as_secs_f64());
    }

    pub fn set_slots_total(&self, n: usize) {
        self.slots_total
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    pub fn slot_taken(&self) {
        self.slots_busy.fetch_add(1, Ordering::Relaxed);
    }

    pub fn slot_released(&self) {
        self.slots_busy.fetch_sub(1, Ordering::Relaxed);
    }

    /// A file cache lookup by id (`HEAD files`, `runs` `file_list`).
    pub fn cache_lookup(&self, hit: bool) {
        let c = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_cache_bytes(&self, bytes: u64) {
        self.cache_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Renders the eBPF monitor's `counters` from now on (`runner_ebpf_*`). Wired once, at
    /// start-up; a second call is ignored.
    /// One run whose plan deferred its check, and what became of the check.
    pub fn deferred_check(&self, what: DeferredCheck) {
        self.deferred_checks[what as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// One compile cache lookup for a compile or check step of `lang` (a served language id).
    pub fn compile_cache_lookup(&self, lang: &str, hit: bool) {
        *lock(&self.compile_cache)
            .entry((lang.to_owned(), hit))
            .or_insert(0) += 1;
    }

    /// The compile cache's size after a change.
    pub fn set_compile_cache_size(&self, bytes: u64, entries: usize) {
        self.compile_cache_bytes.store(bytes, Ordering::Relaxed);
        self.compile_cache_entries
            .store(entries as u64, Ordering::Relaxed);
    }

    pub fn attach_ebpf(&self, counters: Arc<EbpfCounters>) {
        let _ = self.ebpf.set(counters);
    }

    /// Renders queue mode's `counters` from now on (`runner_amqp_*`), and lets `GET /health`
    /// report the broker connection. Wired once, at start-up; a second call is ignored.
    pub fn attach_queue(&self, counters: Arc<QueueCounters>) {
        let _ = self.queue.set(counters);
    }

    /// Queue mode's counters, when queue mode is on.
    pub fn queue(&self) -> Option<&Arc<QueueCounters>> {
        self.queue.get()
    }

    pub fn set_draining(&self, draining: bool) {
        self.draining.store(i64::from(draining), Ordering::Relaxed);
    }

    /// Whether the eBPF monitor is attached and active (`GET /version`, `GET /health`).
    pub fn ebpf_active(&self) -> bool {
        self.ebpf.get().is_some_and(|c| c.active())
    }

    /// The whole registry in the text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        header(
            &mut o,
            "runner_runs_total",
            "Runs answered, by language and Jobe outcome.",
            "counter",
        );
        for ((lang, outcome), n) in lock(&self.runs).iter() {
            let _ = writeln!(
                o,
                "runner_runs_total{{lang=\"{}\",outcome=\"{}\"}} {n}",
                escape_label(lang),
                escape_label(outcome)
            );
        }
        hist(
            &mut o,
            &self.run_cpu,
            "runner_run_cpu_seconds",
            "CPU time of a run's measured step, in seconds.",
        );
        hist(
            &mut o,
            &self.run_wall,
            "runner_run_wall_seconds",
            "Wall time of a run's measured step, in seconds.",
        );
        hist(
            &mut o,
            &self.run_memory,
            "runner_run_peak_memory_bytes",
            "Peak memory of a run's measured step, in bytes.",
        );
        gauge(
            &mut o,
            "runner_queue_waiting",
            "Requests waiting for a free slot.",
            self.queue_waiting.load(Ordering::Relaxed),
        );
        hist(
            &mut o,
            &self.queue_wait,
            "runner_queue_wait_seconds",
            "Time a request waited for a slot (including waits that ended in overload), in seconds.",
        );
        gauge(
            &mut o,
            "runner_slots",
            "Sandbox slots (concurrent runs).",
            self.slots_total.load(Ordering::Relaxed),
        );
        gauge(
            &mut o,
            "runner_slots_busy",
            "Slots running a job.",
            self.slots_busy.load(Ordering::Relaxed),
        );
        counter(
            &mut o,
            "runner_overload_total",
            "Runs answered with outcome 21 (server overload).",
            self.overload.load(Ordering::Relaxed),
        );
        header(
            &mut o,
            "runner_http_requests_total",
            "HTTP responses, by route and status code.",
            "counter",
        );
        for ((route, status), n) in lock(&self.http).iter() {
            let _ = writeln!(
                o,
                "runner_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape_label(route)
            );
        }
        gauge(
            &mut o,
            "runner_file_cache_bytes",
            "Bytes of files in the file cache.",
            i64::try_from(self.cache_bytes.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        );
        counter(
            &mut o,
            "runner_file_cache_hits_total",
            "File cache lookups (HEAD files, runs file_list) that found the file.",
            self.cache_hits.load(Ordering::Relaxed),
        );
        counter(
            &mut o,
            "runner_file_cache_misses_total",
            "File cache lookups (HEAD files, runs file_list) that did not find the file.",
            self.cache_misses.load(Ordering::Relaxed),
        );
        header(
            &mut o,
            "runner_deferred_checks_total",
            "Runs whose syntax check was deferred, by what became of the check (skipped: one step).",
            "counter",
        );
        for &what in DeferredCheck::ALL {
            let n = self.deferred_checks[what as usize].load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "runner_deferred_checks_total{{result=\"{}\"}} {n}",
                what.label()
            );
        }
        for (hit, name, help) in [
            (
                true,
                "runner_compile_cache_hits_total",
                "Compile and check steps answered by the compile cache, by language.",
            ),
            (
                false,
                "runner_compile_cache_misses_total",
                "Compile cache lookups that found nothing, by language (a compile step then runs; a deferred check is looked up before each run and runs only if the run needs it).",
            ),
        ] {
            header(&mut o, name, help, "counter");
            for ((lang, _), n) in lock(&self.compile_cache)
                .iter()
                .filter(|((_, h), _)| *h == hit)
            {
                let _ = writeln!(o, "{name}{{lang=\"{}\"}} {n}", escape_label(lang));
            }
        }
        gauge(
            &mut o,
            "runner_compile_cache_bytes",
            "Bytes of the compile cache's entries.",
            i64::try_from(self.compile_cache_bytes.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        );
        gauge(
            &mut o,
            "runner_compile_cache_entries",
            "Entries in the compile cache.",
            i64::try_from(self.compile_cache_entries.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        );
        let ebpf = self.ebpf.get();
        gauge(
            &mut o,
            "runner_ebpf_active",
            "1 if the eBPF monitor is active (verdicts from kernel events), 0 in the no-eBPF mode.",
            i64::from(ebpf.is_some_and(|c| c.active())),
        );
        header(
            &mut o,
            "runner_ebpf_events_total",
            "Events read from the eBPF monitor's ring buffer, by kind (unattributed: job already gone).",
            "counter",
        );
        for &kind in EbpfEventKind::ALL {
            let n = ebpf.map_or(0, |c| c.events(kind));
            let _ = writeln!(
                o,
                "runner_ebpf_events_total{{kind=\"{}\"}} {n}",
                kind.label()
            );
        }
        gauge(
            &mut o,
            "runner_draining",
            "1 once shutdown began (GET /health answers 503).",
            self.draining.load(Ordering::Relaxed),
        );
        header(
            &mut o,
            "runner_build_info",
            "The build of this daemon (always 1): version, git commit, cargo profile, eBPF object embedded.",
            "gauge",
        );
        let _ = writeln!(
            o,
            "runner_build_info{{version=\"{}\",commit=\"{}\",profile=\"{}\",ebpf_object=\"{}\"}} 1",
            escape_label(BUILD.version),
            escape_label(BUILD.commit),
            escape_label(BUILD.profile),
            if BUILD.ebpf_object { "yes" } else { "no" }
        );
        render_process(&mut o);
        // Queue mode off: every family still renders, at 0.
        match self.queue.get() {
            Some(q) => q.render(&mut o),
            None => QueueCounters::default().render(&mut o),
        }
        o
    }
}

/// The `process_*` families, read from the kernel now.
fn render_process(o: &mut String) {
    header(
        o,
        "process_cpu_seconds_total",
        "CPU time (user + system) of the daemon process, in seconds (not the jobs').",
        "counter",
    );
    let _ = writeln!(
        o,
        "process_cpu_seconds_total {}",
        fmt_f64(crate::sys::process_cpu_time().as_secs_f64())
    );
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    header(
        o,
        "process_resident_memory_bytes",
        "Resident memory of the daemon process, in bytes.",
        "gauge",
    );
    let _ = writeln!(o, "process_resident_memory_bytes {}", rss_kib * 1024);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    header(
        o,
        "process_open_fds",
        "Open file descriptors of the daemon process.",
        "gauge",
    );
    let _ = writeln!(o, "process_open_fds {fds}");
    header(
        o,
        "process_max_fds",
        "The daemon's open-files limit (soft RLIMIT_NOFILE).",
        "gauge",
    );
    let _ = writeln!(o, "process_max_fds {}", crate::sys::fd_limit());
}

/// The families a rendered text declares (`# TYPE` lines), in order: for tests that hold a
/// family list to its rendering.
#[cfg(test)]
pub(crate) fn declared_families(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect()
}

/// Whether a document names `family` in code style (`` `f` `` or `` `f{labels}` ``).
#[cfg(test)]
pub(crate) fn documents(doc: &str, family: &str) -> bool {
    doc.contains(&format!("`{family}`")) || doc.contains(&format!("`{family}{{"))
}

/// The `# HELP` and `# TYPE` lines of a metric family.
pub(crate) fn header(o: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(o, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

fn counter(o: &mut String, name: &str, help: &str, v: u64) {
    header(o, name, help, "counter");
    let _ = writeln!(o, "{name} {v}");
}

fn gauge(o: &mut String, name: &str, help: &str, v: i64) {
    header(o, name, help, "gauge");
    let _ = writeln!(o, "{name} {v}");
}

fn hist(o: &mut String, h: &Histogram, name: &str, help: &str) {
    header(o, name, help, "histogram");
    h.render(o, name);
}

/// A float as Prometheus writes it (`+Inf`, `-Inf`, `NaN`; otherwise Rust's shortest form).
fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

/// Label values: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text: `\` → `\\`, newline → `\n`.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The Prometheus text format and the registry.
    use super::*;

    fn sample<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
            .map(|l| &l[prefix.len() + 1..])
    }

    #[test]
    fn test_escaping() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
        let m = Metrics::new();
        m.record_run("we\"ird\\\n", Outcome::Success);
        let text = m.render();
        assert!(
            text.contains("runner_runs_total{lang=\"we\\\"ird\\\\\\n\",outcome=\"success\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn test_histogram_buckets_are_cumulative() {
        let m = Metrics::new();
        let usage = |cpu| Usage {
            cpu_secs: cpu,
            wall_secs: 0.2,
            peak_memory_bytes: 3 << 20,
            ..Usage::default()
        };
        m.record_usage(&usage(0.03));
        m.record_usage(&usage(0.3));
        m.record_usage(&usage(500.0));
        let t = m.render();
        let n = "runner_run_cpu_seconds_bucket";
        assert_eq!(sample(&t, &format!("{n}{{le=\"0.01\"}}")), Some("0"));
        assert_eq!(sample(&t, &format!("{n}{{le=\"0.05\"}}")), Some("1"));
        assert_eq!(sample(&t, &format!("{n}{{le=\"0.25\"}}")), Some("1"));
        assert_eq!(sample(&t, &format!("{n}{{le=\"0.5\"}}")), Some("2"));
        assert_eq!(sample(&t, &format!("{n}{{le=\"120\"}}")), Some("2"));
        assert_eq!(sample(&t, &format!("{n}{{le=\"+Inf\"}}")), Some("3"));
        assert_eq!(sample(&t, "runner_run_cpu_seconds_count"), Some("3"));
        assert_eq!(sample(&t, "runner_run_cpu_seconds_sum"), Some("500.33"));
        assert_eq!(
            sample(&t, "runner_run_peak_memory_bytes_bucket{le=\"4194304\"}"),
            Some("3")
        );
        assert_eq!(sample(&t, "runner_run_wall_seconds_count"), Some("3"));
        // Buckets never decrease.
        let mut last = 0u64;
        for l in t.lines().filter(|l| l.starts_with(n)) {
            let v: u64 = l.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(v >= last, "{l}");
            last = v;
        }
    }

    #[test]
    fn test_counters_and_gauges() {
        let m = Metrics::new();
        m.record_run("python3", Outcome::Success);
        m.record_run("python3", Outcome::Success);
        m.record_usage(&Usage::default());
        m.record_usage(&Usage::default());
        m.record_run("unknown", Outcome::ServerOverload);
        m.record_http("runs", 200);
        m.record_http("runs", 200);
        m.record_http("unrouted", 404);
        m.queue_enter();
        m.queue_enter();
        m.queue_leave(Duration::from_millis(20));
        m.set_slots_total(4);
        m.slot_taken();
        m.slot_taken();
        m.slot_released();
        m.cache_lookup(true);
        m.cache_lookup(false);
        m.cache_lookup(false);
        m.set_cache_bytes(1234);
        m.set_draining(true);
        let t = m.render();
        for (k, v) in [
            (
                "runner_runs_total{lang=\"python3\",outcome=\"success\"}",
                "2",
            ),
            (
                "runner_runs_total{lang=\"unknown\",outcome=\"server_overload\"}",
                "1",
            ),
            ("runner_overload_total", "1"),
            // Overloads never ran: no usage observed.
            ("runner_run_cpu_seconds_count", "2"),
            (
                "runner_http_requests_total{route=\"runs\",status=\"200\"}",
                "2",
            ),
            (
                "runner_http_requests_total{route=\"unrouted\",status=\"404\"}",
                "1",
            ),
            ("runner_queue_waiting", "1"),
            ("runner_queue_wait_seconds_count", "1"),
            ("runner_queue_wait_seconds_bucket{le=\"0.01\"}", "0"),
            ("runner_queue_wait_seconds_bucket{le=\"0.05\"}", "1"),
            ("runner_slots", "4"),
            ("runner_slots_busy", "1"),
            ("runner_file_cache_hits_total", "1"),
            ("runner_file_cache_misses_total", "2"),
            ("runner_file_cache_bytes", "1234"),
            ("runner_ebpf_active", "0"),
            ("runner_draining", "1"),
        ] {
            assert_eq!(sample(&t, k), Some(v), "{k} in\n{t}");
        }
    }

    #[test]
    fn test_build_and_process_families() {
        let t = Metrics::new().render();
        let info = t
            .lines()
            .find(|l| l.starts_with("runner_build_info{"))
            .expect("runner_build_info sample");
        assert!(
            info.contains(&format!("commit=\"{}\"", BUILD.commit)),
            "{info}"
        );
        assert!(info.ends_with(" 1"), "{info}");
        let num = |name: &str| -> f64 { sample(&t, name).unwrap().parse().unwrap() };
        assert!(num("process_resident_memory_bytes") > 1e5);
        assert!(num("process_open_fds") >= 3.0);
        assert!(num("process_max_fds") >= num("process_open_fds"));
        assert!(num("process_cpu_seconds_total") >= 0.0);
    }

    #[test]
    fn test_families_match_rendered_types() {
        let t = Metrics::new().render();
        assert_eq!(declared_families(&t), FAMILIES);
        let helped = t.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(helped, FAMILIES.len());
    }

    #[test]
    fn test_ebpf_counters_render_once_attached() {
        let m = Metrics::new();
        // The no-eBPF mode: every kind is still a sample, at 0.
        let t = m.render();
        assert_eq!(sample(&t, "runner_ebpf_active"), Some("0"));
        for &kind in EbpfEventKind::ALL {
            let name = format!("runner_ebpf_events_total{{kind=\"{}\"}}", kind.label());
            assert_eq!(sample(&t, &name), Some("0"), "{t}");
        }
        let c = Arc::new(EbpfCounters::default());
        c.set_active(true);
        c.count(EbpfEventKind::Exit);
        c.count(EbpfEventKind::Exit);
        c.count(EbpfEventKind::Unattributed);
        m.attach_ebpf(c.clone());
        let t = m.render();
        assert_eq!(sample(&t, "runner_ebpf_active"), Some("1"));
        assert_eq!(
            sample(&t, "runner_ebpf_events_total{kind=\"exit\"}"),
            Some("2")
        );
        assert_eq!(
            sample(&t, "runner_ebpf_events_total{kind=\"oom\"}"),
            Some("0")
        );
        assert_eq!(
            sample(&t, "runner_ebpf_events_total{kind=\"unattributed\"}"),
            Some("1")
        );
        // A monitor that is gone is not active.
        c.set_active(false);
        assert_eq!(sample(&m.render(), "runner_ebpf_active"), Some("0"));
    }

    #[test]
    fn test_queue_counters_render_once_attached() {
        let m = Metrics::new();
        let t = m.render();
        assert_eq!(sample(&t, "runner_amqp_connected"), Some("0"));
        assert_eq!(sample(&t, "runner_amqp_deliveries_total"), Some("0"));
        assert!(m.queue().is_none());
        let q = Arc::new(QueueCounters::default());
        m.attach_queue(q.clone());
        q.set_connected(true);
        q.set_window(3);
        q.delivered(false);
        q.delivered(true);
        q.delivered(false);
        q.delivered(false);
        q.delivered(false);
        q.acked();
        q.nacked();
        q.dead_lettered();
        q.abandoned(true);
        q.observe_confirm(Duration::from_millis(2));
        let t = m.render();
        for (k, v) in [
            ("runner_amqp_connected", "1"),
            ("runner_amqp_window", "3"),
            ("runner_amqp_unacked", "1"),
            ("runner_amqp_deliveries_total", "5"),
            ("runner_amqp_redelivered_total", "1"),
            ("runner_amqp_acks_total", "1"),
            ("runner_amqp_nacks_total", "1"),
            ("runner_amqp_dead_lettered_total", "1"),
            ("runner_amqp_results_dropped_total", "1"),
            ("runner_amqp_publish_confirm_seconds_count", "1"),
            (
                "runner_amqp_publish_confirm_seconds_bucket{le=\"0.001\"}",
                "0",
            ),
            (
                "runner_amqp_publish_confirm_seconds_bucket{le=\"0.0025\"}",
                "1",
            ),
        ] {
            assert_eq!(sample(&t, k), Some(v), "{k} in\n{t}");
        }
        assert!(m.queue().is_some_and(|q| q.connected()));
    }

    /// The operator's reference lists every family and every `outcome` label value.
    #[test]
    fn test_families_and_outcomes_are_documented() {
        let doc = include_str!("../../docs/operations.md");
        for f in FAMILIES {
            assert!(documents(doc, f), "{f} is not in docs/operations.md");
        }
        for o in Outcome::ALL {
            let name = format!("`{}`", o.name());
            assert!(doc.contains(&name), "{name} is not in docs/operations.md");
        }
    }
}
