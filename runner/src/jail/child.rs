//! Code that runs in the jail's processes between `clone3` and `execve`.
//!
//! Owns: the child side of the jail's steps (docs/jail.md, steps 9–14 and 16–17 in init, 18–28
//! in the program; the comments below carry the same numbers), what the daemon prepares for it
//! ([`Prepared`]) and the one record it sends back on failure ([`SetupFailure`]). Must not:
//! allocate, lock, panic or use `std::io` after `clone3`: the daemon is a multi-threaded tokio
//! process, so only async-signal-safe calls are allowed. Everything is prepared by the parent in a
//! `Prepared` (CStrings, pointer arrays, the BPF program, descriptors) and this file only walks it
//! and makes raw syscalls through `crate::sys`. On failure a fixed-size [`SetupFailure`] record
//! goes over the error pipe and the process `_exit`s.
//!
//! Two processes live here:
//! 1. the jail's **init** (pid 1 of the new pid namespace, born in a copy of the slot's template
//!    mount namespace, sharing the daemon's memory as a vfork child does while the slot's
//!    spawner thread waits for it): tells the daemon it started, checks that it is in the job's
//!    cgroup, mounts the run's own filesystems, joins the slot's network namespace, forks the
//!    program and reports its wait status; when init exits the kernel kills everything left in
//!    the namespace;
//! 2. the **program**: lowers its priority, drops to the slot's uid, applies rlimits, Landlock
//!    and seccomp, execs.

use std::ffi::{CString, c_char};
use std::os::fd::RawFd;

use super::mount::MountOp;
use super::timing::{Clock, Mark};
use crate::enums::enum_with_all;
use crate::sys::{self, Errno};

/// How many nice levels a job runs below the daemon (capped at 19).
pub(crate) const JOB_NICE: i32 = 5;

enum_with_all! {
    /// The child's steps that can fail, as reported over the error pipe (the parent maps them to
    /// `JailError::Setup`, except `Exec`, which is the program's outcome).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u32)]
    pub(super) enum Step {
        Started,
        ParentDeath,
        InCgroup,
        MountOp,
        Hostname,
        JoinNetns,
        Fork,
        Signals,
        Stdio,
        Chdir,
        Rlimit,
        OomScore,
        Nice,
        Credentials,
        NoNewPrivs,
        Landlock,
        Seccomp,
        SendListener,
        Exec,
    }
}

impl Step {
    /// What failed, for `JailError::Setup` and the log.
    pub(super) fn name(self) -> &'static str {
        match self {
            Step::Started => "tell the daemon init started",
            Step::ParentDeath => "set the parent-death signal or reset SIGCHLD",
            Step::InCgroup => "check the job's cgroup",
            Step::MountOp => "mount the run's filesystems",
            Step::Hostname => "sethostname",
            Step::JoinNetns => "join the slot network namespace",
            Step::Fork => "fork the program",
            Step::Signals => "reset the signal disposition and mask",
            Step::Stdio => "set up stdio",
            Step::Chdir => "chdir to the run directory",
            Step::Rlimit => "setrlimit",
            Step::OomScore => "set oom_score_adj",
            Step::Nice => "lower the CPU priority",
            Step::Credentials => "drop to the slot uid",
            Step::NoNewPrivs => "set no_new_privs",
            Step::Landlock => "apply Landlock",
            Step::Seccomp => "install seccomp",
            Step::SendListener => "pass the seccomp listener",
            Step::Exec => "execve",
        }
    }
}

/// The record a failing step sends over the error pipe: which step, and its errno. Encoded once
/// ([`SetupFailure::to_bytes`], in the child: no allocation) and decoded once
/// ([`SetupFailure::from_bytes`], in the daemon).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SetupFailure {
    pub(super) step: Step,
    pub(super) errno: i32,
}

impl SetupFailure {
    /// Bytes on the pipe: the step's code and the errno, 4 bytes each in native byte order. One
    /// `write` of fewer than `PIPE_BUF` bytes, so the record arrives whole.
    pub(super) const LEN: usize = 8;

    pub(super) fn to_bytes(self) -> [u8; Self::LEN] {
        let mut rec = [0u8; Self::LEN];
        rec[..4].copy_from_slice(&(self.step as u32).to_ne_bytes());
        rec[4..].copy_from_slice(&self.errno.to_ne_bytes());
        rec
    }

