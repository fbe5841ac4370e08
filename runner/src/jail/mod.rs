//! The jail: every compile and every run executes here. `Jail::spawn` is the only place that
//! orders the steps (docs/jail.md lists them, numbered, and must change with this file).
//!
//! Owns: per-slot identities (uid, network namespace), run directories, the jail's mount tree,
//! cgroups, Landlock, seccomp, rlimits, and watching a running job (exit, CPU budget, wall clock,
//! OOM, denied syscalls). Must not: know about languages, HTTP or Jobe outcomes. What the program
//! did comes back as `End`, never as an error; `JailError` is for faults of the host or daemon.

pub mod cgroup;
mod child;
pub mod landlock;
pub mod seccomp;

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::io::unix::AsyncFd;

use self::cgroup::{Cgroups, JobCgroup, KernelPaths};
use self::child::{MountOp, Prepared};
use self::landlock::{Abi, Ruleset};
use self::seccomp::Policy;
use crate::job::Usage;
use crate::monitor::{EbpfMode, JobEvent, JobStats, JobWatch, Monitor};
use crate::profile::plan::Step;
use crate::sys;

/// Where a run directory appears inside the jail (CodeRunner strips this prefix from output).
pub const JAIL_RUNS_DIR: &str = "/home/jobe/runs";

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
        }
    }
}

#[derive(Debug, Clone)]
enum SysEntry {
    Dir(PathBuf),
    Link(PathBuf, PathBuf),
}

/// One execution slot: its own uid and its own empty network namespace, reused run after run
/// (only one run at a time uses a slot).
#[derive(Debug)]
pub struct Slot {
    pub index: usize,
    pub uid: u32,
    netns: OwnedFd,
    /// Hybrid hosts: the thread that clones this slot's jails from inside its v1 groups.
    /// Declared before `cgroup` so it is joined before the groups are removed.
    spawner: Option<Spawner>,
    cgroup: Option<cgroup::SlotCgroup>,
}

type SpawnTask = Box<dyn FnOnce() + Send>;

