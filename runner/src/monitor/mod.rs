//! The eBPF monitor: verdicts and limits driven by kernel events (docs/ebpf.md).
//!
//! Owns: loading `runner-ebpf` (embedded at build time, or installed beside the binary), the
//! kernel struct offsets it needs (from BTF), attaching its programs, the `JOBS` map (one entry
//! per running job: its cgroup2 id and CPU budget), and the ring buffer, read through tokio's
//! `AsyncFd` and dispatched to the waiting job by cgroup id. Must not: kill jobs or decide
//! verdicts (the jail does, on the events it receives), or poll.
//!
//! Programs (see `runner-ebpf/src/main.rs`): process exits, OOM victims, the CPU budget
//! (the kernel's per-task runtime deltas, `sched_stat_runtime`, with `sched_switch` and a
//! cpu-clock `perf_event` sample on every CPU for the time between scheduler ticks), and cgroup
//! sock_addr programs that deny connect/sendmsg, attached once to the daemon's cgroup2 subtree
//! of jobs and so inherited by every job. The sample is optional: if it cannot be attached the
//! monitor says so once and keeps the tick-driven budget.
//!
//! Counters: each loaded monitor counts the events it reads in its own `metrics::EbpfCounters`,
//! which `server` hands to the metrics registry (`Jail::ebpf_counters`); no process-wide state.
//!
//! Fallback: with `[monitor] ebpf = "auto"` a failure to load (no object, no CAP_BPF, a kernel
//! without BTF or a program type) leaves the daemon in its no-eBPF mode (cgroup events and
//! computed timers, in `jail/watch.rs`), and says why in `runner check`, at start-up and in
//! `runner_ebpf_active`; with `"require"` it is an error.

pub mod btf;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::enums::enum_with_all;
use crate::metrics::{EbpfCounters, EbpfEventKind};
use crate::sync::lock;
use aya::maps::{HashMap as BpfHashMap, MapData, RingBuf};
use aya::programs::perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent};
use aya::programs::{BtfTracePoint, CgroupAttachMode, CgroupSockAddr, PerfEvent};
use aya::{Ebpf, EbpfLoader};
use runner_common as common;
use tokio::sync::mpsc;

/// The eBPF object `runner/build.rs` built and embedded (empty when the build had no eBPF
/// toolchain: `cargo xtask serve` or `cargo xtask test` install it).
static EMBEDDED_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/runner-ebpf.o"));

/// Name of the object when installed beside the binary.
pub const OBJECT_FILE: &str = "runner-ebpf.o";

/// How often `runner_sample` runs on every CPU (a cpu-clock perf event): the longest a task of a
/// job over its budget runs before SIGKILL, and the granularity of the budget between scheduler
/// ticks. Measured cost in docs/ebpf.md ("Costs and limits").
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(1);

/// The sample decides a budget from its estimate (charged sum plus the uncharged run time of the
/// job's running tasks) only this far past the budget: the estimate counts wall time, which may
/// include time the hypervisor stole from the vCPU and the kernel will not charge (docs/ebpf.md,
/// "Between ticks").
pub const ESTIMATE_GUARD: Duration = Duration::from_millis(1);

enum_with_all! {
    /// `[monitor] ebpf`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum EbpfMode {
        /// Load when possible, else run in the no-eBPF mode (and say why).
        #[default]
        Auto,
        /// Refuse to start without the eBPF monitor.
        Require,
        /// Never load it.
        Off,
    }
}

impl EbpfMode {
    /// The value in the config file.
    pub fn name(self) -> &'static str {
        match self {
            EbpfMode::Auto => "auto",
            EbpfMode::Require => "require",
            EbpfMode::Off => "off",
        }
    }
}

impl FromStr for EbpfMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(mode) = EbpfMode::ALL.iter().find(|m| m.name() == s) {
            return Ok(*mode);
        }
        let names: Vec<String> = EbpfMode::ALL
            .iter()
            .map(|m| format!("\"{}\"", m.name()))
            .collect();
        Err(format!("'{s}' is not one of {}", names.join(", ")))
    }
}

