//! The jail: every compile and every run executes here. `Jail::spawn` is the only place that
//! orders the steps; docs/jail.md lists them, numbered, and the same numbers mark the code here
//! and in `child.rs` (both change together with the doc).
//!
//! Owns: the host-level jail (`Jail`: cgroup subtree, Landlock ABI, compiled seccomp policies,
//! the eBPF monitor) and the order of one step's jail (`Jail::spawn`). The parts, in the order
//! `spawn` uses them: `slot` (identities), `rundir` (run directories), `cgroup`, `prepare` (pipes,
//! Landlock ruleset, what the child needs), `mount` (the mount plan), `landlock`, `seccomp`,
//! `child` (init and the program, after `clone3`), `watch` (watching the job, how it ended); raw
//! syscalls come from `crate::sys`. Must not: know about languages, HTTP or Jobe outcomes. What
//! the program did comes back as `End`, never as an error; `JailError` is for faults of the host
//! or daemon.

mod artifact;
pub mod cgroup;
mod child;
pub mod landlock;
mod mount;
mod prepare;
mod rundir;
pub mod seccomp;
mod slot;
mod teardown;
pub mod timing;
mod watch;

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use self::cgroup::{Cgroups, JobCgroup, KernelPaths};
use self::child::{Prepared, SetupFailure};
use self::landlock::Abi;
use self::mount::{DEV_NODES, SysEntry};
use self::seccomp::Policy;
use self::teardown::{Release, Teardown};
use self::timing::{Clock, Mark, StepClock};
use self::watch::{Counted, Watched};
use crate::job::Usage;
use crate::metrics::EbpfCounters;
use crate::monitor::{EbpfMode, JobStats, JobWatch, Monitor};
use crate::profile::plan::Step;
use crate::sys;

pub use self::artifact::{ARTIFACTS_DIR, Artifact, ArtifactEntry, copy_out};
pub use self::rundir::{JAIL_RUNS_DIR, RUN_DIR_INODES, RunDir};
pub use self::slot::Slot;

/// Faults of the host or the daemon while running a jail (never the program's doing).
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("cgroup setup failed")]
    Cgroup(#[from] cgroup::CgroupError),
    #[error("seccomp policy failed to load")]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("unknown seccomp policy '{0}'")]
    UnknownPolicy(String),
    #[error("landlock is not available on this kernel (required)")]
    NoLandlock,
    #[error("{call} failed")]
    Syscall {
        call: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot {step} {path}")]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("jail setup step '{step}' failed in the child")]
    Setup {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("invalid command or path (contains NUL)")]
    Nul,
    #[error("empty command")]
    EmptyCommand,
    #[error("eBPF monitor")]
    Monitor(#[from] crate::monitor::MonitorError),
}

fn sys_err(call: &'static str) -> impl FnOnce(sys::Errno) -> JailError {
    move |e| JailError::Syscall {
        call,
        source: e.into_io(),
    }
}

fn io_err<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> JailError + 'a {
    move |source| JailError::Io {
        step,
        path: path.to_owned(),
        source,
    }
}

fn cstr(s: impl AsRef<[u8]>) -> Result<CString, JailError> {
    CString::new(s.as_ref()).map_err(|_| JailError::Nul)
}

fn cpath(p: &Path) -> Result<CString, JailError> {
    cstr(p.as_os_str().as_encoded_bytes())
}

/// Host-level settings of the jail.
#[derive(Debug, Clone)]
pub struct JailConfig {
    /// Holds `runs/` (run directories) and `root/` (the empty mount point of jail roots).
    pub data_dir: PathBuf,
    /// Host directories bound read-only into every jail (symlinks are reproduced as symlinks).
    pub system_paths: Vec<PathBuf>,
    /// Slot i runs as uid `uid_base + i`.
    pub uid_base: u32,
    /// The group of every jailed process.
    pub gid: u32,
    /// Seccomp policies by name (TOML text); "default" is always present.
    pub seccomp_policies: Vec<(String, String)>,
    pub kernel: KernelPaths,
    /// `[monitor] ebpf`: whether verdicts come from the eBPF monitor (docs/ebpf.md).
    pub ebpf: EbpfMode,
    /// Every host directory a profile may mount read-only (the profiles' `extra_ro_paths`):
    /// each slot's template gets a mount point for it (docs/jail.md, "Slot template").
    pub extra_ro_mount_points: Vec<PathBuf>,
}

impl Default for JailConfig {
    fn default() -> Self {
        JailConfig {
            data_dir: "/var/lib/runner".into(),
            system_paths: ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc"]
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            uid_base: 1_990_000,
            gid: 1_990_000,
            seccomp_policies: vec![("default".into(), seccomp::DEFAULT_POLICY.into())],
            kernel: KernelPaths::default(),
            ebpf: EbpfMode::default(),
            extra_ro_mount_points: Vec::new(),
        }
    }
}

/// How a jailed step ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    Exited(i32),
    Signaled(i32),
    /// The cgroup used its CPU budget (all processes together).
    CpuTime,
    /// The wall-clock limit passed.
    WallTime,
    /// The kernel OOM-killed a process of the job.
    Memory,
    /// A syscall denied by the seccomp policy (its name).
    Syscall(String),
    /// execve failed (e.g. the compiled program does not exist): errno.
    ExecFailed(i32),
}

