//! Code that runs in the jail's processes between `clone3` and `execve`.
//!
//! The daemon is a multi-threaded tokio process, so after `clone3` only async-signal-safe calls
//! are allowed: no allocation, no locks, no panics, no `std::io`. Everything is prepared by the
//! parent in a `Prepared` (CStrings, pointer arrays, the BPF program, descriptors) and this file
//! only walks it and makes raw syscalls through `crate::sys`. On failure a fixed-size record
//! `(step, errno)` goes over the error pipe and the process `_exit`s.
//!
//! Two processes live here:
//! 1. the jail's **init** (pid 1 of the new pid namespace): makes the mount tree, joins the slot's
//!    network namespace, waits for the parent's "go" (it checked our cgroup), forks the program
//!    and reports its wait status; when init exits the kernel kills everything left in the
//!    namespace;
//! 2. the **program**: drops to the slot's uid, applies rlimits, Landlock and seccomp, execs.

use std::ffi::{CString, c_char};
use std::os::fd::RawFd;

use crate::sys::{self, Errno};

/// How many nice levels a job runs below the daemon (capped at 19).
pub(crate) const JOB_NICE: i32 = 5;

/// Steps reported over the error pipe (the parent maps them to `JailError::Setup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Step {
    ParentDeath = 1,
    OomScore,
    Nice,
    MountPrivate,
    MountOp,
    PivotRoot,
    Hostname,
    JoinNetns,
    WaitGo,
    Fork,
    Stdio,
    Chdir,
    Rlimit,
    Credentials,
    NoNewPrivs,
    Landlock,
    Seccomp,
    SendListener,
    Exec,
}

impl Step {
    pub(super) fn from_u32(v: u32) -> Option<Step> {
        use Step::*;
        [
            ParentDeath,
            MountPrivate,
            MountOp,
            PivotRoot,
            Hostname,
            JoinNetns,
            WaitGo,
            Fork,
            Stdio,
            Chdir,
            Rlimit,
            Credentials,
            NoNewPrivs,
            Landlock,
            Seccomp,
            SendListener,
            Exec,
        ]
        .into_iter()
        .find(|s| *s as u32 == v)
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Step::ParentDeath => "set the parent-death signal",
            Step::OomScore => "set oom_score_adj",
            Step::Nice => "lower the CPU priority",
            Step::MountPrivate => "make mounts private",
            Step::MountOp => "build the mount tree",
            Step::PivotRoot => "pivot_root",
            Step::Hostname => "sethostname",
            Step::JoinNetns => "join the slot network namespace",
            Step::WaitGo => "wait for the parent",
            Step::Fork => "fork the program",
            Step::Stdio => "set up stdio",
            Step::Chdir => "chdir to the run directory",
            Step::Rlimit => "setrlimit",
            Step::Credentials => "drop to the slot uid",
            Step::NoNewPrivs => "set no_new_privs",
            Step::Landlock => "apply Landlock",
            Step::Seccomp => "install seccomp",
            Step::SendListener => "pass the seccomp listener",
            Step::Exec => "execve",
        }
    }
}

// include/uapi/linux/mount.h
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// One step of building the jail's filesystem, in order.
#[derive(Debug)]
pub(super) enum MountOp {
    Mkdir(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    Touch(CString),
    /// Read-only, nosuid, nodev for the whole tree under a path (bind mounts of system dirs).
    ReadOnlyTree(CString),
    Mount {
        src: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
}

/// Everything the two processes need, prepared by the parent before `clone3`. Owned data only
/// (it is `Send`: on hybrid hosts it moves to the slot's spawner thread); the pointer arrays for
/// `execve` are built from it on that thread, just before `clone3` (see `Ptrs`).
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) root: CString,
    pub(super) mount_ops: Vec<MountOp>,
    pub(super) hostname: &'static [u8],
    pub(super) netns: Option<RawFd>,
    pub(super) go_r: RawFd,
    pub(super) err_w: RawFd,
    pub(super) status_w: RawFd,
    pub(super) notify_w: RawFd,
    pub(super) stdin: RawFd,
    pub(super) stdout: RawFd,
    pub(super) stderr: RawFd,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) rlimits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
    pub(super) workdir: CString,
    pub(super) landlock: RawFd,
    /// Rules the child adds after mounting: (path inside the jail, access).
    pub(super) landlock_jail_rules: Vec<(CString, u64)>,
    pub(super) seccomp: std::sync::Arc<[libc::sock_filter]>,
    pub(super) exec_path: CString,
    /// Every descriptor above, sorted: what init keeps open.
    pub(super) keep_fds: Vec<RawFd>,
    pub(super) argv: Vec<CString>,
    pub(super) envp: Vec<CString>,
}