/// Faults of the monitor (never what a job did).
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(
        "no eBPF object: this binary was built without the eBPF toolchain (install it with `cargo xtask serve`, which rebuilds) and none is installed beside it"
    )]
    NoObject,
    #[error("cannot read {path}")]
    ReadObject {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the kernel has no BTF (/sys/kernel/btf/vmlinux), needed for tp_btf programs")]
    NoBtf,
    #[error("loading the eBPF object failed")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("eBPF object has no {what} `{name}`")]
    Missing {
        what: &'static str,
        name: &'static str,
    },
    #[error("eBPF program `{name}`: {step} failed")]
    Program {
        name: &'static str,
        step: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("eBPF map `{name}`")]
    Map {
        name: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch the ring buffer")]
    Ring(#[source] std::io::Error),
    #[error("cannot list the online CPUs")]
    Cpus(#[source] std::io::Error),
}

/// What the kernel told about one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEvent {
    /// A process of the job exited: host pid, wait status (`None` if unknown).
    Exit { pid: u32, status: Option<i32> },
    /// The OOM killer chose a victim in the job.
    Oom { pid: u32 },
    /// The job's CPU time reached its budget: `used` ns by the kernel's charges, or, if
    /// `estimated`, by the sample's estimate less [`ESTIMATE_GUARD`].
    Budget { used: Duration, estimated: bool },
    /// A connect/sendmsg of the job was refused.
    NetDenied,
}

impl JobEvent {
    /// The event's counter (`runner_ebpf_events_total{kind}`).
    pub fn kind(&self) -> EbpfEventKind {
        match self {
            JobEvent::Exit { .. } => EbpfEventKind::Exit,
            JobEvent::Oom { .. } => EbpfEventKind::Oom,
            JobEvent::Budget { .. } => EbpfEventKind::Budget,
            JobEvent::NetDenied => EbpfEventKind::NetDenied,
        }
    }
}

/// At most this many exits are kept per job (a job may fork for its whole run).
pub const MAX_EXITS_KEPT: usize = 1024;

/// What the monitor saw of one job (in `jail::JailOutput`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobStats {
    /// (host pid, wait status) of the processes of the job that exited, in order (the first
    /// `MAX_EXITS_KEPT`).
    pub exits: Vec<(u32, Option<i32>)>,
    /// All process exits seen, kept or not.
    pub exit_count: u64,
    pub oom_victims: Vec<u32>,
    /// CPU time the eBPF side had measured when the budget event came.
    pub budget_used: Option<Duration>,
    pub net_denied: u32,
}

impl JobStats {
    fn add(&mut self, ev: JobEvent) {
        match ev {
            JobEvent::Exit { pid, status } => {
                self.exit_count += 1;
                if self.exits.len() < MAX_EXITS_KEPT {
                    self.exits.push((pid, status));
                }
            }
            JobEvent::Oom { pid } => self.oom_victims.push(pid),
            JobEvent::Budget { used, .. } => self.budget_used = Some(used),
            JobEvent::NetDenied => self.net_denied += 1,
        }
    }
}

struct Inner {
    /// Keeps the programs and their links alive.
    _ebpf: Mutex<Ebpf>,
    jobs: Mutex<BpfHashMap<MapData, u64, common::JobState>>,
    ring: Mutex<RingBuf<MapData>>,
    /// A duplicate of the ring buffer's fd for epoll (the `RingBuf` itself stays behind `ring`,
    /// so a job can drain it synchronously when it ends).
    ring_fd: OwnedFd,
    waiters: Mutex<HashMap<u64, mpsc::UnboundedSender<JobEvent>>>,
    reader_running: AtomicBool,
    shutdown: tokio::sync::Notify,
    /// Events read, by kind; shared with the metrics registry.
    counters: Arc<EbpfCounters>,
}

/// The loaded eBPF monitor. Dropping it detaches every program.
pub struct Monitor {
    inner: Arc<Inner>,
    source: String,
    /// Whether `runner_sample` is attached (else why not).
    sampling: Result<(), String>,
    /// Why the sample cannot estimate between ticks (it then only stops jobs over budget).
    no_estimate: Option<&'static str>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("source", &self.source)
            .finish()
    }
}