    /// The record at the start of `rec`; `None` if it is short or names no step.
    pub(super) fn from_bytes(rec: &[u8]) -> Option<SetupFailure> {
        let rec: &[u8; Self::LEN] = rec.get(..Self::LEN)?.try_into().ok()?;
        let [s0, s1, s2, s3, e0, e1, e2, e3] = *rec;
        let code = u32::from_ne_bytes([s0, s1, s2, s3]);
        let step = Step::ALL.iter().copied().find(|s| *s as u32 == code)?;
        Some(SetupFailure {
            step,
            errno: i32::from_ne_bytes([e0, e1, e2, e3]),
        })
    }
}

/// The child's ends of the daemon's pipes and its stdin, as descriptor numbers (the daemon owns
/// them and closes its copies once `clone3` returned).
#[derive(Debug, Clone, Copy)]
pub(super) struct ChildFds {
    /// Write end of the "started" pipe (step 7).
    pub(super) started_w: RawFd,
    /// The job's v2 `cgroup.procs`, opened by the daemon (step 8).
    pub(super) procs: RawFd,
    /// Write end of the error pipe: [`SetupFailure`] records; its EOF means exec happened.
    pub(super) err_w: RawFd,
    /// Write end of the status pipe: the program's wait status (step 17).
    pub(super) status_w: RawFd,
    /// The socket the seccomp listener is sent over (step 26).
    pub(super) notify_w: RawFd,
    pub(super) stdin: RawFd,
    pub(super) stdout: RawFd,
    pub(super) stderr: RawFd,
}

impl ChildFds {
    /// Every descriptor above (the destructuring names each field: a new one cannot be left out
    /// of what init keeps).
    pub(super) fn all(self) -> [RawFd; 8] {
        let ChildFds {
            started_w,
            procs,
            err_w,
            status_w,
            notify_w,
            stdin,
            stdout,
            stderr,
        } = self;
        [
            started_w, procs, err_w, status_w, notify_w, stdin, stdout, stderr,
        ]
    }
}

/// Everything the two processes need, prepared by the parent before `clone3`. Owned data only
/// (it is `Send`: on hybrid hosts it moves to the slot's spawner thread); the pointer arrays for
/// `execve` are built from it on that thread, just before `clone3` (see `Ptrs`).
#[derive(Debug)]
pub(super) struct Prepared {
    /// The per-run mounts (`mount::per_run`), at jail paths.
    pub(super) mount_ops: Vec<MountOp>,
    pub(super) hostname: &'static [u8],
    pub(super) netns: Option<RawFd>,
    pub(super) fds: ChildFds,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) rlimits: Vec<(libc::__rlimit_resource_t, u64, u64)>,
    pub(super) workdir: CString,
    pub(super) landlock: RawFd,
    /// Rules the child adds after mounting: (path inside the jail, access).
    pub(super) landlock_jail_rules: Vec<(CString, u64)>,
    pub(super) seccomp: std::sync::Arc<[libc::sock_filter]>,
    /// The signals the daemon ignores (at least SIGPIPE): back to their defaults for the
    /// program.
    pub(super) ignored_signals: std::sync::Arc<[libc::c_int]>,
    pub(super) exec_path: CString,
    /// Every descriptor above, sorted: what init keeps open.
    pub(super) keep_fds: Vec<RawFd>,
    pub(super) argv: Vec<CString>,
    pub(super) envp: Vec<CString>,
    /// Timestamps for `runner bench-jail` (none in normal runs).
    pub(super) clock: Clock,
}

/// Size of the stack init runs on (its own mapping: init shares the daemon's memory, so it
/// cannot use the spawner thread's stack; it needs a few KiB).
pub(super) const INIT_STACK: usize = 256 * 1024;

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
    let rec = SetupFailure { step, errno: e.0 }.to_bytes();
    let _ = sys::write_all(err_w, &rec);
    sys::exit(127)
}

fn check<T>(p: &Prepared, step: Step, r: Result<T, Errno>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => fail(p.fds.err_w, step, e),
    }
}

