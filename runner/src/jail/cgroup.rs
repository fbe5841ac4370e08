//! Per-job cgroups on pure cgroup v2 hosts and on hybrid hosts (v1 controllers + a cgroup2 mount
//! without controllers).
//!
//! Owns: finding the cgroup this process is in, creating *our* subtree under it
//! (`runner-<pid>`), one child per job with its limits, killing a job, reading its counters, and
//! removing everything it created. It never writes into a cgroup it did not create, except that on
//! a delegated pure-v2 cgroup (systemd `Delegate=yes`) it moves itself into a leaf so it may enable
//! controllers for its children, as cgroup v2's no-internal-process rule requires.
//!
//! Why not cgroups-rs: it sees hybrid hosts as pure v1, creates a directory in every v1 hierarchy
//! and pulls in zbus; what we need is a dozen file writes (docs/kernel.md §3).
//!
//! Layouts:
//! - V2: `<cg2>/<own>/runner-<pid>/job-N` with memory.max, memory.swap.max=0,
//!   pids.max. CPU time from cpu.stat.
//! - Hybrid: identity, kill, CLONE_INTO_CGROUP and cpu.stat from `<cg2>/<own>/runner-<pid>/job-N`
//!   (a v2 directory without controllers still has them), limits from
//!   `<memory v1>/<own>/runner-<pid>/job-N` (memory.limit_in_bytes, OOM eventfd) and
//!   `<pids v1>/<own>/runner-<pid>/job-N` (pids.max). The process is moved into the v1 groups by
//!   the parent before the jail's init is released (see `Jail::spawn`).

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::sys;

const CGROUP_PROCS: &str = "cgroup.procs";
const CGROUP_KILL: &str = "cgroup.kill";
const CGROUP_CONTROLLERS: &str = "cgroup.controllers";
const CGROUP_SUBTREE_CONTROL: &str = "cgroup.subtree_control";
const CPU_STAT: &str = "cpu.stat";
const CPU_WEIGHT_NICE: &str = "cpu.weight.nice";
const MEMORY_MAX: &str = "memory.max";
const MEMORY_SWAP_MAX: &str = "memory.swap.max";
const MEMORY_EVENTS: &str = "memory.events";
const MEMORY_PEAK: &str = "memory.peak";
const PIDS_MAX: &str = "pids.max";
const V1_MEMORY_LIMIT: &str = "memory.limit_in_bytes";
const V1_MEMORY_MAX_USAGE: &str = "memory.max_usage_in_bytes";
const V1_MEMORY_SWAPPINESS: &str = "memory.swappiness";
const V1_MEMSW_LIMIT: &str = "memory.memsw.limit_in_bytes";
const V1_OOM_CONTROL: &str = "memory.oom_control";
const V1_EVENT_CONTROL: &str = "cgroup.event_control";

/// Errors of the cgroup layer. Each names the failed step and the path.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup2 mount found in {mountinfo}")]
    NoCgroup2 { mountinfo: PathBuf },
    #[error(
        "cgroup v2 controllers {missing} are not available to {path} and no v1 hierarchy provides them"
    )]
    MissingControllers { path: PathBuf, missing: String },
    #[error(
        "cannot create job cgroups below {path}: {others} other process(es) share this cgroup \
         (e.g. pid {example}), and cgroup v2 enables the memory and pids controllers only below a \
         cgroup without processes. Start runner in a cgroup of its own: as the systemd service \
         (deploy/runner.service), or by hand with `systemd-run --scope -p Delegate=yes runner \
         serve …`"
    )]
    SharedCgroup {
        path: PathBuf,
        others: usize,
        example: u32,
    },
    #[error("cannot {step} {path}")]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        step,
        path: path.to_owned(),
        source,
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err("write", path))
}

/// Where the kernel files are; constructor parameters so tests can use a fixture tree.
#[derive(Debug, Clone)]
pub struct KernelPaths {
    pub proc_self_cgroup: PathBuf,
    pub proc_self_mountinfo: PathBuf,
}