/// Where the object comes from: embedded, else `<dir of the binary>/runner-ebpf.o`.
fn object() -> Result<(Vec<u8>, String), MonitorError> {
    if !EMBEDDED_OBJECT.is_empty() {
        return Ok((EMBEDDED_OBJECT.to_vec(), "embedded object".into()));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(OBJECT_FILE)));
    match beside {
        Some(path) if path.is_file() => {
            let bytes = std::fs::read(&path).map_err(|source| MonitorError::ReadObject {
                path: path.clone(),
                source,
            })?;
            Ok((bytes, path.display().to_string()))
        }
        _ => Err(MonitorError::NoObject),
    }
}

/// Whether an object is there to load (embedded or beside the binary); says nothing about
/// whether this kernel accepts it.
pub fn object_available() -> bool {
    object().is_ok()
}

/// Loads the monitor per `mode`. Returns the monitor (if any) and one line for `runner check`
/// and the start-up log. `cgroup_subtree` is the cgroup2 directory every job cgroup is created
/// under (the sock_addr programs are attached there once).
pub fn start(
    mode: EbpfMode,
    cgroup_subtree: &Path,
) -> Result<(Option<Monitor>, String), MonitorError> {
    if mode == EbpfMode::Off {
        return Ok((
            None,
            "eBPF monitor: off (config `[monitor] ebpf = \"off\"`): verdicts from cgroup events and computed timers".into(),
        ));
    }
    match Monitor::load(cgroup_subtree) {
        Ok(m) => {
            let budget = match (&m.sampling, m.no_estimate) {
                (Ok(()), None) => format!(
                    "CPU budget from the kernel's charges and a {} µs sample",
                    SAMPLE_PERIOD.as_micros()
                ),
                (Ok(()), Some(why)) => format!(
                    "CPU budget from the kernel's charges, a {} µs sample stops jobs over it ({why})",
                    SAMPLE_PERIOD.as_micros()
                ),
                (Err(why), _) => format!("CPU budget from the kernel's charges only ({why})"),
            };
            let line = format!(
                "eBPF monitor: active ({}; exit, oom, {budget}, connect/sendmsg deny)",
                m.source
            );
            Ok((Some(m), line))
        }
        Err(err) if mode == EbpfMode::Auto => {
            let why = crate::telemetry::error_chain(&err);
            Ok((
                None,
                format!(
                    "eBPF monitor: inactive ({why}): verdicts from cgroup events and computed timers"
                ),
            ))
        }
        Err(err) => Err(err),
    }
}