/// What a jailed step produced.
#[derive(Debug, Clone)]
pub struct JailOutput {
    pub stdout: Vec<u8>,
    /// The program wrote more to stdout than `stream_bytes`; the rest was dropped (judge mode's
    /// OLE).
    pub stdout_truncated: bool,
    pub stderr: Vec<u8>,
    pub end: End,
    pub usage: Usage,
    /// What the eBPF monitor saw of the job (`None` in the no-eBPF mode).
    pub ebpf: Option<JobStats>,
}

/// One step to run. The run directory and slot are the jail's own types; the parameters let
/// the scheduler's tests hand the same spec to a fake jail (`sched::Sandbox`).
#[derive(Debug)]
pub struct JailSpec<'a, D = RunDir, S = Slot> {
    pub step: &'a Step,
    pub policy: &'a str,
    pub run_dir: &'a D,
    pub slot: &'a S,
    pub stdin: Option<&'a [u8]>,
    pub extra_ro: &'a [String],
}

/// What a step may have beyond a [`JailSpec`]: judge mode's additions (docs/judge.md). Every
/// field is optional; `Jail::spawn` is `spawn_with` and the default.
#[derive(Debug, Default)]
pub struct StepExtras<'a> {
    /// Stdin from an open file (a test case's input, never read into the daemon's memory);
    /// takes the place of `JailSpec::stdin`. The program gets a duplicate of the descriptor.
    pub stdin_file: Option<&'a std::fs::File>,
    /// A compiled artifact: each of its entries is bind-mounted read-only into the (fresh) run
    /// directory (docs/jail.md, per-run mount row R7).
    pub artifact: Option<&'a Artifact>,
    /// Once it reads `true`, or its sender is dropped, the step is killed (a cancelled
    /// submission, or an aborted judge task); it then ends as `End::Signaled(SIGKILL)`.
    pub cancel: Option<tokio::sync::watch::Receiver<bool>>,
    /// Kill the step as soon as its stdout passes `stream_bytes` (judge mode's output limit):
    /// it ends as `End::Signaled(SIGKILL)` with `stdout_truncated` set, rather than running on
    /// while its output is dropped (a Jobe run's behaviour).
    pub kill_on_stdout_overflow: bool,
}

/// The host-level jail: cgroup subtree, Landlock ABI, compiled seccomp policies.
#[derive(Debug)]
pub struct Jail {
    cgroups: Cgroups,
    abi: Abi,
    policies: HashMap<String, Policy>,
    root: PathBuf,
    runs: PathBuf,
    system: Vec<SysEntry>,
    /// Mount points every slot template gets for the profiles' extra read-only paths.
    mount_points: Vec<PathBuf>,
    /// Landlock rules every jail gets, as O_PATH descriptors opened once at start-up: the system
    /// directories (read, execute) and the device nodes.
    landlock_base: Vec<(OwnedFd, u64)>,
    gid: u32,
    uid_base: u32,
    ncpu: u32,
    /// The signals the daemon ignores, read once at start-up: the program starts with them at
    /// their defaults (step 18).
    ignored_signals: std::sync::Arc<[libc::c_int]>,
    /// The threads that release what finished steps still hold (`teardown.rs`).
    teardown: Arc<Teardown>,
    /// Declared last: dropped after the cgroup subtree its sock_addr programs are attached to.
    monitor: Option<Monitor>,
    /// One line on the monitor's state for `runner check` and the start-up log.
    monitor_status: String,
}