impl Default for KernelPaths {
    fn default() -> Self {
        KernelPaths {
            proc_self_cgroup: "/proc/self/cgroup".into(),
            proc_self_mountinfo: "/proc/self/mountinfo".into(),
        }
    }
}

/// Which cgroup layout this host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Pure v2: one directory per job with memory, pids (and cpu) controllers.
    V2,
    /// v1 memory and pids controllers for limits, a controller-less v2 directory for the rest.
    Hybrid,
}

/// The subtree this daemon created and the jobs in it.
#[derive(Debug)]
pub struct Cgroups {
    pub layout: Layout,
    /// `<cg2>/<own>/runner-<pid>`.
    v2_base: PathBuf,
    /// Hybrid only.
    v1_memory_base: Option<PathBuf>,
    v1_pids_base: Option<PathBuf>,
    next_id: AtomicU64,
}

struct Mounts {
    cgroup2: Option<PathBuf>,
    v1_memory: Option<PathBuf>,
    v1_pids: Option<PathBuf>,
}

fn parse_mounts(mountinfo: &str) -> Mounts {
    let mut m = Mounts {
        cgroup2: None,
        v1_memory: None,
        v1_pids: None,
    };
    for line in mountinfo.lines() {
        // mountinfo: id parent maj:min root mountpoint opts [optional…] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let mut rf = right.split(' ');
        let (Some(fstype), _, Some(superopts)) = (rf.next(), rf.next(), rf.next()) else {
            continue;
        };
        let Some(mountpoint) = fields.get(4) else {
            continue;
        };
        let mp = PathBuf::from(mountpoint);
        match fstype {
            "cgroup2" if m.cgroup2.is_none() => m.cgroup2 = Some(mp),
            "cgroup" => {
                let opts: Vec<&str> = superopts.split(',').collect();
                if opts.contains(&"memory") && m.v1_memory.is_none() {
                    m.v1_memory = Some(mp);
                } else if opts.contains(&"pids") && m.v1_pids.is_none() {
                    m.v1_pids = Some(mp);
                }
            }
            _ => {}
        }
    }
    m
}

/// Parses /proc/self/cgroup into (v2 path, v1 memory path, v1 pids path).
fn parse_own(cgroup: &str) -> (Option<String>, Option<String>, Option<String>) {
    let (mut v2, mut mem, mut pids) = (None, None, None);
    for line in cgroup.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            v2 = Some(path.to_owned());
        }
        for c in ctrls.split(',') {
            match c {
                "memory" => mem = Some(path.to_owned()),
                "pids" => pids = Some(path.to_owned()),
                _ => {}
            }
        }
    }
    (v2, mem, pids)
}

fn join(mount: &Path, own: &str) -> PathBuf {
    mount.join(own.trim_start_matches('/'))
}