/// A thread that runs `clone3` for one slot (see `cgroup::SlotCgroup` for why).
#[derive(Debug)]
struct Spawner {
    tx: Option<std::sync::mpsc::Sender<SpawnTask>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spawner {
    fn start(index: usize, slot_cg: &cgroup::SlotCgroup) -> Result<Spawner, JailError> {
        let (tx, rx) = std::sync::mpsc::channel::<SpawnTask>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        // First thing on the new thread: move it into the slot's v1 groups, once.
        let enter = slot_cg.entry();
        let thread = std::thread::Builder::new()
            .name(format!("runner-slot-{index}"))
            .spawn(move || {
                let entered = enter().map_err(JailError::from);
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if ok {
                    for task in rx {
                        task();
                    }
                }
            })
            .map_err(|source| JailError::Syscall {
                call: "spawn slot thread",
                source,
            })?;
        ready_rx.recv().map_err(|_| JailError::Syscall {
            call: "spawn slot thread",
            source: io::Error::other("thread died"),
        })??;
        Ok(Spawner {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `task` on the spawner thread.
    fn run(&self, task: SpawnTask) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(task).is_ok())
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A run directory on the host, removed (without following links) when dropped.
#[derive(Debug)]
pub struct RunDir {
    pub host: PathBuf,
    /// The same directory as the jail sees it: `/home/jobe/runs/jobe_XXXXXX`.
    pub jail: String,
    uid: u32,
    gid: u32,
}

impl RunDir {
    /// Writes a file the job starts with (source, support files), owned by the slot user. The
    /// directory is new and empty, so no link can be in the way; `create_new` makes sure.
    pub fn write_file(&self, name: &str, contents: &[u8]) -> Result<(), JailError> {
        let path = self.host.join(name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io_err("create", &path))?;
        io::Write::write_all(&mut f, contents).map_err(io_err("write", &path))?;
        std::os::unix::fs::fchown(&f, Some(self.uid), Some(self.gid))
            .map_err(io_err("chown", &path))?;
        Ok(())
    }

    /// Reads a file a jailed step created (e.g. Pascal's `.err`), at most `limit` bytes. Never
    /// follows a symlink, never blocks on a FIFO, ignores anything but a regular file.
    pub fn read_file(&self, name: &str, limit: u64) -> Option<Vec<u8>> {
        if name.contains('/') {
            return None;
        }
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.host.join(name))
            .ok()?;
        if !f.metadata().ok()?.is_file() {
            return None;
        }
        let mut buf = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(f, limit), &mut buf).ok()?;
        Some(buf)
    }

    /// Whether a regular file (not a link) of that name exists.
    pub fn has_file(&self, name: &str) -> bool {
        !name.contains('/')
            && fs::symlink_metadata(self.host.join(name)).is_ok_and(|m| m.file_type().is_file())
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        // The tmpfs goes with everything in it, so nothing the program left in it (links,
        // FIFOs, directories of mode 000) is ever walked. Lazily: a descriptor the daemon may
        // still hold must not make the unmount fail.
        if let Ok(p) = cpath(&self.host)
            && let Err(err) = sys::umount2(&p, libc::MNT_DETACH)
        {
            tracing::error!(err = ?err.into_io(), dir = %self.host.display(), "failed to unmount run directory");
        }
        // Now an empty mount point. Should the unmount have failed, remove_dir_all does not
        // follow symlinks (CVE-2022-21658 fixed it); root may remove whatever modes the
        // program set.
        if let Err(err) = fs::remove_dir_all(&self.host) {
            tracing::error!(?err, dir = %self.host.display(), "failed to remove run directory");
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
    pub stderr: Vec<u8>,
    pub end: End,
    pub usage: Usage,
    /// What the eBPF monitor saw of the job (`None` in the no-eBPF mode).
    pub ebpf: Option<JobStats>,
}

/// One step to run.
#[derive(Debug)]
pub struct JailSpec<'a> {
    pub step: &'a Step,
    pub policy: &'a str,
    pub run_dir: &'a RunDir,
    pub slot: &'a Slot,
    pub stdin: Option<&'a [u8]>,
    pub extra_ro: &'a [String],
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
    /// Landlock rules every jail gets, as O_PATH descriptors opened once at start-up: the system
    /// directories (read, execute) and the device nodes.
    landlock_base: Vec<(OwnedFd, u64)>,
    gid: u32,
    uid_base: u32,
    ncpu: u32,
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
        let root = cfg.data_dir.join("root");
        let runs = cfg.data_dir.join("runs");
        for (dir, mode) in [(&cfg.data_dir, 0o711), (&root, 0o755), (&runs, 0o711)] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .map_err(io_err("create", dir))?;
            // Other slots' users must not list the runs of others.
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))
                .map_err(io_err("chmod", dir))?;
        }
        let mut system = Vec::new();
        for p in &cfg.system_paths {
            match fs::symlink_metadata(p) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = fs::read_link(p).map_err(io_err("readlink", p))?;
                    system.push(SysEntry::Link(p.clone(), target));
                }
                Ok(m) if m.is_dir() => system.push(SysEntry::Dir(p.clone())),
                _ => {}
            }
        }
        let cgroups = Cgroups::setup(&cfg.kernel)?;
        let (monitor, monitor_status) = crate::monitor::start(cfg.ebpf, cgroups.v2_base())?;
        let mut landlock_base = Vec::new();
        let mut base_rule = |p: &Path, access: u64| -> Result<(), JailError> {
            let fd = sys::open_owned(&cpath(p)?, libc::O_PATH)
                .map_err(|e| io_err("open", p)(e.into_io()))?;
            landlock_base.push((fd, access));
            Ok(())
        };
        for e in &system {
            if let SysEntry::Dir(p) = e {
                base_rule(p, landlock::RX)?;
            }
        }
        for d in DEV_NODES {
            let access = if d.ends_with("random") {
                landlock::READ_FILE
            } else {
                abi.dev_rw()
            };
            base_rule(&Path::new("/dev").join(d), access)?;
        }
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        Ok(Jail {
            landlock_base,
            cgroups,
            abi,
            policies,
            root,
            runs,
            system,
            gid: cfg.gid,
            uid_base: cfg.uid_base,
            ncpu,
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

    /// The monitor's state, one line (`eBPF monitor: active (…)` or why not).
    pub fn monitor_status(&self) -> &str {
        &self.monitor_status
    }

    pub fn layout(&self) -> &cgroup::Layout {
        &self.cgroups.layout
    }

    pub fn has_policy(&self, name: &str) -> bool {
        self.policies.contains_key(name)
    }

    /// Creates the slots, each with an empty network namespace made once, here: creating a
    /// namespace per run costs ≈0.7 ms plus asynchronous teardown (kernel-notes.md).
    pub fn make_slots(&self, n: usize) -> Result<Vec<Slot>, JailError> {
        (0..n)
            .map(|index| {
                // unshare(CLONE_NEWNET) changes only the calling thread, so do it in a
                // short-lived thread and keep the namespace alive through its descriptor.
                let netns = std::thread::spawn(|| -> Result<OwnedFd, sys::Errno> {
                    sys::unshare(libc::CLONE_NEWNET)?;
                    sys::open_owned(c"/proc/thread-self/ns/net", libc::O_RDONLY)
                })
                .join()
                .map_err(|_| JailError::Syscall {
                    call: "unshare(CLONE_NEWNET)",
                    source: io::Error::other("thread panicked"),
                })?
                .map_err(sys_err("unshare(CLONE_NEWNET)"))?;
                let cgroup = self.cgroups.create_slot(index)?;
                let spawner = cgroup
                    .as_ref()
                    .map(|cg| Spawner::start(index, cg))
                    .transpose()?;
                Ok(Slot {
                    index,
                    uid: self.uid_base + index as u32,
                    netns,
                    spawner,
                    cgroup,
                })
            })
            .collect()
    }

    /// A new random run directory name, `jobe_XXXXXX` as Jobe's `tempnam`, and the path the
    /// jail will see it at (planning needs the path before a slot is free).
    pub fn new_run_dir_name() -> (String, String) {
        let name = format!("jobe_{}", random_suffix());
        let jail = format!("{JAIL_RUNS_DIR}/{name}");
        (name, jail)
    }

    /// Creates the run directory `name` (from `new_run_dir_name`) for `slot`: mode 0700, owned
    /// by the slot's uid, so other slots' users cannot enter it.
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
        let host = self.runs.join(name);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&host)
            .map_err(io_err("create", &host))?;
        let data = format!(
            "size={},nr_inodes={RUN_DIR_INODES},mode=0700,uid={},gid={}",
            size_bytes.max(1 << 20),
            slot.uid,
            self.gid
        );
        let mounted = sys::mount(
            Some(c"runner-run"),
            &cpath(&host)?,
            Some(c"tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&cstr(data)?),
        );
        if let Err(e) = mounted {
            let _ = fs::remove_dir(&host);
            return Err(sys_err("mount(run directory tmpfs)")(e));
        }
        Ok(RunDir {
            jail: format!("{JAIL_RUNS_DIR}/{name}"),
            host,
            uid: slot.uid,
            gid: self.gid,
        })
    }

    /// Removes run directories left by a previous daemon that died (the data directory is
    /// locked to one daemon, so none of them is in use), unmounting their tmpfs first.
    pub fn remove_stale_run_dirs(&self) {
        let Ok(entries) = fs::read_dir(&self.runs) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("jobe_") {
                if let Ok(p) = cpath(&e.path()) {
                    while sys::umount2(&p, libc::MNT_DETACH).is_ok() {}
                }
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    /// The mount tree of one jail, in order, as operations on host paths under `self.root`.
    fn mount_plan(&self, spec: &JailSpec<'_>) -> Result<Vec<MountOp>, JailError> {
        let r = |p: &str| -> Result<CString, JailError> {
            cpath(&self.root.join(p.trim_start_matches('/')))
        };
        let mount = |src: Option<&str>,
                     target: CString,
                     fstype: Option<&str>,
                     flags: libc::c_ulong,
                     data: Option<String>|
         -> Result<MountOp, JailError> {
            Ok(MountOp::Mount {
                src: src.map(cstr).transpose()?,
                target,
                fstype: fstype.map(cstr).transpose()?,
                flags,
                data: data.map(cstr).transpose()?,
            })
        };
        let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
        let disk = spec.step.limits.disk_bytes.max(1 << 20);
        let mut ops = vec![mount(
            Some("runner"),
            cpath(&self.root)?,
            Some("tmpfs"),
            nosuid_nodev,
            Some("size=1m,mode=755".into()),
        )?];
        let bind_ro = |ops: &mut Vec<MountOp>, host: &Path| -> Result<(), JailError> {
            let rel = host.to_str().ok_or(JailError::Nul)?;
            // Parents first (extra paths may be nested, e.g. /opt/tool).
            let mut acc = PathBuf::from("/");
            for comp in Path::new(rel).components().skip(1) {
                acc.push(comp);
                ops.push(MountOp::Mkdir(r(acc.to_str().ok_or(JailError::Nul)?)?));
            }
            let target = r(rel)?;
            ops.push(mount(
                Some(rel),
                target.clone(),
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )?);
            // Recursively: a submount under /usr or /etc must not stay writable.
            ops.push(MountOp::ReadOnlyTree(target));
            Ok(())
        };
        for e in &self.system {
            match e {
                SysEntry::Dir(p) => bind_ro(&mut ops, p)?,
                SysEntry::Link(p, target) => ops.push(MountOp::Symlink {
                    target: cpath(target)?,
                    link: r(p.to_str().ok_or(JailError::Nul)?)?,
                }),
            }
        }
        for p in spec.extra_ro {
            if Path::new(p).exists() {
                bind_ro(&mut ops, Path::new(p))?;
            }
        }
        // /dev: a small tmpfs with the harmless device nodes bound from the host.
        ops.push(MountOp::Mkdir(r("/dev")?));
        ops.push(mount(
            Some("runner"),
            r("/dev")?,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some("size=64k,mode=755".into()),
        )?);
        for d in DEV_NODES {
            let target = r(&format!("/dev/{d}"))?;
            ops.push(MountOp::Touch(target.clone()));
            ops.push(mount(
                Some(&format!("/dev/{d}")),
                target,
                None,
                libc::MS_BIND,
                None,
            )?);
        }
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            ops.push(MountOp::Symlink {
                target: cstr(target)?,
                link: r(&format!("/dev/{link}"))?,
            });
        }
        // Private, size-limited, writable: /dev/shm and /tmp (charged to the job's memory cgroup).
        for dir in ["/dev/shm", "/tmp"] {
            ops.push(MountOp::Mkdir(r(dir)?));
            ops.push(mount(
                Some("runner"),
                r(dir)?,
                Some("tmpfs"),
                nosuid_nodev,
                Some(format!("size={disk},mode=1777")),
            )?);
        }
        // /proc of the jail's own pid namespace. hidepid=invisible (Linux 5.8): the program sees
        // only processes of its own uid, so not init, a copy of the daemon whose command line
        // names the daemon's config and data directory (payload `escape/proc_leaks`).
        ops.push(MountOp::Mkdir(r("/proc")?));
        ops.push(mount(
            Some("proc"),
            r("/proc")?,
            Some("proc"),
            nosuid_nodev | libc::MS_NOEXEC,
            Some("hidepid=invisible".into()),
        )?);
        // The run directory, read-write, at the path Jobe uses.
        let mut acc = PathBuf::from("/");
        for comp in Path::new(&spec.run_dir.jail).components().skip(1) {
            acc.push(comp);
            ops.push(MountOp::Mkdir(r(acc.to_str().ok_or(JailError::Nul)?)?));
        }
        let target = r(&spec.run_dir.jail)?;
        ops.push(mount(
            Some(spec.run_dir.host.to_str().ok_or(JailError::Nul)?),
            target.clone(),
            None,
            libc::MS_BIND,
            None,
        )?);
        ops.push(mount(
            None,
            target,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | nosuid_nodev,
            None,
        )?);
        Ok(ops)
    }

    fn landlock_ruleset(&self, spec: &JailSpec<'_>) -> Result<Ruleset, JailError> {
        let rs = Ruleset::new(self.abi).map_err(|source| JailError::Syscall {
            call: "landlock_create_ruleset",
            source,
        })?;
        for (fd, access) in &self.landlock_base {
            rs.allow_fd(fd.as_fd(), *access)
                .map_err(|source| JailError::Syscall {
                    call: "landlock_add_rule",
                    source,
                })?;
        }
        let allow = |p: &Path, a: u64| rs.allow(p, a).map_err(io_err("add a Landlock rule for", p));
        for p in spec.extra_ro {
            if Path::new(p).exists() {
                allow(Path::new(p), landlock::RX)?;
            }
        }
        allow(&spec.run_dir.host, self.abi.rw())?;
        Ok(rs)
    }

    /// Runs one step in a fresh jail and waits for it. The steps, in order (docs/jail.md):
    ///  1. cgroup(s) for the job with its memory and pids limits;
    ///  2. pipes, stdin memfd, Landlock ruleset, argv/env, mount plan — all prepared here, because
    ///     the child may not allocate;
    ///  3. clone3 into new pid, mount, ipc, uts and cgroup namespaces, directly into the job's v2
    ///     cgroup — on hybrid hosts from the slot's spawner thread, which sits in the slot's v1
    ///     groups;
    ///  4. (child/init) private mounts, new root, pivot_root, hostname, slot netns;
    ///  5. (parent) check the child is in its job cgroup (fail closed), then "go";
    ///  6. (child/init) vfork the program; (program) stdio, chdir, rlimits, capabilities and uid,
    ///     no_new_privs, Landlock, seccomp with a listener passed to us, exec;
    ///  7. (parent) watch: exit, wall clock, CPU budget, OOM, denied syscalls — kill on any;
    ///  8. collect output and counters, kill the cgroup, remove it.
    pub async fn spawn(&self, spec: JailSpec<'_>) -> Result<JailOutput, JailError> {
        let limits = spec.step.limits;
        let policy = self
            .policies
            .get(spec.policy)
            .ok_or_else(|| JailError::UnknownPolicy(spec.policy.to_owned()))?;

        // 1. The job's cgroup.
        let cg = self.cgroups.create_job(
            limits.memory_bytes,
            limits.procs,
            spec.slot.cgroup.as_ref(),
        )?;

        // The eBPF monitor watches the job from before its first process exists.
        let mut events = match &self.monitor {
            Some(m) => Some(m.register(cg.id()?, limits.cpu)?),
            None => None,
        };

        // 2. Everything the child needs.
        let (go_r, go_w) = sys::pipe().map_err(sys_err("pipe"))?;
        let (err_r, err_w) = sys::pipe().map_err(sys_err("pipe"))?;
        let (status_r, status_w) = sys::pipe().map_err(sys_err("pipe"))?;
        let (out_r, out_w) = sys::pipe().map_err(sys_err("pipe"))?;
        let (errout_r, errout_w) = sys::pipe().map_err(sys_err("pipe"))?;
        let (notify_r, notify_w) = sys::socketpair().map_err(sys_err("socketpair"))?;
        let stdin = match spec.stdin {
            Some(data) => sys::memfd_with(data).map_err(sys_err("memfd_create"))?,
            None => sys::open_owned(c"/dev/null", libc::O_RDONLY).map_err(sys_err("open"))?,
        };
        let ruleset = self.landlock_ruleset(&spec)?;
        let prepared = self.prepare(
            &spec,
            policy,
            &ruleset,
            PreparedFds {
                go_r: go_r.as_raw_fd(),
                err_w: err_w.as_raw_fd(),
                status_w: status_w.as_raw_fd(),
                notify_w: notify_w.as_raw_fd(),
                stdin: stdin.as_raw_fd(),
                stdout: out_w.as_raw_fd(),
                stderr: errout_w.as_raw_fd(),
            },
        )?;

        // 3. clone3.
        // NEWCGROUP: the job sees its own cgroup as "/" (no host cgroup paths in /proc/self/cgroup).
        let flags = (libc::CLONE_NEWPID
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWCGROUP) as u64;
        let started = Instant::now();
        let cgroup_fd = cg.clone_fd();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = move || {
            // Allocation is fine here (before the clone); the child only reads `prepared`.
            let ptrs = child::Ptrs::new(&prepared);
            let mut stack = vec![0u8; child::PROGRAM_STACK];
            let res = match sys::clone3(flags, cgroup_fd) {
                Ok(None) => child::init(&prepared, &ptrs, &mut stack),
                Ok(Some(parent)) => Ok(parent),
                Err(e) => Err(e),
            };
            let _ = tx.send(res);
        };
        match &spec.slot.spawner {
            Some(spawner) => {
                if !spawner.run(Box::new(task)) {
                    return Err(JailError::Syscall {
                        call: "clone3",
                        source: io::Error::other("slot thread is gone"),
                    });
                }
            }
            None => task(),
        }
        let (pid, pidfd) = rx
            .await
            .map_err(|_| JailError::Syscall {
                call: "clone3",
                source: io::Error::other("slot thread dropped the request"),
            })?
            .map_err(sys_err("clone3"))?;
        drop((
            go_r, err_w, status_w, notify_w, stdin, out_w, errout_w, ruleset,
        ));
        // Fail closed: the job must be in its own v2 cgroup (kill, CPU time and, on pure v2, its
        // limits depend on it). A flag that silently did nothing once made this necessary.
        if !cg.contains(pid) {
            let _ = sys::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL);
            reap(&pidfd).await;
            cg.destroy().await;
            return Err(JailError::Syscall {
                call: "clone3(CLONE_INTO_CGROUP)",
                source: io::Error::other("the child is not in its job cgroup"),
            });
        }
        sys::write_all(go_w.as_raw_fd(), b"g").map_err(sys_err("write go"))?;
        drop(go_w);

        // Output readers run concurrently with everything below.
        let stdout_task = tokio::spawn(read_capped(out_r, limits.stream_bytes));
        let stderr_task = tokio::spawn(read_capped(errout_r, limits.stream_bytes));

        // Setup errors arrive on the error pipe; its EOF means exec happened (CLOEXEC).
        let setup = read_all(err_r).await;
        let mut end = None;
        if let Ok(rec) = &setup
            && rec.len() >= 8
        {
            let step = u32::from_ne_bytes(rec[..4].try_into().expect("4 bytes"));
            let errno = i32::from_ne_bytes(rec[4..8].try_into().expect("4 bytes"));
            let step = child::Step::from_u32(step);
            if step == Some(child::Step::Exec) {
                end = Some(End::ExecFailed(errno));
            } else {
                let _ = sys::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL);
                reap(&pidfd).await;
                cg.destroy().await;
                return Err(JailError::Setup {
                    step: step.map_or("unknown", child::Step::name),
                    source: io::Error::from_raw_os_error(errno),
                });
            }
        }
        let listener = if end.is_none() {
            sys::recv_fd(notify_r.as_raw_fd()).map_err(sys_err("recvmsg"))?
        } else {
            None
        };

        // 7. Watch until init exits.
        let (watched, killed_at) = self
            .watch(
                &cg,
                &pidfd,
                listener,
                policy,
                limits.cpu,
                limits.wall,
                started,
                events.as_mut(),
            )
            .await;
        let end = end.or(watched);

        // 8. Collect.
        let status = read_all(status_r).await.ok().and_then(|b| {
            (b.len() >= 4).then(|| i32::from_ne_bytes(b[..4].try_into().expect("4 bytes")))
        });
        reap(&pidfd).await;
        let wall = started.elapsed();
        // Init is gone, so the kernel has killed the namespace; pipes reach EOF promptly.
        let stdout = stdout_task.await.unwrap_or_default();
        let stderr = stderr_task.await.unwrap_or_default();
        let cpu = cg.cpu_usage();
        let oom = cg.oom_kills();
        let peak = cg.peak_memory();
        cg.destroy().await;
        // After destroy: every process of the job is gone, so its exit records are in the ring.
        let ebpf = events.map(JobWatch::finish);

        let mut usage = Usage {
            cpu_secs: cpu.as_secs_f64(),
            wall_secs: wall.as_secs_f64(),
            peak_memory_bytes: peak,
            exit_code: None,
            signal: None,
            killed_at_unix: killed_at
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64()),
        };
        if let Some(st) = status {
            if libc::WIFEXITED(st) {
                usage.exit_code = Some(libc::WEXITSTATUS(st));
            } else if libc::WIFSIGNALED(st) {
                usage.signal = Some(libc::WTERMSIG(st));
            }
        }
        let end = match end {
            Some(e) => e,
            None if oom > 0 => End::Memory,
            // RLIMIT_CPU (the per-process backstop) or our timer racing the exit.
            None if cpu >= limits.cpu
                && matches!(usage.signal, Some(libc::SIGKILL | libc::SIGXCPU)) =>
            {
                End::CpuTime
            }
            None => match (usage.exit_code, usage.signal) {
                (Some(c), _) => End::Exited(c),
                (_, Some(s)) => End::Signaled(s),
                // Init died without reporting: it was killed from outside.
                _ => End::Signaled(libc::SIGKILL),
            },
        };
        Ok(JailOutput {
            stdout,
            stderr,
            end,
            usage,
            ebpf,
        })
    }

    /// Waits for the job's init to exit, killing the job when a limit is reached. Returns the
    /// reason if we (or the kernel's OOM killer) ended it, and when `cgroup.kill` was written.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site; the values are distinct"
    )]
    async fn watch(
        &self,
        cg: &JobCgroup,
        pidfd: &OwnedFd,
        listener: Option<OwnedFd>,
        policy: &Policy,
        cpu_budget: Duration,
        wall: Duration,
        started: Instant,
        mut events: Option<&mut JobWatch>,
    ) -> (Option<End>, Option<std::time::SystemTime>) {
        let exited = match sys::async_fd(pidfd.as_fd()) {
            Ok(fd) => fd,
            Err(err) => {
                tracing::error!(?err, "cannot watch pidfd; killing job");
                cg.kill();
                return (None, None);
            }
        };
        let mut notify = listener
            .as_ref()
            .and_then(|fd| sys::async_fd(fd.as_fd()).ok());
        // Hybrid hosts without the eBPF monitor: the v1 OOM eventfd. It fires when the OOM
        // *starts*, before the kernel picks a victim; with the monitor the verdict waits for the
        // victim (`mark_victim`), which names the process (and `oom_kill` backs it up below).
        let oom_fd = if events.is_some() {
            None
        } else {
            cg.v1_oom_eventfd().ok().flatten()
        };
        let oom = oom_fd
            .as_ref()
            .and_then(|fd| sys::async_fd(fd.as_fd()).ok());
        let wall_deadline = tokio::time::Instant::from_std(started + wall);
        let mut reason = None;
        let mut killed_at = None;
        // The eBPF budget event came but cpu.stat was not there yet (see below).
        let mut budget_near = false;
        loop {
            // CPU budget: sleep for the least wall time in which the job could use what is left
            // (all CPUs busy), then look again. Converges geometrically; no fixed tick.
            let used = cg.cpu_usage();
            if reason.is_none() && used >= cpu_budget {
                reason = Some(End::CpuTime);
                cg.kill();
            }
            // Every branch below that sets `reason` has just written cgroup.kill.
            if reason.is_some() && killed_at.is_none() {
                killed_at = Some(std::time::SystemTime::now());
            }
            let left = cpu_budget.saturating_sub(used);
            let mut cpu_check = (left / self.ncpu).max(Duration::from_millis(1));
            if events.is_some() && !budget_near {
                // The eBPF budget event is the verdict; this check only backs it up (a lost
                // ring-buffer record), so it looks later than the event can come.
                cpu_check += EBPF_BACKSTOP;
            }
            tokio::select! {
                r = exited.readable() => {
                    if let Ok(mut g) = r { g.retain_ready(); }
                    return (reason, killed_at);
                }
                _ = tokio::time::sleep_until(wall_deadline), if reason.is_none() => {
                    reason = Some(End::WallTime);
                    cg.kill();
                }
                // Belt and braces: if init has not gone a second after a kill (cgroup.kill
                // failed?), kill init itself; its death takes the whole pid namespace with it.
                _ = tokio::time::sleep(KILL_GRACE), if reason.is_some() => {
                    tracing::error!("job survived cgroup.kill; killing its init");
                    let _ = sys::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL);
                }
                _ = tokio::time::sleep(cpu_check), if reason.is_none() => {}
                r = readable(&notify), if reason.is_none() => {
                    // The listener is also readable (POLLHUP) once no task uses the filter any
                    // more; only a successful NOTIF_RECV is a denied syscall.
                    let got = r.then_some(notify.as_ref())
                        .flatten()
                        .and_then(|n| sys::seccomp_notif_recv(n.get_ref().as_raw_fd()).ok());
                    match got {
                        Some((_, nr)) => {
                            reason = Some(End::Syscall(policy.syscall_name(nr)));
                            cg.kill();
                        }
                        None => notify = None,
                    }
                }
                ev = next_event(&mut events), if reason.is_none() => match ev {
                    JobEvent::Oom { .. } => {
                        reason = Some(End::Memory);
                        cg.kill();
                    }
                    // The eBPF side counts on-CPU time by the clock, which includes interrupt
                    // time the kernel does not charge to tasks (≈0.2 % under load), so the event
                    // can come a few ms early. The budget is what cpu.stat (the verdict's and
                    // `usage`'s measure) says: the check at the top of the loop, which runs at
                    // once, kills if it agrees, else takes over for the last few ms without the
                    // backstop delay.
                    JobEvent::Budget { .. } => budget_near = true,
                    JobEvent::Exit { .. } | JobEvent::NetDenied => {} // next_event skips these
                },
                r = readable(&oom), if reason.is_none() => {
                    if r {
                        reason = Some(End::Memory);
                        cg.kill();
                    }
                }
            }
        }
    }

    fn prepare(
        &self,
        spec: &JailSpec<'_>,
        policy: &Policy,
        ruleset: &Ruleset,
        fds: PreparedFds,
    ) -> Result<Prepared, JailError> {
        let step = spec.step;
        let argv0 = step.argv.first().ok_or(JailError::EmptyCommand)?;
        let exec_path = cstr(resolve_exec(argv0, &step.env))?;
        let argv: Vec<CString> = step.argv.iter().map(cstr).collect::<Result<_, _>>()?;
        let envp: Vec<CString> = step
            .env
            .iter()
            .map(|(k, v)| cstr(format!("{k}={v}")))
            .collect::<Result<_, _>>()?;
        let mut keep_fds = vec![
            fds.go_r,
            fds.err_w,
            fds.status_w,
            fds.notify_w,
            fds.stdin,
            fds.stdout,
            fds.stderr,
            ruleset.raw(),
            spec.slot.netns.as_raw_fd(),
        ];
        keep_fds.sort_unstable();
        keep_fds.dedup();
        let l = step.limits;
        let cpu_rlimit = l.cpu.as_secs() + 2;
        let abi = self.abi;
        Ok(Prepared {
            root: cpath(&self.root)?,
            mount_ops: self.mount_plan(spec)?,
            hostname: b"runner",
            netns: Some(spec.slot.netns.as_raw_fd()),
            go_r: fds.go_r,
            err_w: fds.err_w,
            status_w: fds.status_w,
            notify_w: fds.notify_w,
            stdin: fds.stdin,
            stdout: fds.stdout,
            stderr: fds.stderr,
            uid: spec.slot.uid,
            gid: self.gid,
            rlimits: vec![
                (libc::RLIMIT_CORE, 0, 0),
                (libc::RLIMIT_FSIZE, l.disk_bytes, l.disk_bytes),
                (libc::RLIMIT_STACK, 8 << 20, libc::RLIM_INFINITY),
                (libc::RLIMIT_CPU, cpu_rlimit, cpu_rlimit),
                (libc::RLIMIT_NOFILE, 8192, 8192),
                // Not inherited from the daemon: a real-time class (RLIMIT_RTPRIO > 0) or a
                // negative nice value (RLIMIT_NICE > 20) would let a job starve the host.
                (libc::RLIMIT_RTPRIO, 0, 0),
                (libc::RLIMIT_NICE, 0, 0),
            ],
            workdir: cstr(&spec.run_dir.jail)?,
            landlock: ruleset.raw(),
            landlock_jail_rules: vec![
                (cstr("/tmp")?, abi.rw()),
                (cstr("/dev/shm")?, abi.rw()),
                (cstr("/proc")?, landlock::RO),
                (cstr("/dev")?, landlock::READ_DIR),
                // Listing directories of the jail's own tree (/, /home/jobe/runs…) reveals
                // nothing: the mount namespace holds only what is bound in above.
                (cstr("/")?, landlock::READ_DIR),
            ],
            seccomp: policy.program.clone(), // an Arc: shared, not copied
            exec_path,
            keep_fds,
            argv,
            envp,
        })
    }
}