/// The globals with kernel struct offsets, by name.
type Offsets = [(&'static str, u32); 8];

/// The running kernel's BTF (for aya) and the offsets the programs need, parsed once and kept
/// for the next load: parsing ~5 MB of BTF takes tens of ms (hundreds unoptimised), and tests
/// make many jails. A daemon loads once and lets it go ([`release_kernel_btf`]).
static KERNEL_BTF: Mutex<Option<Arc<(aya::Btf, Offsets)>>> = Mutex::new(None);

fn kernel_btf() -> Option<Arc<(aya::Btf, Offsets)>> {
    let mut cached = lock(&KERNEL_BTF);
    if let Some(btf) = cached.as_ref() {
        return Some(btf.clone());
    }
    let parsed = Arc::new(parse_kernel_btf()?);
    *cached = Some(parsed.clone());
    Some(parsed)
}

fn parse_kernel_btf() -> Option<(aya::Btf, Offsets)> {
    let kernel = aya::Btf::from_sys_fs().ok()?;
    let btf = btf::Btf::from_sys()?;
    let off = |s: &str, f: &str| btf.offset(s, f).unwrap_or(common::OFFSET_UNKNOWN);
    let offsets = [
        (common::GLOBAL_OFF_TASK_PID, off("task_struct", "pid")),
        (common::GLOBAL_OFF_TASK_TGID, off("task_struct", "tgid")),
        (
            common::GLOBAL_OFF_TASK_EXIT_CODE,
            off("task_struct", "exit_code"),
        ),
        (
            common::GLOBAL_OFF_TASK_CGROUPS,
            off("task_struct", "cgroups"),
        ),
        (
            common::GLOBAL_OFF_CSS_SET_DFL_CGRP,
            off("css_set", "dfl_cgrp"),
        ),
        (common::GLOBAL_OFF_CGROUP_KN, off("cgroup", "kn")),
        (common::GLOBAL_OFF_KERNFS_NODE_ID, off("kernfs_node", "id")),
        (
            common::GLOBAL_OFF_TASK_EXEC_START,
            nested_offset(off("task_struct", "se"), off("sched_entity", "exec_start")),
        ),
    ];
    Some((kernel, offsets))
}

/// The offset of a field of an embedded struct (`outer` + `inner`), unknown if either is.
fn nested_offset(outer: u32, inner: u32) -> u32 {
    if outer == common::OFFSET_UNKNOWN || inner == common::OFFSET_UNKNOWN {
        return common::OFFSET_UNKNOWN;
    }
    outer.checked_add(inner).unwrap_or(common::OFFSET_UNKNOWN)
}

/// Drops the kept kernel BTF (≈ 11 MB once parsed). The daemon calls it after start-up: it
/// loads the monitor once, and every jail's `clone3` copies the page tables of the daemon's
/// memory (docs/performance.md). A later load parses it again.
pub fn release_kernel_btf() {
    *lock(&KERNEL_BTF) = None;
}

impl Monitor {
    fn load(cgroup_subtree: &Path) -> Result<Monitor, MonitorError> {
        let (bytes, source) = object()?;
        let btf = kernel_btf().ok_or(MonitorError::NoBtf)?;
        let (kernel_btf, offsets) = (&btf.0, &btf.1);
        let mut globals: Vec<(&str, u32)> = offsets.to_vec();
        // On: the budget event counts the kernel's own runtime deltas, the ones `cpu.stat` sums
        // (docs/ebpf.md, "CPU budget"), so a kill at the event is never below the budget.
        globals.push((common::GLOBAL_KILL_CURRENT, 1));
        // Possible CPUs (the slots the sample sums); 0 if unknown or not x86-64, which leaves
        // the sample only its kill of jobs already over budget: the programs order the slots
        // and the sum by program order alone, which only x86's memory model keeps between CPUs
        // (docs/ebpf.md, "Between ticks").
        let cpus = if cfg!(target_arch = "x86_64") {
            aya::util::nr_cpus().map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
        } else {
            0
        };
        let exec_start = offsets
            .iter()
            .find(|(name, _)| *name == common::GLOBAL_OFF_TASK_EXEC_START)
            .map_or(common::OFFSET_UNKNOWN, |(_, off)| *off);
        let no_estimate = if exec_start == common::OFFSET_UNKNOWN {
            Some("no task_struct.se.exec_start in BTF")
        } else if !cfg!(target_arch = "x86_64") {
            Some("not x86-64")
        } else if cpus == 0 {
            Some("cannot read the possible CPUs")
        } else {
            None
        };
        globals.push((common::GLOBAL_NR_CPUS, cpus.min(common::MAX_CPUS)));
        globals.push((
            common::GLOBAL_ESTIMATE_GUARD_NS,
            u32::try_from(ESTIMATE_GUARD.as_nanos()).unwrap_or(u32::MAX),
        ));
        let mut loader = EbpfLoader::new();
        loader.btf(Some(kernel_btf));
        for (name, value) in &globals {
            loader.override_global(name, value, true);
        }
        let mut ebpf = loader
            .load(&bytes)
            .map_err(|e| MonitorError::Load(Box::new(e)))?;
        attach_tracing(&mut ebpf, kernel_btf)?;
        attach_sock_addr(&mut ebpf, cgroup_subtree)?;
        // Optional: without it the budget is decided at the kernel's charges (scheduler ticks,
        // switches), as before; say so once per process, not once per load (tests load often).
        let sampling = attach_sampling(&mut ebpf).map_err(|e| {
            let why = crate::telemetry::error_chain(&e);
            static SAID: AtomicBool = AtomicBool::new(false);
            if !SAID.swap(true, Ordering::Relaxed) {
                tracing::warn!("eBPF monitor: no CPU sample ({why}); the CPU budget is decided at scheduler ticks only");
            }
            why
        });
        let jobs = BpfHashMap::try_from(take_map(&mut ebpf, common::MAP_JOBS)?)
            .map_err(map_err(common::MAP_JOBS))?;
        let ring = RingBuf::try_from(take_map(&mut ebpf, common::MAP_EVENTS)?)
            .map_err(map_err(common::MAP_EVENTS))?;
        let ring_fd = ring
            .as_fd()
            .try_clone_to_owned()
            .map_err(MonitorError::Ring)?;
        let counters = Arc::new(EbpfCounters::default());
        counters.set_active(true);
        Ok(Monitor {
            inner: Arc::new(Inner {
                _ebpf: Mutex::new(ebpf),
                jobs: Mutex::new(jobs),
                ring: Mutex::new(ring),
                ring_fd,
                waiters: Mutex::new(HashMap::new()),
                reader_running: AtomicBool::new(false),
                shutdown: tokio::sync::Notify::new(),
                counters,
            }),
            source,
            sampling,
            no_estimate,
        })
    }

    /// The counters of this monitor's events, for the metrics registry.
    pub fn counters(&self) -> Arc<EbpfCounters> {
        self.inner.counters.clone()
    }

    /// Starts watching a job: its cgroup2 id (the inode of its directory) and its CPU budget.
    /// Call before the job's first process exists; drop the `JobWatch` after its last is gone.
    /// Must be called inside a tokio runtime (it starts the ring-buffer reader if needed).
    pub fn register(&self, cgroup_id: u64, budget: Duration) -> Result<JobWatch, MonitorError> {
        self.ensure_reader()?;
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.inner.waiters).insert(cgroup_id, tx);
        let state = common::JobState {
            budget_ns: u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX),
            ..Default::default()
        };
        if let Err(e) = lock(&self.inner.jobs).insert(cgroup_id, state, 0) {
            lock(&self.inner.waiters).remove(&cgroup_id);
            return Err(MonitorError::Map {
                name: common::MAP_JOBS,
                source: Box::new(e),
            });
        }
        Ok(JobWatch {
            inner: self.inner.clone(),
            cgroup_id,
            rx,
            stats: JobStats::default(),
        })
    }

    /// Spawns the ring-buffer reader on the current runtime unless one is running (a previous
    /// runtime may have ended, taking its reader with it).
    fn ensure_reader(&self) -> Result<(), MonitorError> {
        if self.inner.reader_running.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let fd = self
            .inner
            .ring_fd
            .try_clone()
            .and_then(crate::sys::async_owned_fd);
        let fd = match fd {
            Ok(fd) => fd,
            Err(e) => {
                self.inner.reader_running.store(false, Ordering::Release);
                return Err(MonitorError::Ring(e));
            }
        };
        let inner = self.inner.clone();
        tokio::spawn(async move {
            // Clears `reader_running` however the task ends (also when its runtime drops it).
            struct Running(Arc<Inner>);
            impl Drop for Running {
                fn drop(&mut self) {
                    self.0.reader_running.store(false, Ordering::Release);
                }
            }
            let running = Running(inner);
            let inner = &running.0;
            loop {
                tokio::select! {
                    r = fd.readable() => match r {
                        Ok(mut guard) => {
                            // Clear first: an event committed while we drain re-arms epoll.
                            guard.clear_ready();
                            inner.drain();
                        }
                        Err(err) => {
                            tracing::error!(?err, "eBPF ring buffer: poll failed; reader stops");
                            return;
                        }
                    },
                    () = inner.shutdown.notified() => return,
                }
            }
        });
        Ok(())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.inner.counters.set_active(false);
        self.inner.shutdown.notify_one();
    }
}