impl Jail {
    /// Probes the kernel, creates the cgroup subtree and the data directories. Fails closed: a
    /// missing cgroup controller or Landlock is an error, not a weaker jail.
    pub fn new(cfg: &JailConfig) -> Result<Jail, JailError> {
        let abi = Abi::detect().ok_or(JailError::NoLandlock)?;
        let mut policies = HashMap::new();
        for (name, text) in &cfg.seccomp_policies {
            policies.insert(name.clone(), Policy::from_toml(name, text)?);
        }
        let (root, runs) = make_data_dirs(&cfg.data_dir)?;
        let system = mount::probe_system_paths(&cfg.system_paths)?;
        for p in &cfg.extra_ro_mount_points {
            mount::check_mount_point(p).map_err(|why| JailError::Io {
                step: "use as an extra read-only path",
                path: p.clone(),
                source: io::Error::other(why),
            })?;
        }
        let cgroups = Cgroups::setup(&cfg.kernel)?;
        let (monitor, monitor_status) = crate::monitor::start(cfg.ebpf, cgroups.v2_base())?;
        let landlock_base = landlock_base(abi, &system)?;
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let mut ignored_signals = sys::ignored_signals();
        if !ignored_signals.contains(&libc::SIGPIPE) {
            ignored_signals.push(libc::SIGPIPE);
        }
        Ok(Jail {
            landlock_base,
            cgroups,
            abi,
            policies,
            root,
            runs,
            system,
            mount_points: cfg.extra_ro_mount_points.clone(),
            gid: cfg.gid,
            uid_base: cfg.uid_base,
            ncpu,
            ignored_signals: ignored_signals.into(),
            teardown: Teardown::start(),
            monitor,
            monitor_status,
        })
    }