/// Size of the stack the program's side runs on until exec (it needs a few KiB).
pub(super) const PROGRAM_STACK: usize = 256 * 1024;

/// NULL-terminated pointer arrays into a `Prepared`'s argv and envp, for `execve`.
pub(super) struct Ptrs {
    pub(super) argv: Vec<*const c_char>,
    pub(super) envp: Vec<*const c_char>,
}

impl Ptrs {
    pub(super) fn new(p: &Prepared) -> Ptrs {
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        Ptrs {
            argv: ptrs(&p.argv),
            envp: ptrs(&p.envp),
        }
    }
}

fn fail(err_w: RawFd, step: Step, e: Errno) -> ! {
    let mut rec = [0u8; 8];
    rec[..4].copy_from_slice(&(step as u32).to_ne_bytes());
    rec[4..].copy_from_slice(&e.0.to_ne_bytes());
    let _ = sys::write_all(err_w, &rec);
    sys::exit(127)
}

fn check<T>(p: &Prepared, step: Step, r: Result<T, Errno>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => fail(p.err_w, step, e),
    }
}

/// The jail's init. Never returns.
pub(super) fn init(p: &Prepared, ptrs: &Ptrs, stack: &mut [u8]) -> ! {
    // 0. If the daemon dies (even by SIGKILL), the kernel kills init, and with it the whole pid
    //    namespace: no jailed process outlives the daemon. (The death signal follows the parent
    //    *thread*; clone3 runs on a tokio worker, which lives as long as the runtime.)
    check(
        p,
        Step::ParentDeath,
        sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong).map(drop),
    );
    // 1. Init is a copy of the daemon and never execs, so close-on-exec does not help: drop every
    //    descriptor of the daemon (listening socket, other clients, other runs' pipes, the data
    //    directory lock) except the ones prepared for this jail.
    sys::close_all_except(&p.keep_fds);
    // The job's processes are the OOM killer's first choice should the host run out of memory.
    // Written through the host's /proc, before pivot_root.
    let adj = sys::open(c"/proc/self/oom_score_adj", libc::O_WRONLY);
    check(
        p,
        Step::OomScore,
        adj.and_then(|fd| {
            let r = sys::write_all(fd, b"1000");
            sys::close(fd);
            r
        }),
    );
    // The job runs JOB_NICE below the daemon: when jobs keep every CPU busy, the daemon still
    // wakes at once to stop a job at its budget, answer clients and start the next job. Jobs
    // compete with each other as equals.
    check(p, Step::Nice, sys::lower_priority(JOB_NICE));
    // 1. Nothing we mount may propagate back to the host (or from it).
    check(
        p,
        Step::MountPrivate,
        sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None),
    );
    // 2. The new root: a tmpfs with system directories bound read-only, private /tmp, /dev and
    //    /proc, and the run directory (see `Jail::mount_plan` for the list and its order).
    for op in &p.mount_ops {
        let r = match op {
            MountOp::Mkdir(path) => sys::mkdir(path, 0o755),
            MountOp::Symlink { target, link } => sys::symlink(target, link),
            MountOp::Touch(path) => sys::touch(path),
            MountOp::ReadOnlyTree(path) => sys::mount_setattr_recursive(
                path,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            ),
            MountOp::Mount {
                src,
                target,
                fstype,
                flags,
                data,
            } => sys::mount(
                src.as_deref(),
                target,
                fstype.as_deref(),
                *flags,
                data.as_deref(),
            ),
        };
        check(p, Step::MountOp, r);
    }
    // 3. pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only
    //    the jail's tree (the trick from pivot_root(2) NOTES).
    check(p, Step::PivotRoot, sys::chdir(&p.root));
    check(p, Step::PivotRoot, sys::pivot_root(c".", c"."));
    check(p, Step::PivotRoot, sys::umount2(c".", libc::MNT_DETACH));
    check(p, Step::PivotRoot, sys::chdir(c"/"));
    // The root tmpfs holds only mount points: make it read-only now that they exist.
    check(
        p,
        Step::PivotRoot,
        sys::mount(
            None,
            c"/",
            None,
            libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            None,
        ),
    );
    check(p, Step::Hostname, sys::sethostname(p.hostname));
    // 4. The slot's pre-made, empty network namespace: no interfaces but a down loopback.
    if let Some(fd) = p.netns {
        check(p, Step::JoinNetns, sys::setns(fd, libc::CLONE_NEWNET));
    }
    // 5. Wait until the parent has checked that we are in the job's cgroup (its limits must hold
    //    before the program runs). EOF means the parent gave up.
    let mut go = [0u8; 1];
    match sys::read(p.go_r, &mut go) {
        Ok(1) => {}
        Ok(_) => sys::exit(126),
        Err(e) => fail(p.err_w, Step::WaitGo, e),
    }
    // vfork-style: the program runs on `stack` in our memory until it execs, so the daemon's
    // page tables are not copied a second time (clone3 above already copied them once).
    let child = check(
        p,
        Step::Fork,
        sys::vfork_on_stack(stack, &mut || program(p, ptrs)),
    );
    // Init keeps only the status pipe: the program's pipes must reach EOF when it is gone.
    sys::close_all_except(&[p.status_w]);
    // 6. Reap everything (orphans are re-parented to us) until the program itself exits, then
    //    report its status. Our exit kills whatever is left in the namespace.
    loop {
        match sys::wait_any() {
            Ok((pid, status)) if pid == child => {
                let _ = sys::write_all(p.status_w, &status.to_ne_bytes());
                sys::exit(0);
            }
            Ok(_) => {}
            Err(Errno(libc::EINTR)) => {}
            Err(_) => sys::exit(125),
        }
    }
}