/// Decodes one ring-buffer record.
fn decode(b: &[u8]) -> Option<common::Event> {
    let u32_at = |o: usize| Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_ne_bytes(b.get(o..o + 8)?.try_into().ok()?));
    Some(common::Event {
        kind: u32_at(0)?,
        pid: u32_at(4)?,
        tgid: u32_at(8)?,
        code: u32_at(12)?,
        cgroup_id: u64_at(16)?,
        value: u64_at(24)?,
    })
}

/// The job event a ring-buffer record stands for (`None`: a kind this daemon does not know).
fn to_job_event(ev: &common::Event) -> Option<JobEvent> {
    Some(match ev.kind {
        common::EVENT_EXIT => JobEvent::Exit {
            pid: ev.pid,
            status: (ev.code != common::CODE_UNKNOWN).then_some(ev.code as i32),
        },
        common::EVENT_OOM => JobEvent::Oom { pid: ev.pid },
        common::EVENT_BUDGET => JobEvent::Budget {
            used: Duration::from_nanos(ev.value),
            estimated: ev.code == common::BUDGET_ESTIMATED,
        },
        common::EVENT_NET_DENIED => JobEvent::NetDenied,
        _ => return None,
    })
}

impl Inner {
    /// Reads every record in the ring buffer and sends each to its job.
    fn drain(&self) {
        let mut ring = lock(&self.ring);
        let waiters = lock(&self.waiters);
        while let Some(item) = ring.next() {
            let Some(ev) = decode(&item) else { continue };
            let Some(job_event) = to_job_event(&ev) else {
                continue;
            };
            self.counters.count(job_event.kind());
            match waiters.get(&ev.cgroup_id) {
                Some(tx) => {
                    let _ = tx.send(job_event);
                }
                None => self.counters.count(EbpfEventKind::Unattributed),
            }
        }
    }
}