struct PreparedFds {
    go_r: i32,
    err_w: i32,
    status_w: i32,
    notify_w: i32,
    stdin: i32,
    stdout: i32,
    stderr: i32,
}

/// With the eBPF monitor, how much later than the budget the cpu.stat check looks.
const EBPF_BACKSTOP: Duration = Duration::from_millis(50);

/// The next event of a job watched by the eBPF monitor; pending forever without one.
/// Only the events that decide a verdict (budget, OOM) wake the watcher: exits and denied
/// connects are recorded in the job's stats by `JobWatch::next` and need no cpu.stat read.
async fn next_event(events: &mut Option<&mut JobWatch>) -> JobEvent {
    match events {
        Some(w) => loop {
            let ev = w.next().await;
            if matches!(ev, JobEvent::Budget { .. } | JobEvent::Oom { .. }) {
                return ev;
            }
        },
        None => std::future::pending().await,
    }
}

/// How long a killed job may take to disappear before its init is killed directly.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// Inodes of a run directory's tmpfs (files, directories and links together).
pub const RUN_DIR_INODES: u32 = 16384;

const DEV_NODES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

async fn readable(fd: &Option<AsyncFd<BorrowedFd<'_>>>) -> bool {
    match fd {
        Some(fd) => match fd.readable().await {
            Ok(mut g) => {
                g.clear_ready();
                true
            }
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Reaps the jail's init (bounded: it has exited or been killed by now).
async fn reap(pidfd: &OwnedFd) {
    for _ in 0..200 {
        match sys::reap_pidfd(pidfd.as_raw_fd()) {
            Ok(true) | Err(_) => return,
            Ok(false) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    tracing::error!("jail init was not reaped within 200 ms");
}

/// Finds argv[0]: paths with a '/' are used as given (relative ones against the run directory);
/// bare names are looked up in the step's PATH on the host, whose system directories are the
/// jail's.
fn resolve_exec(argv0: &str, env: &[(String, String)]) -> String {
    if argv0.contains('/') {
        return argv0.to_owned();
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or("/usr/bin:/bin", |(_, v)| v.as_str());
    path.split(':')
        .map(|d| Path::new(d).join(argv0))
        .find(|p| p.is_file())
        .map_or_else(|| argv0.to_owned(), |p| p.to_string_lossy().into_owned())
}

fn random_suffix() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut h = RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id()));
    let mut x = h.finish();
    (0..6)
        .map(|_| {
            let c = ALNUM[(x % ALNUM.len() as u64) as usize] as char;
            x /= ALNUM.len() as u64;
            c
        })
        .collect()
}

async fn read_all(fd: OwnedFd) -> io::Result<Vec<u8>> {
    let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
    let mut buf = Vec::new();
    rx.read_to_end(&mut buf).await?;
    Ok(buf)
}

/// Reads a pipe to EOF, keeping the first `cap` bytes and discarding the rest (as Jobe's
/// runguard: output beyond the limit is silently dropped while the program keeps running).
async fn read_capped(fd: OwnedFd, cap: u64) -> Vec<u8> {
    let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return Vec::new();
    };
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                let room = cap.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}