fn controllers(dir: &Path, file: &str) -> Vec<String> {
    fs::read_to_string(dir.join(file))
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

impl Cgroups {
    /// Detects the layout and creates `runner-<pid>` under this process's own cgroup(s).
    pub fn setup(paths: &KernelPaths) -> Result<Cgroups, CgroupError> {
        let mountinfo = fs::read_to_string(&paths.proc_self_mountinfo)
            .map_err(io_err("read", &paths.proc_self_mountinfo))?;
        let own = fs::read_to_string(&paths.proc_self_cgroup)
            .map_err(io_err("read", &paths.proc_self_cgroup))?;
        let mounts = parse_mounts(&mountinfo);
        let (own_v2, own_mem, own_pids) = parse_own(&own);
        let cg2 = mounts.cgroup2.ok_or_else(|| CgroupError::NoCgroup2 {
            mountinfo: paths.proc_self_mountinfo.clone(),
        })?;
        let own_v2_dir = join(&cg2, own_v2.as_deref().unwrap_or("/"));
        let own_mem_dir = mounts
            .v1_memory
            .as_ref()
            .map(|m| join(m, own_mem.as_deref().unwrap_or("/")));
        let own_pids_dir = mounts
            .v1_pids
            .as_ref()
            .map(|m| join(m, own_pids.as_deref().unwrap_or("/")));
        for dir in [
            Some(&own_v2_dir),
            own_mem_dir.as_ref(),
            own_pids_dir.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            remove_stale(dir);
        }
        // Unique per Cgroups value (tests create several per process); the pid comes first so
        // `remove_stale` can tell whether the owner is alive.
        static INSTANCE: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "runner-{}-{}",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::Relaxed)
        );
        let available = controllers(&own_v2_dir, CGROUP_CONTROLLERS);
        let has = |c: &str| available.iter().any(|a| a == c);

        if has("memory") && has("pids") {
            let parent = Self::prepare_v2_parent(&own_v2_dir, own_v2.as_deref() == Some("/"))?;
            let base = parent.join(&name);
            fs::create_dir(&base).map_err(io_err("create", &base))?;
            let mut ctl = vec!["+memory", "+pids"];
            if controllers(&base, CGROUP_CONTROLLERS)
                .iter()
                .any(|c| c == "cpu")
            {
                ctl.push("+cpu");
            }
            write(&base.join(CGROUP_SUBTREE_CONTROL), &ctl.join(" "))?;
            // With the cpu controller, the jobs' subtree is one scheduling group beside the
            // daemon's, weighed as a whole: the nice value of the jobs counts only inside it.
            // The subtree gets the same nice value, so that the daemon still wakes at once to
            // stop a job at its budget when jobs keep every CPU busy (docs/jail.md, step 22).
            let weight = base.join(CPU_WEIGHT_NICE);
            if weight.exists() {
                write(&weight, &super::child::JOB_NICE.to_string())?;
            }
            return Ok(Cgroups {
                layout: Layout::V2,
                v2_base: base,
                v1_memory_base: None,
                v1_pids_base: None,
                next_id: AtomicU64::new(0),
            });
        }

        // Hybrid: the controllers live in v1 hierarchies.
        let (Some(mem_mount), Some(pids_mount)) = (mounts.v1_memory, mounts.v1_pids) else {
            let missing: Vec<&str> = ["memory", "pids"].into_iter().filter(|c| !has(c)).collect();
            return Err(CgroupError::MissingControllers {
                path: own_v2_dir,
                missing: missing.join(", "),
            });
        };
        let v2_base = own_v2_dir.join(&name);
        let mem_base = join(&mem_mount, own_mem.as_deref().unwrap_or("/")).join(&name);
        let pids_base = join(&pids_mount, own_pids.as_deref().unwrap_or("/")).join(&name);
        for dir in [&v2_base, &mem_base, &pids_base] {
            fs::create_dir(dir).map_err(io_err("create", dir))?;
        }
        Ok(Cgroups {
            layout: Layout::Hybrid,
            v2_base,
            v1_memory_base: Some(mem_base),
            v1_pids_base: Some(pids_base),
            next_id: AtomicU64::new(0),
        })
    }

    /// The subtree's directories, in every hierarchy used.
    pub fn subtrees(&self) -> Vec<PathBuf> {
        [
            Some(&self.v2_base),
            self.v1_memory_base.as_ref(),
            self.v1_pids_base.as_ref(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// `<cg2>/<own>/runner-<pid>`: every job's cgroup2 directory is a child of it.
    pub fn v2_base(&self) -> &Path {
        &self.v2_base
    }

    /// On pure v2, job cgroups need memory and pids enabled in their parent's subtree_control,
    /// and (no-internal-process rule) a non-root cgroup with controllers enabled for children may
    /// not hold processes. If our own cgroup already delegates the controllers we use it as is;
    /// if it is a non-root cgroup that holds only this process (a delegated service cgroup, or a
    /// scope of its own) we move this process into a leaf `runner-daemon` and enable the
    /// controllers on our own cgroup. If other processes share it (a daemon started by hand from
    /// a login shell: the session's cgroup holds the shell), that cannot work and we never move
    /// processes that are not ours: a clear error says how to start it instead.
    fn prepare_v2_parent(own: &Path, own_is_root: bool) -> Result<PathBuf, CgroupError> {
        let enabled = controllers(own, CGROUP_SUBTREE_CONTROL);
        if ["memory", "pids"]
            .iter()
            .all(|c| enabled.iter().any(|e| e == c))
        {
            return Ok(own.to_owned());
        }
        if own_is_root {
            return Err(CgroupError::MissingControllers {
                path: own.to_owned(),
                missing: "memory, pids (not enabled in the root's cgroup.subtree_control)".into(),
            });
        }
        let me = std::process::id();
        let shared = |own: &Path| -> Option<CgroupError> {
            let others: Vec<u32> = fs::read_to_string(own.join(CGROUP_PROCS))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok())
                .filter(|p| *p != me)
                .collect();
            others.first().map(|&example| CgroupError::SharedCgroup {
                path: own.to_owned(),
                others: others.len(),
                example,
            })
        };
        if let Some(e) = shared(own) {
            return Err(e);
        }
        let leaf = own.join("runner-daemon");
        match fs::create_dir(&leaf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", &leaf)(e)),
        }
        write(&leaf.join(CGROUP_PROCS), &me.to_string())?;
        if let Err(e) = write(&own.join(CGROUP_SUBTREE_CONTROL), "+memory +pids") {
            // A process joined our cgroup meanwhile (EBUSY), or it is not ours to configure:
            // back where we were, leaf removed, and say why.
            let _ = fs::write(own.join(CGROUP_PROCS), me.to_string());
            let _ = fs::remove_dir(&leaf);
            return Err(shared(own).unwrap_or(e));
        }
        Ok(own.to_owned())
    }

    /// Hybrid hosts only: the v1 memory and pids groups of one slot. The slot's spawner thread
    /// lives in them, so every job it clones starts inside without a `cgroup.procs` write (see
    /// `SlotCgroup`). `None` on pure v2 hosts, where each job gets all its limits in its own v2
    /// cgroup through `CLONE_INTO_CGROUP`.
    pub fn create_slot(&self, index: usize) -> Result<Option<SlotCgroup>, CgroupError> {
        let (Some(mem_base), Some(pids_base)) = (&self.v1_memory_base, &self.v1_pids_base) else {
            return Ok(None);
        };
        // Unique even if slots are made twice (e.g. `runner bench-jail` adds one).
        let name = format!(
            "slot-{index}-{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let memory = mem_base.join(&name);
        fs::create_dir(&memory).map_err(io_err("create", &memory))?;
        let slot = SlotCgroup {
            // Swap accounting is a boot option (swapaccount=1); without it there is no memsw.
            memsw: memory.join(V1_MEMSW_LIMIT).exists(),
            memory,
            pids: pids_base.join(&name),
        };
        fs::create_dir(&slot.pids).map_err(io_err("create", &slot.pids))?;
        // Without swap accounting, keep a job's pages out of swap at least (best effort).
        let _ = fs::write(slot.memory.join(V1_MEMORY_SWAPPINESS), "0");
        Ok(Some(slot))
    }

    /// Creates the cgroup(s) of one job and applies its limits. `procs` is what the program may
    /// have (processes plus threads); the jail's init is counted on top, as Jobe's `--nproc=P+1`
    /// counts its `sh -c`. On hybrid hosts `slot` holds the v1 groups the job will start in.
    pub fn create_job(
        &self,
        memory_bytes: u64,
        procs: u32,
        slot: Option<&SlotCgroup>,
    ) -> Result<JobCgroup, CgroupError> {
        let procs = procs.saturating_add(1);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let v2 = self.v2_base.join(format!("job-{id}"));
        fs::create_dir(&v2).map_err(io_err("create", &v2))?;
        let mut job = JobCgroup {
            layout: self.layout.clone(),
            v2,
            v1_memory: None,
            oom_kills_before: 0,
            dir_fd: None,
        };
        // From here on, dropping `job` removes what was created.
        match (&self.layout, slot) {
            (Layout::V2, _) => {
                write(&job.v2.join(MEMORY_MAX), &memory_bytes.to_string())?;
                // No swap: a job's memory is real memory (absent without swap accounting).
                let swap = job.v2.join(MEMORY_SWAP_MAX);
                if swap.exists() {
                    write(&swap, "0")?;
                }
                // No `memory.oom.group`: the kernel's group kill would kill the jail's init, and
                // the kernel kills every process that shares a victim's memory: init shares the
                // daemon's (docs/jail.md, "Init shares the daemon's memory"). The kernel kills
                // one process (never init: it is a vfork child) and the daemon kills the rest
                // at the OOM event.
                write(&job.v2.join(PIDS_MAX), &procs.to_string())?;
            }
            (Layout::Hybrid, Some(slot)) => {
                // The slot's groups are reused run after run: set this run's limits, restart the
                // peak, and remember the OOM counter to count only this run's kills. The
                // spawner thread is one more task in the pids group.
                let limit = memory_bytes.to_string();
                if slot.memsw {
                    // Swap off: memory+swap = memory. The kernel wants memsw >= memory at every
                    // step, so open memsw up, set memory, then close memsw down to it.
                    write(&slot.memory.join(V1_MEMSW_LIMIT), "-1")?;
                    write(&slot.memory.join(V1_MEMORY_LIMIT), &limit)?;
                    write(&slot.memory.join(V1_MEMSW_LIMIT), &limit)?;
                } else {
                    write(&slot.memory.join(V1_MEMORY_LIMIT), &limit)?;
                }
                write(&slot.memory.join(V1_MEMORY_MAX_USAGE), "0")?;
                write(
                    &slot.pids.join(PIDS_MAX),
                    &procs.saturating_add(1).to_string(),
                )?;
                job.oom_kills_before =
                    read_key(&slot.memory.join(V1_OOM_CONTROL), "oom_kill").unwrap_or(0);
                job.v1_memory = Some(slot.memory.clone());
            }
            (Layout::Hybrid, None) => {
                return Err(CgroupError::MissingControllers {
                    path: job.v2.clone(),
                    missing: "a slot with v1 groups (hybrid host)".into(),
                });
            }
        }
        let dir_c = std::ffi::CString::new(job.v2.as_os_str().as_encoded_bytes())
            .map_err(|e| io_err("open", &job.v2)(io::Error::other(e)))?;
        let fd = sys::open_owned(&dir_c, libc::O_PATH | libc::O_DIRECTORY)
            .or_else(|_| sys::open_owned(&dir_c, libc::O_RDONLY | libc::O_DIRECTORY))
            .map_err(|e| io_err("open", &job.v2)(e.into_io()))?;
        job.dir_fd = Some(fd);
        Ok(job)
    }
}

/// The v1 memory and pids groups of one slot on a hybrid host.
///
/// Why a thread lives here: moving a task between cgroups (`cgroup.procs`) takes the kernel's
/// cgroup threadgroup rwsem for writing, which waits for an RCU grace period whenever no other
/// migration happened in the last few milliseconds: 8–16 ms per job, measured on this kind of
/// host. A fork inherits its parent *thread*'s v1 groups under the read side instead. So each
/// slot's spawner thread moves itself in once (`enter_current_thread`) and clones every job's
/// init from there; the v2 part still comes from `CLONE_INTO_CGROUP`.
#[derive(Debug)]
pub struct SlotCgroup {
    memory: PathBuf,
    pids: PathBuf,
    memsw: bool,
}

impl SlotCgroup {
    /// A task that moves the thread running it (not the whole process: v1 `tasks` takes a
    /// thread id) into the slot's memory and pids groups. Memory is charged to the process's mm
    /// owner, so the daemon's own allocations do not count against the jobs, and the memcg OOM
    /// killer only considers thread-group leaders (`CSS_TASK_ITER_PROCS` in
    /// `mem_cgroup_scan_tasks`), so it never picks the daemon through this thread.
    pub fn entry(&self) -> impl FnOnce() -> Result<(), CgroupError> + Send + 'static {
        let dirs = [self.memory.clone(), self.pids.clone()];
        move || {
            let tid = sys::gettid().to_string();
            for dir in &dirs {
                write(&dir.join("tasks"), &tid)?;
            }
            Ok(())
        }
    }
}

impl Drop for SlotCgroup {
    fn drop(&mut self) {
        // The spawner thread is gone by now (`slot::Spawner` waits until the kernel has let go
        // of it); `remove_cgroup` still waits for anything else the kernel counts in them.
        for dir in [&self.memory, &self.pids] {
            if let Err(err) = remove_cgroup(dir) {
                tracing::warn!(?err, cgroup = %dir.display(), held_by = %holders(dir), "failed to remove slot cgroup");
            }
        }
    }
}

/// How long removing a cgroup waits for the kernel to let go of it.
const REMOVE_WAIT: Duration = Duration::from_secs(5);

/// The first back-off of the waits below, and the longest.
const WAIT_FIRST: Duration = Duration::from_micros(100);
const WAIT_MAX: Duration = Duration::from_millis(10);

/// `rmdir` of a cgroup whose processes are gone or killed: while the kernel still counts a task
/// in it (an exiting task leaves its cgroups late in `do_exit`, after its parent may already
/// have seen it go) or a child directory exists, `rmdir` fails with EBUSY, which is exactly the
/// condition waited on here, with a back-off from 100 µs to 10 ms, for at most `REMOVE_WAIT`
/// (5 s: a busy machine can keep an exiting task off the CPU for a long time). A missing directory
/// is fine.
fn remove_cgroup(dir: &Path) -> io::Result<()> {
    let deadline = std::time::Instant::now() + REMOVE_WAIT;
    let mut delay = WAIT_FIRST;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(delay);
                delay = (delay * 2).min(WAIT_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

/// What keeps a cgroup busy, for the log: its tasks (v1 `tasks`, v2 `cgroup.procs`) and child
/// directories.
fn holders(dir: &Path) -> String {
    let tasks = fs::read_to_string(dir.join("tasks"))
        .or_else(|_| fs::read_to_string(dir.join(CGROUP_PROCS)))
        .unwrap_or_default();
    let children: Vec<String> = fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    format!(
        "tasks [{}], children [{}]",
        tasks.split_whitespace().collect::<Vec<_>>().join(" "),
        children.join(" ")
    )
}

/// Waits (blocking, bounded by `REMOVE_WAIT`, back-off from 100 µs to 10 ms) until `/proc/self/task/<tid>`
/// is gone: a joined thread has left every cgroup by then (the kernel releases the task after
/// `cgroup_exit`, while `pthread_join` returns as soon as the thread's tid is cleared, earlier in
/// its exit). Returns whether it is gone.
pub(super) fn wait_thread_gone(tid: i32) -> bool {
    let path = PathBuf::from(format!("/proc/self/task/{tid}"));
    let deadline = std::time::Instant::now() + REMOVE_WAIT;
    let mut delay = WAIT_FIRST;
    while path.exists() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(WAIT_MAX);
    }
    true
}

/// Removes `runner-<pid>` subtrees left by runner processes that no longer exist (a crash, or a
/// test binary whose statics were never dropped). Only directories named by our own scheme are
/// touched, and only when their owner is dead; a populated cgroup refuses rmdir and stays.
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("runner-"))
            .and_then(|p| p.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let base = e.path();
        if let Ok(jobs) = fs::read_dir(&base) {
            for j in jobs.flatten() {
                if j.file_type().is_ok_and(|t| t.is_dir()) {
                    // job-N (v2: cgroup.kill) or slot-N (v1: its owner thread died with it).
                    let _ = fs::write(j.path().join(CGROUP_KILL), "1");
                    let _ = remove_cgroup(&j.path());
                }
            }
        }
        match remove_cgroup(&base) {
            Ok(()) => tracing::info!(cgroup = %base.display(), "removed stale cgroup subtree"),
            Err(err) => {
                tracing::warn!(?err, cgroup = %base.display(), "cannot remove stale cgroup subtree")
            }
        }
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in [
            Some(&self.v2_base),
            self.v1_memory_base.as_ref(),
            self.v1_pids_base.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            if let Err(err) = remove_cgroup(dir) {
                tracing::warn!(?err, cgroup = %dir.display(), held_by = %holders(dir), "failed to remove cgroup subtree");
            }
        }
    }
}