/// One job's registration: its events arrive here. Dropping it removes the job from the map.
#[derive(Debug)]
pub struct JobWatch {
    inner: Arc<Inner>,
    cgroup_id: u64,
    rx: mpsc::UnboundedReceiver<JobEvent>,
    stats: JobStats,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("ring_fd", &self.ring_fd.as_raw_fd())
            .finish()
    }
}

impl JobWatch {
    /// The next event of this job (cancel-safe; pending forever once the monitor is gone).
    pub async fn next(&mut self) -> JobEvent {
        match self.rx.recv().await {
            Some(ev) => {
                self.stats.add(ev);
                ev
            }
            None => std::future::pending().await,
        }
    }

    /// After the job's last process is gone: reads what is still in the ring buffer (the exit
    /// records are committed before the parent can see the exit) and returns everything seen.
    pub fn finish(mut self) -> JobStats {
        self.inner.drain();
        while let Ok(ev) = self.rx.try_recv() {
            self.stats.add(ev);
        }
        std::mem::take(&mut self.stats)
    }
}

impl Drop for JobWatch {
    fn drop(&mut self) {
        lock(&self.inner.waiters).remove(&self.cgroup_id);
        // Errors: already gone (never inserted twice).
        let _ = lock(&self.inner.jobs).remove(&self.cgroup_id);
    }
}