/// The jail's init: steps 7–13, then 16–17 (docs/jail.md). Never returns.
pub(super) fn init(p: &Prepared, ptrs: &Ptrs, stack: &mut [u8]) -> ! {
    p.clock.mark(Mark::InitStart);
    // 7. Tell the daemon we run: it takes our pidfd (the kernel stored it before we started)
    //    and closes its copies of our descriptors, while the slot's spawner thread stays
    //    suspended until we exit (we share its memory).
    check(p, Step::Started, sys::write_all(p.fds.started_w, b"s"));
    p.clock.mark(Mark::Started);
    // 8. Fail closed: we must be in the job's own v2 cgroup (kill, CPU time and, on pure v2,
    //    the limits depend on it; a clone flag that silently did nothing once made this
    //    necessary). Read in our pid namespace, the job's `cgroup.procs` lists us as 1 and
    //    nobody else: the program does not exist yet.
    let mut procs = [0u8; 16];
    match sys::read(p.fds.procs, &mut procs) {
        Ok(2) if procs[..2] == *b"1\n" => {}
        Ok(_) => fail(p.fds.err_w, Step::InCgroup, Errno(libc::ESRCH)),
        Err(e) => fail(p.fds.err_w, Step::InCgroup, e),
    }
    p.clock.mark(Mark::InCgroup);
    // 9. If the daemon dies (even by SIGKILL), the kernel kills init, and with it the whole pid
    //    namespace: no jailed process outlives the daemon. (The death signal follows the parent
    //    *thread*: the slot's spawner thread, which lives as long as the slot.)
    check(
        p,
        Step::ParentDeath,
        sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong).map(drop),
    );
    // Init shares the daemon's memory: it must run none of the daemon's signal handlers (the
    // table is init's own copy). The one signal init gets is SIGCHLD, at the program's end.
    check(p, Step::ParentDeath, sys::default_signal(libc::SIGCHLD));
    p.clock.mark(Mark::ParentDeath);
    // 10. Init never execs, so close-on-exec does not help: drop every descriptor of the daemon
    //     (listening socket, other clients, other runs' pipes, the data directory lock) except
    //     the ones prepared for this jail.
    sys::close_all_except(&p.keep_fds);
    p.clock.mark(Mark::CloseFds);
    // 11. Our root is already the slot template's (a copy of its mount namespace, made by
    //     clone3): mount this run's own filesystems on it (`mount::per_run` has the list).
    for op in &p.mount_ops {
        check(p, Step::MountOp, op.apply());
    }
    p.clock.mark(Mark::MountRun);
    // 12. A hostname of our own (own UTS namespace).
    check(p, Step::Hostname, sys::sethostname(p.hostname));
    p.clock.mark(Mark::Hostname);
    // 13. The slot's pre-made, empty network namespace: no interfaces but a down loopback.
    if let Some(fd) = p.netns {
        check(p, Step::JoinNetns, sys::setns(fd, libc::CLONE_NEWNET));
    }
    p.clock.mark(Mark::Netns);
    // 16. vfork-style: the program runs on `stack` in our memory (the daemon's) until it execs,
    //     so no page table is copied.
    let child = check(
        p,
        Step::Fork,
        sys::vfork_on_stack(stack, &mut || program(p, ptrs)),
    );
    p.clock.mark(Mark::Execed);
    // 17. Init keeps only the status pipe: the program's pipes must reach EOF when it is gone.
    //     Reap everything (orphans are re-parented to us) until the program itself exits, then
    //     report its status. Our exit kills whatever is left in the namespace.
    sys::close_all_except(&[p.fds.status_w]);
    loop {
        match sys::wait_any() {
            Ok((pid, status)) if pid == child => {
                p.clock.mark(Mark::ProgramExited);
                let _ = sys::write_all(p.fds.status_w, &status.to_ne_bytes());
                sys::exit(0);
            }
            Ok(_) => {}
            Err(Errno(libc::EINTR)) => {}
            Err(_) => sys::exit(125),
        }
    }
}