/// The cgroup(s) of one job. Dropping it kills what is left and removes the directories.
#[derive(Debug)]
pub struct JobCgroup {
    layout: Layout,
    v2: PathBuf,
    /// Hybrid only: the slot's v1 memory group (not owned: it outlives the job).
    v1_memory: Option<PathBuf>,
    oom_kills_before: u64,
    dir_fd: Option<OwnedFd>,
}

/// The `oom_kill` count of an open v2 `memory.events` (read from its start).
pub fn oom_kills_in(events: &fs::File) -> u64 {
    let mut buf = [0u8; 512];
    let n = std::os::unix::fs::FileExt::read_at(events, &mut buf, 0).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        .unwrap_or(0)
}

fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl JobCgroup {
    /// The v2 directory descriptor for `clone3(CLONE_INTO_CGROUP)`.
    pub fn clone_fd(&self) -> Option<std::os::fd::RawFd> {
        self.dir_fd.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Pure v2 only: the job's `memory.events`, open. The kernel marks it changed (poll
    /// priority) at every event it counts, an OOM kill among them; [`oom_kills_in`] reads it
    /// (which also re-arms the notification).
    pub fn v2_memory_events(&self) -> Option<fs::File> {
        match self.layout {
            Layout::V2 => fs::File::open(self.v2.join(MEMORY_EVENTS)).ok(),
            Layout::Hybrid => None,
        }
    }

    /// Hybrid only: an eventfd that becomes readable when the job's memory cgroup hits OOM
    /// (cgroup v1 `cgroup.event_control` + `memory.oom_control`).
    pub fn v1_oom_eventfd(&self) -> Result<Option<OwnedFd>, CgroupError> {
        let Some(mem) = &self.v1_memory else {
            return Ok(None);
        };
        let efd = sys::eventfd().map_err(|e| io_err("create eventfd for", mem)(e.into_io()))?;
        let oom_path = mem.join(V1_OOM_CONTROL);
        let oom = fs::File::open(&oom_path).map_err(io_err("open", &oom_path))?;
        write(
            &mem.join(V1_EVENT_CONTROL),
            &format!("{} {}", efd.as_raw_fd(), oom.as_raw_fd()),
        )?;
        // The kernel holds its own reference to the control file; ours may close.
        Ok(Some(efd))
    }

    /// The cgroup2 id of the job: the inode number of its directory, which is what
    /// `bpf_get_current_cgroup_id()` returns for its tasks.
    pub fn id(&self) -> Result<u64, CgroupError> {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&self.v2)
            .map(|m| m.ino())
            .map_err(io_err("stat", &self.v2))
    }

    /// This job's v2 `cgroup.procs`, opened for reading: the jail's init reads it to check that
    /// it was born in the job's cgroup (docs/jail.md, step 8), and in its mount namespace the
    /// host's cgroup paths do not exist.
    pub fn open_procs(&self) -> Result<fs::File, CgroupError> {
        let path = self.v2.join(CGROUP_PROCS);
        fs::File::open(&path).map_err(io_err("open", &path))
    }

    /// Kills every process of the job (cgroup.kill, since 5.14; present on v2 dirs of hybrid
    /// hosts too).
    pub fn kill(&self) {
        if let Err(err) = fs::write(self.v2.join(CGROUP_KILL), "1") {
            tracing::warn!(?err, cgroup = %self.v2.display(), "cgroup.kill failed");
        }
    }

    /// CPU time used by all processes of the job, from the v2 cpu.stat (always present).
    pub fn cpu_usage(&self) -> Duration {
        Duration::from_micros(read_key(&self.v2.join(CPU_STAT), "usage_usec").unwrap_or(0))
    }

    /// How many processes the kernel OOM-killed in this job.
    pub fn oom_kills(&self) -> u64 {
        match (&self.layout, &self.v1_memory) {
            (Layout::Hybrid, Some(mem)) => read_key(&mem.join(V1_OOM_CONTROL), "oom_kill")
                .unwrap_or(0)
                .saturating_sub(self.oom_kills_before),
            _ => read_key(&self.v2.join(MEMORY_EVENTS), "oom_kill").unwrap_or(0),
        }
    }

    /// Peak memory of the job in bytes.
    pub fn peak_memory(&self) -> u64 {
        let path = match &self.v1_memory {
            Some(mem) => mem.join(V1_MEMORY_MAX_USAGE),
            None => self.v2.join(MEMORY_PEAK),
        };
        fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Kills the job and removes its directory once the kernel has emptied it: `rmdir` fails
    /// with EBUSY while a task of the job is still counted in it, so it is retried with a
    /// back-off from 100 µs to 10 ms, for at most `REMOVE_WAIT`, without blocking the runtime.
    /// Called after the job's init has exited, when normally nothing is left.
    pub async fn destroy(mut self) {
        self.kill();
        self.dir_fd = None;
        let deadline = tokio::time::Instant::now() + REMOVE_WAIT;
        let mut delay = WAIT_FIRST;
        loop {
            match fs::remove_dir(&self.v2) {
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(WAIT_MAX);
                }
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(err) => {
                    tracing::error!(?err, cgroup = %self.v2.display(), held_by = %holders(&self.v2), "failed to remove job cgroup");
                    return;
                }
            }
        }
    }
}