/// The tracing programs: process exits, OOM victims, and the CPU budget (the scheduler's
/// per-task runtime deltas).
fn attach_tracing(ebpf: &mut Ebpf, kernel_btf: &aya::Btf) -> Result<(), MonitorError> {
    for (name, hook) in [
        ("runner_exit", "sched_process_exit"),
        ("runner_oom", "mark_victim"),
        ("runner_runtime", "sched_stat_runtime"),
        ("runner_switch", "sched_switch"),
    ] {
        let p: &mut BtfTracePoint = program(ebpf, name)?;
        p.load(hook, kernel_btf).map_err(prog_err(name, "load"))?;
        p.attach().map_err(prog_err(name, "attach"))?;
    }
    Ok(())
}

/// `runner_sample` on a cpu-clock perf event of every online CPU, every [`SAMPLE_PERIOD`].
/// (CPUs brought online later are not sampled: their job tasks are charged at ticks only.)
fn attach_sampling(ebpf: &mut Ebpf) -> Result<(), MonitorError> {
    const NAME: &str = "runner_sample";
    let cpus = aya::util::online_cpus().map_err(|(_, e)| MonitorError::Cpus(e))?;
    let p: &mut PerfEvent = program(ebpf, NAME)?;
    p.load().map_err(prog_err(NAME, "load"))?;
    let period = u64::try_from(SAMPLE_PERIOD.as_nanos()).unwrap_or(u64::MAX);
    for cpu in cpus {
        p.attach(
            PerfEventConfig::Software(SoftwareEvent::CpuClock),
            PerfEventScope::AllProcessesOneCpu { cpu },
            SamplePolicy::Period(period),
            false,
        )
        .map_err(prog_err(NAME, "attach"))?;
    }
    Ok(())
}

/// The connect/sendmsg deny programs, attached once to the cgroup2 subtree every job cgroup is
/// created under (and so inherited by every job).
fn attach_sock_addr(ebpf: &mut Ebpf, cgroup_subtree: &Path) -> Result<(), MonitorError> {
    let cgroup = std::fs::File::open(cgroup_subtree).map_err(|source| MonitorError::Open {
        path: cgroup_subtree.to_owned(),
        source,
    })?;
    for name in [
        "runner_connect4",
        "runner_connect6",
        "runner_sendmsg4",
        "runner_sendmsg6",
    ] {
        let p: &mut CgroupSockAddr = program(ebpf, name)?;
        p.load().map_err(prog_err(name, "load"))?;
        // Single = no flags: bpf_link_create (kernel >= 5.7) refuses flags and links are
        // always multi-attach, so this neither replaces nor blocks anyone else's programs.
        p.attach(cgroup.as_fd(), CgroupAttachMode::Single)
            .map_err(prog_err(name, "attach"))?;
    }
    Ok(())
}

/// Takes the loaded object's map `name` out of it.
fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, MonitorError> {
    ebpf.take_map(name)
        .ok_or(MonitorError::Missing { what: "map", name })
}

/// Maps an aya map error to the monitor's, naming the map.
fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> MonitorError {
    move |e| MonitorError::Map {
        name,
        source: Box::new(e),
    }
}

/// The loaded object's program `name`, as the program type `T`.
fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, MonitorError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(MonitorError::Missing {
            what: "program",
            name,
        })?
        .try_into()
        .map_err(prog_err(name, "type check"))
}