/// The program's side. Never returns.
fn program(p: &Prepared, ptrs: &Ptrs) -> ! {
    // New session: no controlling terminal of the daemon's.
    sys::setsid();
    check(p, Step::Stdio, sys::dup2(p.stdin, 0));
    check(p, Step::Stdio, sys::dup2(p.stdout, 1));
    check(p, Step::Stdio, sys::dup2(p.stderr, 2));
    check(p, Step::Chdir, sys::chdir(&p.workdir));
    for &(res, soft, hard) in &p.rlimits {
        check(p, Step::Rlimit, sys::setrlimit(res, soft, hard));
    }
    // Credentials: empty the bounding set (so nothing can regain a capability), then one gid and
    // uid for real, effective and saved ids. Leaving uid 0 clears the permitted and effective
    // capability sets (capabilities(7), "Effect of user ID changes").
    for cap in 0..=63 {
        match sys::prctl(libc::PR_CAPBSET_DROP, cap) {
            Ok(_) | Err(Errno(libc::EINVAL)) => {}
            Err(e) => fail(p.err_w, Step::Credentials, e),
        }
    }
    check(p, Step::Credentials, sys::setgroups(&[p.gid]));
    check(p, Step::Credentials, sys::setresgid(p.gid));
    check(p, Step::Credentials, sys::setresuid(p.uid));
    check(
        p,
        Step::NoNewPrivs,
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map(drop),
    );
    // Landlock: rules for the filesystems init mounted, then enforce.
    for (path, access) in &p.landlock_jail_rules {
        let fd = check(p, Step::Landlock, sys::open(path, libc::O_PATH));
        check(
            p,
            Step::Landlock,
            sys::landlock_add_path_rule(p.landlock, *access, fd),
        );
        sys::close(fd);
    }
    check(p, Step::Landlock, sys::landlock_restrict_self(p.landlock));
    sys::close(p.landlock);
    // Seccomp last, so the steps above are not filtered. The listener goes to the daemon, which
    // learns the number of any denied syscall the program tries.
    let listener = check(p, Step::Seccomp, sys::seccomp_set_filter(&p.seccomp, true));
    check(p, Step::SendListener, sys::send_fd(p.notify_w, listener));
    sys::close(listener);
    // Every other inherited descriptor closes at exec; the error pipe's closing tells the parent
    // that exec succeeded.
    check(p, Step::Exec, sys::cloexec_from(3));
    let e = sys::execve(&p.exec_path, &ptrs.argv, &ptrs.envp);
    fail(p.err_w, Step::Exec, e)
}