    /// A human summary for `runner check` and the start-up log.
    pub fn describe(&self) -> Vec<String> {
        vec![
            format!("cgroups: {:?}", self.cgroups.layout),
            self.abi.describe(),
            format!(
                "seccomp policies: {}",
                self.policies.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            "namespaces: pid, mount, ipc, uts, cgroup, net (one empty netns per slot)".to_owned(),
            self.monitor_status.clone(),
        ]
    }

    /// Whether verdicts come from the eBPF monitor (else from cgroup files and timers).
    pub fn ebpf_active(&self) -> bool {
        self.monitor.is_some()
    }

    /// The monitor's counters, for the metrics registry (`None` in the no-eBPF mode).
    pub fn ebpf_counters(&self) -> Option<std::sync::Arc<EbpfCounters>> {
        self.monitor.as_ref().map(Monitor::counters)
    }

    /// The monitor's state, one line (`eBPF monitor: active (…)` or why not).
    pub fn monitor_status(&self) -> &str {
        &self.monitor_status
    }

    /// The cgroup directories this jail created its subtree in (`runner-<pid>-<n>` in each
    /// hierarchy it uses); they are removed when the jail is dropped.
    pub fn cgroup_subtrees(&self) -> Vec<PathBuf> {
        self.cgroups.subtrees()
    }

    pub fn layout(&self) -> &cgroup::Layout {
        &self.cgroups.layout
    }

    pub fn has_policy(&self, name: &str) -> bool {
        self.policies.contains_key(name)
    }

    /// Whether a run can attach the extra read-only path `path`: the slot templates have a
    /// mount point for it (made at start-up for the profiles then loaded, or a directory inside
    /// a bound system directory).
    pub fn has_mount_point(&self, path: &Path) -> bool {
        self.mount_points.iter().any(|p| p == path)
            || self
                .system
                .iter()
                .any(|e| matches!(e, mount::SysEntry::Dir(d) if path.starts_with(d) && path != d))
    }

    /// Creates `n` slots (uid, empty network namespace made once, a spawner thread in the slot's
    /// template mount namespace, on hybrid hosts v1 groups).
    pub fn make_slots(&self, n: usize) -> Result<Vec<Slot>, JailError> {
        let template = slot::Template {
            root: cpath(&self.root)?,
            ops: mount::template(&mount::TemplateInputs {
                root: &self.root,
                system: &self.system,
                mount_points: &self.mount_points,
            })?,
        };
        slot::make_slots(&self.cgroups, self.uid_base, n, template)
    }

    /// A new random run directory name, `jobe_XXXXXX` as Jobe's `tempnam`, and the path the
    /// jail will see it at (planning needs the path before a slot is free).
    pub fn new_run_dir_name() -> (String, String) {
        rundir::new_name()
    }

    /// Creates a run directory the jail sees as `/home/jobe/runs/<name>` (`name` from
    /// `new_run_dir_name`; on the host it has a random name of its own) for `slot`: mode 0700,
    /// owned by the slot's uid, so other slots' users cannot enter it.
    ///
    /// The directory is a tmpfs of its own, `size_bytes` large (at least 1 MiB: a tmpfs of size
    /// 0 would be unlimited) with at most `RUN_DIR_INODES` inodes: `RLIMIT_FSIZE` limits each
    /// file, and only a filesystem of its own limits all of them together, so that a program
    /// writing many files cannot fill the disk of `data_dir` (payload `resources/disk_fill`).
    /// Its pages are charged to the memory cgroup of whoever writes them (the job, or the daemon
    /// for the files of the request) and freed when it is unmounted on drop.
    pub fn create_run_dir(
        &self,
        slot: &Slot,
        name: &str,
        size_bytes: u64,
    ) -> Result<RunDir, JailError> {
        rundir::create(
            &self.runs,
            name,
            size_bytes,
            slot.uid,
            self.gid,
            &self.teardown,
            slot.fence.as_ref(),
        )
    }

    /// Removes run directories left by a previous daemon that died (the data directory is
    /// locked to one daemon, so none of them is in use), unmounting their tmpfs first.
    pub fn remove_stale_run_dirs(&self) {
        rundir::remove_stale(&self.runs);
    }

    /// As [`Jail::remove_stale_run_dirs`] for the data directory of a daemon that is not
    /// running (the caller holds its lock), without a jail: `runner check` cleans up after a
    /// killed daemon. Returns how many run directories it removed.
    pub fn remove_stale_run_dirs_of(data_dir: &Path) -> usize {
        artifact::remove_stale(data_dir);
        rundir::remove_stale(&data_dir.join("runs"))
    }

    /// Keeps what a finished compile step left in `run_dir` as an [`Artifact`] (root-owned, under
    /// `<data_dir>/artifacts`), for steps that run it read-only in run directories of their own.
    pub fn make_artifact(&self, run_dir: &RunDir) -> Result<Artifact, JailError> {
        artifact::make(self.data_dir(), run_dir)
    }

    /// Removes artifacts left by a previous daemon that died.
    pub fn remove_stale_artifacts(&self) {
        artifact::remove_stale(self.data_dir());
    }

    fn data_dir(&self) -> &Path {
        self.runs.parent().unwrap_or(&self.runs)
    }

    /// Runs one step in a fresh jail and waits for it: the table of contents of a jail. Each
    /// numbered comment is the step of the same number in docs/jail.md ("Steps, in order");
    /// init and the program run steps 8–13 and 16–28 in `child.rs`.
    pub async fn spawn(&self, spec: JailSpec<'_>) -> Result<JailOutput, JailError> {
        self.spawn_inner(spec, StepExtras::default(), Clock::default())
            .await
    }

    /// [`Jail::spawn`] with judge mode's [`StepExtras`] (stdin from a file, a read-only compiled
    /// artifact, cancellation, a kill on stdout overflow).
    pub async fn spawn_with(
        &self,
        spec: JailSpec<'_>,
        extras: StepExtras<'_>,
    ) -> Result<JailOutput, JailError> {
        self.spawn_inner(spec, extras, Clock::default()).await
    }

    /// `spawn`, taking a timestamp at the end of each step into `clock` (`runner bench-jail`).
    pub async fn spawn_timed(
        &self,
        spec: JailSpec<'_>,
        clock: Arc<StepClock>,
    ) -> Result<JailOutput, JailError> {
        self.spawn_inner(spec, StepExtras::default(), Clock(Some(clock)))
            .await
    }

    async fn spawn_inner(
        &self,
        spec: JailSpec<'_>,
        extras: StepExtras<'_>,
        clock: Clock,
    ) -> Result<JailOutput, JailError> {
        clock.mark(Mark::Start);
        let limits = spec.step.limits;
        // 1. The profile's seccomp policy, compiled at start-up.
        let policy = self.policy(spec.policy)?;
        clock.mark(Mark::Policy);
        // 2. The job's cgroup, its limits written before any process of the job exists; the
        //    eBPF monitor watches it from then on, so it sees the first process too. On a
        //    hybrid host the slot's memory group is reused: first, what the slot's finished
        //    steps wrote in their filesystems is released (docs/jail.md, "Teardown off the
        //    request path").
        if let Some(fence) = &spec.slot.fence {
            fence.passed().await;
        }
        let (mem, procs) = (limits.memory_bytes, limits.procs);
        let cg = self
            .cgroups
            .create_job(mem, procs, spec.slot.cgroup.as_ref())?;
        let mut events = self.register(&cg, limits.cpu)?;
        clock.mark(Mark::Cgroup);
        // 3.–5. Everything the child needs, made now: after clone3 it may not allocate.
        let procs = OwnedFd::from(cg.open_procs()?);
        let (child_ends, daemon) = prepare::pipes(spec.stdin, extras.stdin_file, procs)?;
        clock.mark(Mark::Pipes);
        let extra_ro = prepare::existing(spec.extra_ro);
        let ruleset = self.landlock_ruleset(&extra_ro, &spec.run_dir.host)?;
        clock.mark(Mark::Ruleset);
        let (mut prepared, trees) = self.prepare(
            &spec,
            policy,
            &ruleset,
            child_ends.raw(),
            &extra_ro,
            extras.artifact,
        )?;
        prepared.clock = clock.clone();
        clock.mark(Mark::Prepared);
        // 6.–7. On the slot's spawner thread: clone3 into new namespaces and a copy of the slot's
        //    template mount namespace, straight into the job's cgroup; init says it started. The
        //    wall clock starts. Init runs steps 8–13 meanwhile.
        let started = Instant::now();
        let init = clone_jail(spec.slot, &cg, prepared, daemon.started_r).await;
        clock.mark(Mark::Resumed);
        // Init has its own copies now; ours must go, or the pipes never reach EOF.
        drop((child_ends, ruleset, trees));
        let pidfd = init?;
        // 14. Hold the jail's mount namespace, so that init's exit does not tear it down (and
        //     make us wait for an RCU grace period): a teardown thread does, after the step.
        let _mount_ns = sys::pidfd_mnt_ns(pidfd.as_raw_fd()).ok().map(|ns| {
            self.teardown
                .hold(Release::MountNs(ns), spec.slot.fence.as_ref())
        });
        // 15. The output readers, running concurrently with everything below. Judge mode
        //     kills the step once stdout passes its limit (OLE).
        let (overflow_tx, overflow_rx) = tokio::sync::watch::channel(false);
        let overflow_tx = extras.kill_on_stdout_overflow.then_some(overflow_tx);
        let stdout = tokio::spawn(watch::read_capped_flagged(
            daemon.stdout,
            limits.stream_bytes,
            overflow_tx,
        ));
        let stderr = tokio::spawn(watch::read_capped(daemon.stderr, limits.stream_bytes));
        clock.mark(Mark::Readers);
        // 29. The child's setup report: EOF at exec, or the step that failed.
        let exec_failed = match setup_report(daemon.err_r).await {
            Ok(end) => end,
            Err(err) => {
                abandon(&pidfd, cg).await;
                return Err(err);
            }
        };
        clock.mark(Mark::SetupReport);
        // 30. The seccomp listener (none if exec failed).
        let listener = match exec_failed {
            None => sys::recv_fd(daemon.notify_r.as_raw_fd()).map_err(sys_err("recvmsg"))?,
            Some(_) => None,
        };
        clock.mark(Mark::Listener);
        // 31. Watch until init exits, killing the job at its first limit.
        let watched = Watched {
            cg: &cg,
            pidfd: &pidfd,
            policy,
            cpu_budget: limits.cpu,
            wall_deadline: started + limits.wall,
            ncpu: self.ncpu,
            events: events.as_mut(),
            cancel: extras.cancel,
            overflow: extras.kill_on_stdout_overflow.then_some(overflow_rx),
        };
        let killed = watch::watch(watched, listener).await;
        clock.mark(Mark::InitGone);
        // 32. The program's wait status, init reaped, the wall clock stopped. Init is gone, so
        //     the kernel has killed the namespace and the output pipes reach EOF promptly.
        let status = watch::read_status(daemon.status_r).await;
        watch::reap(&pidfd).await;
        let wall = started.elapsed();
        let (stdout, stderr) = (stdout.await.unwrap_or_default(), stderr.await);
        clock.mark(Mark::Status);
        // 33. The cgroup's counters, then the cgroup destroyed. After that every process of the
        //     job is gone, so its exit records are in the monitor's ring buffer.
        let counted = Counted::read(&cg);
        clock.mark(Mark::Counted);
        cg.destroy().await;
        clock.mark(Mark::Destroyed);
        let ebpf = events.map(JobWatch::finish);
        // 34. How it ended.
        let usage = watch::usage(&counted, wall, status, killed.at);
        let budget_event = ebpf.as_ref().is_some_and(|s| s.budget_used.is_some());
        let end = watch::decide_end(
            exec_failed.or(killed.reason),
            &counted,
            limits.cpu,
            &usage,
            budget_event,
        );
        clock.mark(Mark::Decided);
        Ok(JailOutput {
            stdout: stdout.bytes,
            stdout_truncated: stdout.dropped,
            stderr: stderr.map(|c| c.bytes).unwrap_or_default(),
            end,
            usage,
            ebpf,
        })
    }

    fn policy(&self, name: &str) -> Result<&Policy, JailError> {
        self.policies
            .get(name)
            .ok_or_else(|| JailError::UnknownPolicy(name.to_owned()))
    }

    /// Registers the job with the eBPF monitor, if there is one.
    fn register(&self, cg: &JobCgroup, budget: Duration) -> Result<Option<JobWatch>, JailError> {
        match &self.monitor {
            Some(m) => Ok(Some(m.register(cg.id()?, budget)?)),
            None => Ok(None),
        }
    }
}

/// `<data_dir>`, `<data_dir>/root` (the empty mount point of jail roots) and `<data_dir>/runs`,
/// created if missing and given their modes (again, if they existed).
fn make_data_dirs(data_dir: &Path) -> Result<(PathBuf, PathBuf), JailError> {
    let root = data_dir.join("root");
    let runs = data_dir.join("runs");
    for (dir, mode) in [(data_dir, 0o711), (&root, 0o755), (&runs, 0o711)] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(io_err("create", dir))?;
        // Other slots' users must not list the runs of others.
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", dir))?;
    }
    Ok((root, runs))
}