/// Maps an aya program error to the monitor's, naming the program and the step that failed.
fn prog_err(
    name: &'static str,
    step: &'static str,
) -> impl Fn(aya::programs::ProgramError) -> MonitorError {
    move |e| MonitorError::Program {
        name,
        step,
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Decoding and mode parsing (loading needs root: the privileged
    //! tests in tests/tests/verdicts.rs).
    use super::*;

    #[test]
    fn test_decode_event_layout() {
        let mut b = Vec::new();
        for v in [common::EVENT_EXIT, 42, 41, 3 << 8] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&7u64.to_ne_bytes());
        b.extend_from_slice(&0u64.to_ne_bytes());
        let ev = decode(&b).expect("decodes");
        assert_eq!(
            (ev.kind, ev.pid, ev.tgid, ev.code, ev.cgroup_id),
            (1, 42, 41, 768, 7)
        );
        assert_eq!(
            to_job_event(&ev),
            Some(JobEvent::Exit {
                pid: 42,
                status: Some(768)
            })
        );
        assert!(decode(&b[..20]).is_none());
    }

    #[test]
    fn test_mode_parse() {
        assert_eq!("auto".parse(), Ok(EbpfMode::Auto));
        assert_eq!("require".parse(), Ok(EbpfMode::Require));
        assert_eq!("off".parse(), Ok(EbpfMode::Off));
        assert_eq!(
            "on".parse::<EbpfMode>(),
            Err("'on' is not one of \"auto\", \"require\", \"off\"".to_owned())
        );
        for &mode in EbpfMode::ALL {
            assert_eq!(mode.name().parse(), Ok(mode));
        }
    }

    #[test]
    fn test_every_known_record_kind_decodes_to_its_counter() {
        for (kind, want) in [
            (common::EVENT_EXIT, EbpfEventKind::Exit),
            (common::EVENT_OOM, EbpfEventKind::Oom),
            (common::EVENT_BUDGET, EbpfEventKind::Budget),
            (common::EVENT_NET_DENIED, EbpfEventKind::NetDenied),
        ] {
            let ev = common::Event {
                kind,
                pid: 1,
                tgid: 1,
                code: 0,
                cgroup_id: 1,
                value: 0,
            };
            assert_eq!(to_job_event(&ev).map(|e| e.kind()), Some(want));
        }
        let unknown = common::Event {
            kind: 99,
            pid: 1,
            tgid: 1,
            code: 0,
            cgroup_id: 1,
            value: 0,
        };
        assert_eq!(to_job_event(&unknown), None);
    }

    #[test]
    fn test_budget_record_says_how_it_was_counted() {
        let ev = |code| common::Event {
            kind: common::EVENT_BUDGET,
            pid: 1,
            tgid: 1,
            code,
            cgroup_id: 1,
            value: 1_500_000,
        };
        let used = Duration::from_micros(1500);
        assert_eq!(
            to_job_event(&ev(common::BUDGET_CHARGED)),
            Some(JobEvent::Budget {
                used,
                estimated: false
            })
        );
        assert_eq!(
            to_job_event(&ev(common::BUDGET_ESTIMATED)),
            Some(JobEvent::Budget {
                used,
                estimated: true
            })
        );
    }

    #[test]
    fn test_nested_offset_is_unknown_if_a_part_is() {
        let unknown = common::OFFSET_UNKNOWN;
        assert_eq!(nested_offset(128, 64), 192);
        assert_eq!(nested_offset(unknown, 64), unknown);
        assert_eq!(nested_offset(128, unknown), unknown);
        assert_eq!(nested_offset(u32::MAX - 1, 8), unknown);
    }

    #[test]
    fn test_sample_settings_fit_the_programs_globals() {
        // Globals are u32 ns; the guard must fit and be below one scheduler tick (4 ms at 250 Hz)
        // for the sample to act between ticks at all.
        assert!(u32::try_from(ESTIMATE_GUARD.as_nanos()).is_ok());
        assert!(ESTIMATE_GUARD < Duration::from_millis(4));
        assert!(SAMPLE_PERIOD > Duration::ZERO && SAMPLE_PERIOD < Duration::from_millis(4));
    }

    #[test]
    fn test_off_mode_says_so() {
        let (m, line) = start(EbpfMode::Off, Path::new("/nonexistent")).expect("off never fails");
        assert!(m.is_none());
        assert!(line.contains("off"), "{line}");
    }
}