impl Drop for JobCgroup {
    fn drop(&mut self) {
        if self.dir_fd.take().is_some() {
            // Not destroyed through `destroy` (an error path, or a runtime dropped mid-run):
            // kill, then remove, waiting synchronously for the kernel to empty it.
            self.kill();
            if let Err(err) = remove_cgroup(&self.v2) {
                tracing::error!(?err, cgroup = %self.v2.display(), held_by = %holders(&self.v2), "failed to remove job cgroup");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Parsing /proc files. Creating real cgroups is tested by the
    //! privileged tests (tests/tests/jail_steps.rs).
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec shared:5 - cgroup2 cgroup2 rw,nsdelegate
35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec shared:10 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec shared:11 - cgroup cgroup rw,pids
";

    #[test]
    fn test_parse_hybrid_mounts() {
        let m = parse_mounts(HYBRID_MOUNTINFO);
        assert_eq!(
            m.cgroup2.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            m.v1_memory.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        assert_eq!(m.v1_pids.as_deref(), Some(Path::new("/sys/fs/cgroup/pids")));
    }

    #[test]
    fn test_parse_own_cgroup() {
        let (v2, mem, pids) =
            parse_own("8:pids:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/user.slice\n");
        assert_eq!(v2.as_deref(), Some("/user.slice"));
        assert_eq!(mem.as_deref(), Some("/process_api/abc"));
        assert_eq!(pids.as_deref(), Some("/"));
    }

    #[test]
    fn test_join_strips_leading_slash() {
        assert_eq!(
            join(Path::new("/sys/fs/cgroup/memory"), "/process_api/x"),
            PathBuf::from("/sys/fs/cgroup/memory/process_api/x")
        );
        assert_eq!(join(Path::new("/cg"), "/"), PathBuf::from("/cg/"));
    }

    #[test]
    fn test_read_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("memory.events");
        fs::write(&f, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n").unwrap();
        assert_eq!(read_key(&f, "oom_kill"), Some(2));
        assert_eq!(read_key(&f, "oom"), Some(1));
        assert_eq!(read_key(&f, "absent"), None);
    }
}