/// The program's side: steps 18–28 (docs/jail.md). Never returns.
fn program(p: &Prepared, ptrs: &Ptrs) -> ! {
    // 18. New session: no controlling terminal of the daemon's. Signals as a fresh process
    //     has them: every signal the daemon ignores back to its default (SIGPIPE: every Rust
    //     program ignores it, and an ignored signal stays ignored across exec, so `yes | head`
    //     would print "Broken pipe"; and whatever the daemon's own parent left ignored, e.g.
    //     SIGHUP under nohup), none blocked.
    sys::setsid();
    for &sig in p.ignored_signals.iter() {
        check(p, Step::Signals, sys::default_signal(sig));
    }
    check(p, Step::Signals, sys::unblock_all_signals());
    p.clock.mark(Mark::Session);
    // 19. stdin, stdout, stderr.
    check(p, Step::Stdio, sys::dup2(p.fds.stdin, 0));
    check(p, Step::Stdio, sys::dup2(p.fds.stdout, 1));
    check(p, Step::Stdio, sys::dup2(p.fds.stderr, 2));
    p.clock.mark(Mark::Stdio);
    // 20. The run directory.
    check(p, Step::Chdir, sys::chdir(&p.workdir));
    p.clock.mark(Mark::Chdir);
    // 21. rlimits.
    for &(res, soft, hard) in &p.rlimits {
        check(p, Step::Rlimit, sys::setrlimit(res, soft, hard));
    }
    p.clock.mark(Mark::Rlimits);
    // 22. The job's processes (the program and everything it starts inherit both) are the OOM
    //     killer's first choice should the host run out of memory: written through the jail's
    //     own /proc. And they run JOB_NICE below the daemon: when jobs keep every CPU busy, the
    //     daemon still wakes at once to stop a job at its budget, answer clients and start the
    //     next job; jobs compete with each other as equals. Init keeps the daemon's nice value:
    //     it only waits, and its own setup is not slowed on a busy machine. Both values are the
    //     program's own (it is a vfork child: its write does not reach init or the daemon).
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
    check(p, Step::Nice, sys::lower_priority(JOB_NICE));
    p.clock.mark(Mark::OomNice);
    // 23. Credentials: empty the bounding set (so nothing can regain a capability), then one gid
    //     and uid for real, effective and saved ids. Leaving uid 0 clears the permitted and
    //     effective capability sets (capabilities(7), "Effect of user ID changes").
    for cap in 0..=63 {
        match sys::prctl(libc::PR_CAPBSET_DROP, cap) {
            Ok(_) | Err(Errno(libc::EINVAL)) => {}
            Err(e) => fail(p.fds.err_w, Step::Credentials, e),
        }
    }
    check(p, Step::Credentials, sys::setgroups(&[p.gid]));
    check(p, Step::Credentials, sys::setresgid(p.gid));
    check(p, Step::Credentials, sys::setresuid(p.uid));
    p.clock.mark(Mark::Credentials);
    // 24. No exec may grant privileges again (setuid files, file capabilities).
    check(
        p,
        Step::NoNewPrivs,
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map(drop),
    );
    p.clock.mark(Mark::NoNewPrivs);
    // 25. Landlock: rules for the filesystems init mounted, then enforce.
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
    p.clock.mark(Mark::Landlock);
    // 26. Seccomp last, so the steps above are not filtered. The listener goes to the daemon,
    //     which learns the number of any denied syscall the program tries.
    let listener = check(p, Step::Seccomp, sys::seccomp_set_filter(&p.seccomp, true));
    check(
        p,
        Step::SendListener,
        sys::send_fd(p.fds.notify_w, listener),
    );
    sys::close(listener);
    p.clock.mark(Mark::Seccomp);
    // 27. Every other inherited descriptor closes at exec; the error pipe's closing tells the
    //     parent that exec succeeded.
    check(p, Step::Exec, sys::cloexec_from(3));
    p.clock.mark(Mark::Cloexec);
    // 28. exec; on failure the errno goes to the daemon as step `Exec`.
    let e = sys::execve(&p.exec_path, &ptrs.argv, &ptrs.envp);
    fail(p.fds.err_w, Step::Exec, e)
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The error-pipe record (the steps themselves fail for real in
    //! tests/tests/jail_steps.rs).
    use super::*;

    #[test]
    fn test_setup_failure_round_trip_every_step() {
        for &step in Step::ALL {
            for errno in [0, 1, libc::EPERM, libc::ENOENT, libc::ENOSYS, i32::MAX, -1] {
                let f = SetupFailure { step, errno };
                assert_eq!(SetupFailure::from_bytes(&f.to_bytes()), Some(f));
            }
        }
        // Every step has a name of its own: the log says which one failed.
        let mut names: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Step::ALL.len());
    }

    /// Issue 11: a hand-kept decode list left out `OomScore` and `Nice`, so a failure at either
    /// step was reported as 'unknown'.
    #[test]
    fn issue_11_oom_score_and_nice_failures_keep_their_step() {
        for (step, name) in [
            (Step::OomScore, "set oom_score_adj"),
            (Step::Nice, "lower the CPU priority"),
        ] {
            let rec = SetupFailure {
                step,
                errno: libc::EACCES,
            }
            .to_bytes();
            let got = SetupFailure::from_bytes(&rec).expect("a known step");
            assert_eq!(
                (got.step, got.step.name(), got.errno),
                (step, name, libc::EACCES)
            );
        }
    }

    #[test]
    fn test_setup_failure_rejects_garbage() {
        assert_eq!(SetupFailure::from_bytes(&[]), None);
        assert_eq!(SetupFailure::from_bytes(&[1, 0, 0, 0, 2, 0, 0]), None);
        let unknown = SetupFailure {
            step: Step::Exec,
            errno: 2,
        }
        .to_bytes();
        let mut rec = unknown;
        rec[..4].copy_from_slice(&(Step::ALL.len() as u32).to_ne_bytes());
        assert_eq!(SetupFailure::from_bytes(&rec), None);
        // A record followed by more bytes: the record counts.
        let mut long = unknown.to_vec();
        long.extend_from_slice(b"xx");
        assert_eq!(
            SetupFailure::from_bytes(&long).map(|f| f.step),
            Some(Step::Exec)
        );
    }
}