/// The Landlock rules every jail gets, opened once (O_PATH): the system directories (read,
/// execute) and the device nodes (read and write; the random ones read only).
fn landlock_base(abi: Abi, system: &[SysEntry]) -> Result<Vec<(OwnedFd, u64)>, JailError> {
    let mut base = Vec::new();
    let mut rule = |p: &Path, access: u64| -> Result<(), JailError> {
        let fd = sys::open_owned(&cpath(p)?, libc::O_PATH)
            .map_err(|e| io_err("open", p)(e.into_io()))?;
        base.push((fd, access));
        Ok(())
    };
    for e in system {
        if let SysEntry::Dir(p) = e {
            rule(p, landlock::RX)?;
        }
    }
    for d in DEV_NODES {
        let access = if d.ends_with("random") {
            landlock::READ_FILE
        } else {
            abi.dev_rw()
        };
        rule(&Path::new("/dev").join(d), access)?;
    }
    Ok(base)
}

/// Steps 6–7: on the slot's spawner thread, `clone3` with the jail's namespaces, into the job's
/// v2 cgroup (the child's mount namespace is a copy of the thread's, the slot template, and on
/// hybrid hosts it inherits the thread's v1 groups), sharing our memory as a vfork child does:
/// no page table is copied and nothing is torn down at its exit (docs/jail.md, "Init shares
/// the daemon's memory"). The child becomes the jail's init (`child::init`); the spawner thread
/// stays suspended until init exits and keeps `prepared` and the stacks alive until then. Here
/// we wait for init's "started" byte and take its pidfd.
async fn clone_jail(
    slot: &Slot,
    cg: &JobCgroup,
    prepared: Prepared,
    started_r: OwnedFd,
) -> Result<OwnedFd, JailError> {
    // NEWCGROUP: the job sees its own cgroup as "/" (no host cgroup paths in /proc/self/cgroup).
    let flags = (libc::CLONE_NEWPID
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP) as u64;
    let cgroup_fd = cg.clone_fd();
    let pidfd = Arc::new(sys::PidfdCell::new());
    let cell = pidfd.clone();
    let (tx, mut gone) = tokio::sync::oneshot::channel();
    slot.run_clone(Box::new(move || {
        // Allocation is fine here (before the clone); the child only reads `prepared`.
        let ptrs = child::Ptrs::new(&prepared);
        let res = sys::StackMem::new(child::INIT_STACK).and_then(|mut init_stack| {
            let mut program_stack = sys::StackMem::new(child::PROGRAM_STACK)?;
            let program_stack = program_stack.as_mut_slice();
            prepared.clock.mark(Mark::CloneCall);
            let mut run_init = || child::init(&prepared, &ptrs, program_stack);
            sys::clone3_vfork(
                flags,
                cgroup_fd,
                init_stack.as_mut_slice(),
                &cell,
                &mut run_init,
            )
        });
        // Init is gone (or never was): `prepared` and the stacks may go.
        let _ = tx.send(res);
    }))?;
    // 7. Init's "started"; the spawner thread answers first only if the clone failed or init
    //    exited before it could say so.
    let mut started =
        tokio::net::unix::pipe::Receiver::from_owned_fd(started_r).map_err(|source| {
            JailError::Syscall {
                call: "register the started pipe",
                source,
            }
        })?;
    let mut byte = [0u8; 1];
    let gone_first = tokio::select! {
        biased;
        read = started.read_exact(&mut byte) => match read {
            Ok(_) => None,
            Err(source) => {
                if let Some(fd) = pidfd.take() {
                    let _ = sys::pidfd_send_signal(fd.as_raw_fd(), libc::SIGKILL);
                    watch::reap(&fd).await;
                }
                return Err(JailError::Syscall { call: "read started", source });
            }
        },
        res = &mut gone => Some(res),
    };
    // Init may have run the whole step before this task looked (a busy machine): then its
    // "started" waits in the pipe, which the reactor may not have reported yet.
    if let Some(res) = gone_first
        && sys::read(started.as_raw_fd(), &mut byte) != Ok(1)
    {
        let early = match res {
            Ok(Err(errno)) => errno.into_io(),
            _ => io::Error::other("the jail's init exited before it started"),
        };
        if let Some(fd) = pidfd.take() {
            watch::reap(&fd).await;
        }
        return Err(JailError::Syscall {
            call: "clone3",
            source: early,
        });
    }
    // The kernel stored the pidfd before init ran, and init ran before it wrote "started".
    pidfd.take().ok_or_else(|| JailError::Syscall {
        call: "clone3",
        source: io::Error::other("no pidfd for the jail's init"),
    })
}

/// Step 29: reads the error pipe to its end (it closes at exec). `Ok(None)`: exec happened;
/// `Ok(Some(End::ExecFailed))`: exec failed, the program's outcome; `Err`: a setup step failed
/// (or the record is unreadable: fail closed).
async fn setup_report(err_r: OwnedFd) -> Result<Option<End>, JailError> {
    let rec = watch::read_all(err_r).await.unwrap_or_default();
    if rec.is_empty() {
        return Ok(None);
    }
    match SetupFailure::from_bytes(&rec) {
        Some(f) if f.step == child::Step::Exec => Ok(Some(End::ExecFailed(f.errno))),
        Some(f) => Err(JailError::Setup {
            step: f.step.name(),
            source: io::Error::from_raw_os_error(f.errno),
        }),
        None => Err(JailError::Setup {
            step: "unknown",
            source: io::Error::other("unreadable setup report"),
        }),
    }
}

/// Ends a jail whose setup failed: SIGKILL to init (its death empties the pid namespace), reap
/// it, destroy the job cgroup.
async fn abandon(pidfd: &OwnedFd, cg: JobCgroup) {
    let _ = sys::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL);
    watch::reap(pidfd).await;
    cg.destroy().await;
}
