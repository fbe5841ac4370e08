//! The only module of the daemon with `unsafe`: thin wrappers over the raw syscalls the jail,
//! the eBPF monitor and the server need.
//!
//! Owns: every `unsafe` block of the crate (`lib.rs` allows `unsafe_code` here and nowhere else),
//! each with its `SAFETY:` comment. Must not: hold state, decide policy or log; a wrapper makes
//! one syscall (or a fixed few) and returns.
//!
//! Every wrapper that `jail/child.rs` calls is async-signal-safe: it never allocates and never
//! panics, so it may run between `clone3` and `execve` in a copy of a multi-threaded process (see
//! signal-safety(7)). Errors are returned as a bare `Errno`, which is `Copy` and allocation-free;
//! the caller turns it into an `io::Error` with context. The tokio registrations at the end
//! (`async_fd`, `async_owned_fd`), [`raise_fd_limit`] and [`trim_heap`] are for the daemon, never
//! the child.

use std::ffi::{CStr, c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A raw errno value from a failed syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Errno(pub i32);

impl Errno {
    fn last() -> Errno {
        // SAFETY: __errno_location returns a valid pointer to this thread's errno.
        Errno(unsafe { *libc::__errno_location() })
    }

    pub(crate) fn into_io(self) -> std::io::Error {
        std::io::Error::from_raw_os_error(self.0)
    }
}

fn cvt(ret: c_long) -> Result<c_long, Errno> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

fn cvt_int(ret: c_int) -> Result<c_int, Errno> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

fn opt_ptr(s: Option<&CStr>) -> *const c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

/// include/uapi/linux/sched.h. Not `libc::CLONE_INTO_CGROUP`: that constant is a `c_int` and
/// overflows to 0 (libc issue #3584), which silently leaves the child in our own cgroup.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Where `clone3` puts the new child's pidfd: written by the kernel before the child runs, so
/// another thread may take it while the cloning thread is still suspended (`CLONE_VFORK`).
#[derive(Debug)]
pub(crate) struct PidfdCell(std::sync::atomic::AtomicI32);

impl PidfdCell {
    pub(crate) fn new() -> PidfdCell {
        PidfdCell(std::sync::atomic::AtomicI32::new(-1))
    }

    /// The pidfd, once: later calls (and calls before the clone) give `None`.
    pub(crate) fn take(&self) -> Option<OwnedFd> {
        let fd = self.0.swap(-1, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: a non-negative value was stored by the kernel (CLONE_PIDFD) and is a new
        // descriptor nobody else owns; the swap hands it out exactly once.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

impl Drop for PidfdCell {
    fn drop(&mut self) {
        // A pidfd nobody took (the taker gave up) is closed, not leaked.
        drop(self.take());
    }
}

/// Sets the disposition of `sig` back to its default (this process's own table: a child made
/// without `CLONE_SIGHAND` has a copy).
pub(crate) fn default_signal(sig: c_int) -> Result<(), Errno> {
    // SAFETY: an all-zero sigaction is valid (no flags, empty mask); SIG_DFL names no code.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = libc::SIG_DFL;
    // SAFETY: `sa` is a valid sigaction; the old action is not asked for.
    cvt_int(unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) }).map(drop)
}

/// The signals this process ignores (`SIG_IGN`): a child keeps them ignored across `execve`.
/// glibc's own (32, 33) cannot be asked for and are never listed.
pub(crate) fn ignored_signals() -> Vec<c_int> {
    (1..=libc::SIGRTMAX())
        .filter(|&sig| {
            // SAFETY: an all-zero sigaction is valid to be written over.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: only the current action is asked for, into `old`.
            let r = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
            r == 0 && old.sa_sigaction == libc::SIG_IGN
        })
        .collect()
}

/// Unblocks every signal of the calling thread.
pub(crate) fn unblock_all_signals() -> Result<(), Errno> {
    // SAFETY: an all-zero sigset_t is a valid set; sigemptyset makes it the empty set.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid for writing; the old mask is not asked for.
    cvt_int(unsafe {
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut())
    })
    .map(drop)
}

/// `clone3(flags | CLONE_VM | CLONE_VFORK | CLONE_PIDFD)` with the child on `stack`, as
/// posix_spawn does: the child shares our memory (no copy of the daemon's page tables, no
/// copy-on-write faults, nothing to tear down at its exit) and runs `f`, which must not return
/// (it `_exit`s); the calling thread is suspended until the child exits (or execs). The child's
/// pidfd goes to `pidfd` before the child runs. Returns the child's pid, once it is gone (or
/// has exec'd).
///
/// The child runs our code in our memory, on the calling thread's thread-local storage (libc's
/// `errno`): sound because that thread is suspended meanwhile, and because `f` follows vfork
/// discipline (no allocation, no locks: see `jail/child.rs`).
#[cfg(target_arch = "x86_64")]
pub(crate) fn clone3_vfork(
    flags: u64,
    cgroup_fd: Option<RawFd>,
    stack: &mut [u8],
    pidfd: &PidfdCell,
    f: &mut dyn FnMut(),
) -> Result<i32, Errno> {
    extern "C" fn trampoline(arg: *mut c_void) -> ! {
        // SAFETY: `arg` points at the `&mut dyn FnMut` below, which lives in the parent's frame;
        // the parent is suspended (CLONE_VFORK) until the child exits.
        let f = unsafe { &mut *(arg as *mut &mut dyn FnMut()) };
        f();
        // Not reached: `f` exits.
        exit(127)
    }
    // The stack grows down: start at the (16-byte aligned) end of the buffer.
    let base = stack.as_mut_ptr() as usize;
    let top = stack.as_mut_ptr_range().end as usize & !15;
    let mut args = libc::clone_args {
        flags: flags
            | (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD) as u64
            | if cgroup_fd.is_some() {
                CLONE_INTO_CGROUP
            } else {
                0
            },
        pidfd: pidfd.0.as_ptr() as u64,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: base as u64,
        stack_size: (top - base) as u64,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup_fd.map_or(0, |fd| fd as u64),
    };
    let mut f: &mut dyn FnMut() = f;
    let arg = &mut f as *mut &mut dyn FnMut() as *mut c_void;
    let ret: c_long;
    // SAFETY: `args` is a valid, fully initialised clone_args of the size passed; `pidfd`
    // outlives the call. The kernel starts the child with its stack pointer at the top of
    // `stack` (ours, unused by anyone else while the child runs, 16-byte aligned so that the
    // `call` leaves it as the ABI expects at function entry); the child jumps straight into
    // `trampoline` and never comes back into this frame. We are suspended until the child is
    // gone (CLONE_VFORK), so `f`, `arg` and `stack` outlive every use the child makes of them.
    // `syscall` clobbers rcx and r11; r12 and r13 are preserved across it.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") std::ptr::addr_of_mut!(args),
            in("rsi") std::mem::size_of::<libc::clone_args>(),
            in("r12") trampoline as extern "C" fn(*mut c_void) -> !,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    if ret < 0 {
        return Err(Errno(-ret as i32));
    }
    Ok(ret as i32)
}

/// Runs `f` in a child made with `clone(CLONE_VM | CLONE_VFORK)` on `stack`, as posix_spawn
/// does: the child shares our memory (no page-table copy of the daemon-sized address space) and
/// we are suspended until it execs or exits. `f` should not return (it execs or `_exit`s). Returns
/// the child's pid.
pub(crate) fn vfork_on_stack(stack: &mut [u8], f: &mut dyn FnMut()) -> Result<i32, Errno> {
    extern "C" fn trampoline(arg: *mut c_void) -> c_int {
        // SAFETY: `arg` points at the `&mut dyn FnMut` below, which lives in the parent's frame;
        // the parent is suspended (CLONE_VFORK) until the child execs or exits.
        let f = unsafe { &mut *(arg as *mut &mut dyn FnMut()) };
        f();
        // Not reached: `f` execs or exits. Should it return, glibc's clone exits with this.
        127
    }
    // The stack grows down: start at the (16-byte aligned) end of the buffer.
    let end = stack.as_mut_ptr_range().end as usize & !15;
    let mut f: &mut dyn FnMut() = f;
    // SAFETY: `stack` is ours and unused while the child runs on it (we are suspended); the
    // trampoline's argument outlives the child's use of it, as above.
    let pid = unsafe {
        libc::clone(
            trampoline,
            end as *mut c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &mut f as *mut &mut dyn FnMut() as *mut c_void,
        )
    };
    cvt_int(pid)
}

pub(crate) fn mount(
    src: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    // SAFETY: all pointers are NUL-terminated strings or null, valid for the call.
    cvt_int(unsafe {
        libc::mount(
            opt_ptr(src),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            opt_ptr(data) as *const c_void,
        )
    })
    .map(drop)
}

/// `mount_setattr(AT_FDCWD, target, flags, {attr_set})` (Linux 5.12): applies mount attributes
/// to the mount at `target` or, `recursive`, to the whole tree under it (which `MS_REMOUNT`
/// cannot do).
pub(crate) fn mount_setattr(target: &CStr, attr_set: u64, recursive: bool) -> Result<(), Errno> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags: c_uint = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: `target` is a valid C string and `attr` a valid mount_attr of the size passed.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            target.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// include/uapi/linux/fcntl.h and mount.h.
const AT_RECURSIVE: c_uint = 0x8000;
const OPEN_TREE_CLONE: c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: c_uint = 0x4;

/// `open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC [| AT_RECURSIVE])` (Linux
/// 5.2): a detached copy of the mount at `path` (with the mounts beneath it if `recursive`),
/// which a process in another mount namespace can attach with [`move_mount_fd`]. A bind mount
/// cannot cross namespaces; a detached tree can.
pub(crate) fn open_tree_clone(path: &CStr, recursive: bool) -> Result<OwnedFd, Errno> {
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: `path` is a valid C string; the result is a new descriptor we own.
    let fd =
        cvt(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) })?;
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `move_mount(fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)`: attaches the detached tree
/// `fd` (from [`open_tree_clone`]) at `target` in the caller's mount namespace.
pub(crate) fn move_mount_fd(fd: RawFd, target: &CStr) -> Result<(), Errno> {
    // SAFETY: both paths are valid C strings; `fd` is a descriptor number.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(drop)
}

pub(crate) fn umount2(target: &CStr, flags: c_int) -> Result<(), Errno> {
    // SAFETY: target is a valid C string.
    cvt_int(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

pub(crate) fn pivot_root(new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
    // SAFETY: both arguments are valid C strings.
    cvt(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
        .map(drop)
}

pub(crate) fn mkdir(path: &CStr, mode: u32) -> Result<(), Errno> {
    // SAFETY: path is a valid C string.
    match cvt_int(unsafe { libc::mkdir(path.as_ptr(), mode) }) {
        Ok(_) | Err(Errno(libc::EEXIST)) => Ok(()),
        Err(e) => Err(e),
    }
}

pub(crate) fn symlink(target: &CStr, linkpath: &CStr) -> Result<(), Errno> {
    // SAFETY: both arguments are valid C strings.
    cvt_int(unsafe { libc::symlink(target.as_ptr(), linkpath.as_ptr()) }).map(drop)
}

/// Creates an empty file to bind-mount a device node onto.
pub(crate) fn touch(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is a valid C string; the returned fd is closed right away.
    let fd = cvt_int(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644,
        )
    })?;
    close(fd);
    Ok(())
}

pub(crate) fn open(path: &CStr, flags: c_int) -> Result<RawFd, Errno> {
    // SAFETY: path is a valid C string.
    cvt_int(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) })
}

/// Opens a file for use in the parent, returning an owned descriptor.
pub(crate) fn open_owned(path: &CStr, flags: c_int) -> Result<OwnedFd, Errno> {
    let fd = open(path, flags)?;
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn close(fd: RawFd) {
    // SAFETY: closing a descriptor number has no memory-safety preconditions; callers only pass
    // descriptors they own in this process.
    unsafe { libc::close(fd) };
}

/// The calling thread's id.
pub(crate) fn gettid() -> i32 {
    // SAFETY: plain syscall without arguments.
    unsafe { libc::gettid() }
}

pub(crate) fn chdir(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is a valid C string.
    cvt_int(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

pub(crate) fn sethostname(name: &[u8]) -> Result<(), Errno> {
    // SAFETY: pointer and length describe `name`.
    cvt_int(unsafe { libc::sethostname(name.as_ptr() as *const c_char, name.len()) }).map(drop)
}

pub(crate) fn setns(fd: RawFd, nstype: c_int) -> Result<(), Errno> {
    // SAFETY: plain syscall on a descriptor.
    cvt_int(unsafe { libc::setns(fd, nstype) }).map(drop)
}

pub(crate) fn unshare(flags: c_int) -> Result<(), Errno> {
    // SAFETY: plain syscall.
    cvt_int(unsafe { libc::unshare(flags) }).map(drop)
}

pub(crate) fn dup2(old: RawFd, new: RawFd) -> Result<(), Errno> {
    // SAFETY: plain syscall on descriptor numbers.
    cvt_int(unsafe { libc::dup2(old, new) }).map(drop)
}

// The three credential calls below go through `syscall` on purpose: glibc's wrappers implement
// POSIX "all threads" semantics by signalling every thread it knows of and waiting for them
// (nptl setxid). After `clone3` the child has one thread but glibc still lists the parent's, so
// the wrapper would wait forever. The raw syscalls change only the calling thread, which here is
// the whole process.

pub(crate) fn setgroups(groups: &[libc::gid_t]) -> Result<(), Errno> {
    // SAFETY: pointer and length describe `groups`.
    cvt(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) }).map(drop)
}

pub(crate) fn setresgid(gid: u32) -> Result<(), Errno> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(drop)
}

pub(crate) fn setresuid(uid: u32) -> Result<(), Errno> {
    // SAFETY: plain syscall.
    cvt(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(drop)
}

pub(crate) fn prctl(option: c_int, arg2: c_ulong) -> Result<c_int, Errno> {
    // SAFETY: the options used by the jail take integer arguments only.
    cvt_int(unsafe { libc::prctl(option, arg2, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) })
}

pub(crate) fn setrlimit(
    resource: libc::__rlimit_resource_t,
    soft: u64,
    hard: u64,
) -> Result<(), Errno> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit for the duration of the call.
    cvt_int(unsafe { libc::setrlimit(resource, &lim) }).map(drop)
}

/// Raises this process's nice value by `by` (at most to 19); children inherit it.
pub(crate) fn lower_priority(by: c_int) -> Result<(), Errno> {
    // getpriority may return -1 legitimately: clear errno first and check it after.
    // SAFETY: errno is this thread's; getpriority/setpriority take integer arguments only.
    let now = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    };
    if now == -1 && Errno::last().0 != 0 {
        return Err(Errno::last());
    }
    let to = (now + by).min(19);
    // SAFETY: as above.
    cvt_int(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, to) }).map(drop)
}

/// The current `(soft, hard)` limit of `resource`.
pub(crate) fn getrlimit(resource: libc::__rlimit_resource_t) -> Result<(u64, u64), Errno> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    cvt_int(unsafe { libc::getrlimit(resource, &mut lim) })?;
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Closes every descriptor except those in `keep` (sorted ascending), with `close_range` over
/// the gaps: no allocation, no /proc walk.
pub(crate) fn close_all_except(keep: &[RawFd]) {
    let mut next: c_uint = 0;
    for &fd in keep {
        let fd = fd as c_uint;
        if fd > next {
            // SAFETY: plain syscall on descriptor numbers this process owns.
            unsafe { libc::close_range(next, fd - 1, 0) };
        }
        next = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::close_range(next, c_uint::MAX, 0) };
}

/// Marks every descriptor from `first` upwards close-on-exec.
pub(crate) fn cloexec_from(first: u32) -> Result<(), Errno> {
    // SAFETY: plain syscall.
    cvt_int(unsafe { libc::close_range(first, c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as c_int) })
        .map(drop)
}

/// `execve`; returns only on failure.
pub(crate) fn execve(path: &CStr, argv: &[*const c_char], envp: &[*const c_char]) -> Errno {
    // SAFETY: the caller built `argv` and `envp` as NUL-terminated arrays of pointers to C strings
    // that outlive this call (see `child::Prepared`).
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Errno::last()
}

pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: _exit never returns and runs no atexit handlers, as required after clone.
    unsafe { libc::_exit(code) }
}

/// Writes all of `buf`, retrying on EINTR and short writes.
pub(crate) fn write_all(fd: RawFd, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: pointer and length describe `buf`.
        let n = unsafe { libc::write(fd, buf.as_ptr() as *const c_void, buf.len()) };
        if n < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// One `read`, retrying on EINTR. Returns the number of bytes read (0 at end of file).
pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: pointer and length describe `buf`.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut c_void, buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = Errno::last();
        if e.0 != libc::EINTR {
            return Err(e);
        }
    }
}

/// `wait4(pid, …, 0)`: returns `(pid, status)`.
pub(crate) fn wait_any() -> Result<(i32, c_int), Errno> {
    let mut status: c_int = 0;
    // SAFETY: `status` is valid for writing.
    let pid = cvt_int(unsafe { libc::wait4(-1, &mut status, libc::__WALL, std::ptr::null_mut()) })?;
    Ok((pid, status))
}

/// Installs a seccomp filter. With `listener`, returns the user-notification descriptor
/// (SECCOMP_FILTER_FLAG_NEW_LISTENER); otherwise returns -1.
pub(crate) fn seccomp_set_filter(
    prog: &[libc::sock_filter],
    listener: bool,
) -> Result<RawFd, Errno> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    let flags = if listener {
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
    } else {
        0
    };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel copies the program.
    let ret = cvt(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    })?;
    Ok(if listener { ret as RawFd } else { -1 })
}

/// `landlock_create_ruleset`. With `attr == None` and `flags == 1` (VERSION) it returns the ABI.
pub(crate) fn landlock_create_ruleset(attr: Option<&[u64]>, flags: u32) -> Result<RawFd, Errno> {
    let (ptr, len) = match attr {
        Some(a) => (a.as_ptr() as *const c_void, std::mem::size_of_val(a)),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: `attr` is a packed landlock_ruleset_attr (all u64 fields) of the given size.
    let ret = cvt(unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, ptr, len, flags) })?;
    Ok(ret as RawFd)
}

/// Creates a Landlock ruleset from a `landlock_ruleset_attr` given as its u64 fields.
pub(crate) fn landlock_ruleset(attr: &[u64]) -> Result<OwnedFd, Errno> {
    let fd = landlock_create_ruleset(Some(attr), 0)?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn setsid() {
    // SAFETY: plain syscall; failure (already a group leader) is harmless.
    unsafe { libc::setsid() };
}

/// `landlock_add_rule` with LANDLOCK_RULE_PATH_BENEATH.
pub(crate) fn landlock_add_path_rule(
    ruleset: RawFd,
    allowed: u64,
    parent_fd: RawFd,
) -> Result<(), Errno> {
    // struct landlock_path_beneath_attr is packed: u64 allowed_access, s32 parent_fd.
    #[repr(C, packed)]
    struct PathBeneath {
        allowed_access: u64,
        parent_fd: i32,
    }
    let attr = PathBeneath {
        allowed_access: allowed,
        parent_fd,
    };
    const LANDLOCK_RULE_PATH_BENEATH: c_int = 1;
    // SAFETY: `attr` is a valid landlock_path_beneath_attr for the duration of the call.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset,
            LANDLOCK_RULE_PATH_BENEATH,
            &attr as *const PathBeneath,
            0,
        )
    })
    .map(drop)
}

pub(crate) fn landlock_restrict_self(ruleset: RawFd) -> Result<(), Errno> {
    // SAFETY: plain syscall on a descriptor.
    cvt(unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0) }).map(drop)
}

/// Room for one cmsghdr carrying one int, 8-byte aligned as the kernel expects.
type CmsgBuf = [u64; 4];

/// A msghdr with a one-byte payload and a control buffer for one descriptor, shared by
/// `send_fd` and `recv_fd`. The pointers stored in it refer to `iov` and `cbuf`, which the caller
/// keeps alive (and in place) for as long as it uses the result.
fn fd_msghdr(iov: &mut libc::iovec, cbuf: &mut CmsgBuf) -> libc::msghdr {
    // SAFETY: a zeroed msghdr is a valid "empty" value; the fields used are filled below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut c_void;
    msg.msg_controllen = std::mem::size_of::<CmsgBuf>();
    msg
}

/// Sends one descriptor over a unix socket (SCM_RIGHTS).
pub(crate) fn send_fd(sock: RawFd, fd: RawFd) -> Result<(), Errno> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr() as *mut c_void,
        iov_len: 1,
    };
    let mut cbuf: CmsgBuf = [0; 4];
    let mut msg = fd_msghdr(&mut iov, &mut cbuf);
    // SAFETY: CMSG_SPACE is a pure computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<c_int>() as u32) } as usize;
    // SAFETY: msg_control points at `cbuf`, large enough for one cmsg with one int (32 bytes).
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut c_int, fd);
    }
    // SAFETY: `msg` and everything it points to is valid for the call.
    cvt(unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) } as c_long).map(drop)
}

/// Receives one descriptor sent by `send_fd`, without blocking. `Ok(None)`: nothing (yet) or the
/// peer closed without sending.
pub(crate) fn recv_fd(sock: RawFd) -> Result<Option<OwnedFd>, Errno> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr() as *mut c_void,
        iov_len: 1,
    };
    let mut cbuf: CmsgBuf = [0; 4];
    let mut msg = fd_msghdr(&mut iov, &mut cbuf);
    // SAFETY: `msg` and its buffers are valid for the call.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        let e = Errno::last();
        return if e.0 == libc::EAGAIN {
            Ok(None)
        } else {
            Err(e)
        };
    }
    // SAFETY: the kernel filled msg_control; CMSG_FIRSTHDR returns null or a valid header in it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Ok(None);
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const c_int);
        Ok(Some(OwnedFd::from_raw_fd(fd)))
    }
}

/// A connected pair of unix datagram sockets, both close-on-exec.
pub(crate) fn socketpair() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors.
    cvt_int(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair returned two new descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec pipe: `(read, write)`.
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors.
    cvt_int(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two new descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// An anonymous in-memory file holding `data`, positioned at 0: the jail's stdin.
pub(crate) fn memfd_with(data: &[u8]) -> Result<OwnedFd, Errno> {
    // SAFETY: the name is a valid C string; the returned fd is owned below.
    let fd = cvt_int(unsafe { libc::memfd_create(c"stdin".as_ptr(), libc::MFD_CLOEXEC) })?;
    // SAFETY: memfd_create returned a new descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    write_all(fd.as_raw_fd(), data)?;
    // SAFETY: plain lseek on our descriptor.
    cvt(unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_SET) })?;
    Ok(fd)
}

pub(crate) fn pidfd_send_signal(pidfd: RawFd, sig: c_int) -> Result<(), Errno> {
    // SAFETY: plain syscall; a null siginfo is allowed.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            std::ptr::null::<c_void>(),
            0,
        )
    })
    .map(drop)
}

/// Reaps the process behind `pidfd` without blocking (WNOHANG). `Ok(true)` if it was reaped.
pub(crate) fn reap_pidfd(pidfd: RawFd) -> Result<bool, Errno> {
    // SAFETY: zeroed siginfo_t is valid; waitid fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is valid for writing; P_PIDFD takes the descriptor as id.
    cvt_int(unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG,
        )
    })?;
    // SAFETY: si_pid is valid to read for a waitid result; 0 means nothing was reaped.
    Ok(unsafe { info.si_pid() } != 0)
}

/// include/uapi/linux/pidfd.h: `PIDFD_GET_MNT_NAMESPACE`, `_IO(PIDFS_IOCTL_MAGIC = 0xFF, 3)`.
const PIDFD_GET_MNT_NAMESPACE: c_ulong = 0xFF03;

/// A descriptor (close-on-exec) of the mount namespace of the process `pidfd` refers to; it
/// keeps the namespace alive. Linux 6.11+ (`ENOTTY` before); `ESRCH` once the process exited.
pub(crate) fn pidfd_mnt_ns(pidfd: RawFd) -> Result<OwnedFd, Errno> {
    // SAFETY: the ioctl takes no argument and returns a new descriptor or -1.
    let fd = cvt_int(unsafe { libc::ioctl(pidfd, PIDFD_GET_MNT_NAMESPACE, 0) })?;
    // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Receives one seccomp user notification: `(pid, syscall number)`.
pub(crate) fn seccomp_notif_recv(fd: RawFd) -> Result<(u32, i32), Errno> {
    // SAFETY: the kernel requires a zeroed seccomp_notif on input.
    let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: `notif` is a valid seccomp_notif for this kernel's ioctl (checked by size at start-up
    // is unnecessary: the struct layout has been fixed since 5.0).
    cvt_int(unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut notif) })?;
    Ok((notif.pid, notif.data.nr))
}

/// Creates an eventfd (close-on-exec, non-blocking) for cgroup v1 OOM notifications.
pub(crate) fn eventfd() -> Result<OwnedFd, Errno> {
    // SAFETY: plain syscall.
    let fd = cvt_int(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: eventfd returned a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Registers a descriptor with tokio's reactor for readability (pidfd, seccomp listener,
/// eventfd). Borrowing the descriptor ties its lifetime to the registration, which is the
/// invariant `AsyncFd::register` asks for.
pub(crate) fn async_fd(
    fd: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<tokio::io::unix::AsyncFd<std::os::fd::BorrowedFd<'_>>> {
    // SAFETY: a BorrowedFd is open for its whole lifetime and always returns the same number;
    // the AsyncFd cannot outlive the borrow.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// As [`async_fd`], for poll priority (`POLLPRI`): how the kernel signals that a cgroup v2
/// file changed.
pub(crate) fn async_fd_priority(
    fd: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<tokio::io::unix::AsyncFd<std::os::fd::BorrowedFd<'_>>> {
    // SAFETY: as in `async_fd`.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::PRIORITY) }
        .map_err(|e| e.into_parts().1)
}

/// Registers an owned descriptor with tokio's reactor (readable interest), e.g. the eBPF ring
/// buffer's.
pub(crate) fn async_owned_fd(
    fd: std::os::fd::OwnedFd,
) -> std::io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd, which is open until the AsyncFd drops it and always
    // returns the same number.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// Raises this process's soft `RLIMIT_NOFILE` to `want` (at most the hard limit; never lowers
/// it). Returns the soft limit now in force. The daemon calls it at start so that
/// `max_connections` client sockets plus the descriptors of the running jails fit; systemd's
/// default soft limit is 1024. Jailed programs get their own limits (`rlimit` in `jail/child.rs`).
pub fn raise_fd_limit(want: u64) -> std::io::Result<u64> {
    let (soft, hard) = getrlimit(libc::RLIMIT_NOFILE).map_err(Errno::into_io)?;
    let target = want.min(hard);
    if target <= soft {
        return Ok(soft);
    }
    setrlimit(libc::RLIMIT_NOFILE, target, hard).map_err(Errno::into_io)?;
    Ok(target)
}

/// CPU time (user + system) this process has used so far, all threads, not its children (the
/// jails' inits): `getrusage(RUSAGE_SELF)`. For the `process_cpu_seconds_total` metric.
pub fn process_cpu_time() -> std::time::Duration {
    // SAFETY: rusage is plain data; all-zero bytes are a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage for the duration of the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return std::time::Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + std::time::Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The soft `RLIMIT_NOFILE` of this process (`process_max_fds`); 0 if it cannot be read.
pub fn fd_limit() -> u64 {
    getrlimit(libc::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft)
}

/// The effective uid of this process (`runner serve` and the jail commands need 0).
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Gives the heap's free memory back to the kernel (glibc's `malloc_trim(0)`). The daemon calls
/// it once it is set up: start-up frees megabytes (the eBPF loader's work) that glibc would keep
/// mapped, and every jail's `clone3` copies the page tables of all mapped anonymous memory, and
/// the jail's init copies them once more for the program (docs/performance.md).
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointer and only walks glibc's own allocator state, under
    // its own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// CPU time (user + system) used so far by this process and by its children that were reaped.
pub(crate) fn cpu_time_with_children() -> std::time::Duration {
    let mut total = std::time::Duration::ZERO;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: a zeroed rusage is valid; getrusage fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is valid for writing.
        if unsafe { libc::getrusage(who, &mut ru) } == 0 {
            for tv in [ru.ru_utime, ru.ru_stime] {
                total += std::time::Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
            }
        }
    }
    total
}

/// Memory for a stack: an anonymous private mapping of its own, untouched, so it costs neither
/// zeroing nor page-table copies at the next `clone3` (pages appear when first written).
#[derive(Debug)]
pub(crate) struct StackMem {
    base: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: plain memory owned by this value; handed to one thread at a time.
unsafe impl Send for StackMem {}

impl StackMem {
    pub(crate) fn new(len: usize) -> Result<StackMem, Errno> {
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let base = std::ptr::NonNull::new(p.cast()).ok_or(Errno(libc::ENOMEM))?;
        Ok(StackMem { base, len })
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `len` bytes of our own zero-filled mapping, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.len) }
    }
}

impl Drop for StackMem {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no borrow outlives `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Nanoseconds of `CLOCK_MONOTONIC` (the vDSO: no syscall, async-signal-safe, the same clock in
/// every process of the machine).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writing; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// `len` 64-bit cells in an anonymous `MAP_SHARED` mapping: what a forked or cloned child stores
/// there, its parent reads (a private copy-on-write page would not be seen). Storing is one
/// atomic write, async-signal-safe.
#[derive(Debug)]
pub(crate) struct SharedCells {
    cells: std::ptr::NonNull<std::sync::atomic::AtomicU64>,
    len: usize,
}

// SAFETY: the mapping is only accessed through atomics and lives until drop.
unsafe impl Send for SharedCells {}
// SAFETY: as above.
unsafe impl Sync for SharedCells {}

impl SharedCells {
    pub(crate) fn new(len: usize) -> Result<SharedCells, Errno> {
        let bytes = len.max(1) * std::mem::size_of::<u64>();
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let cells = std::ptr::NonNull::new(p.cast()).ok_or(Errno(libc::ENOMEM))?;
        Ok(SharedCells { cells, len })
    }

    fn cell(&self, i: usize) -> Option<&std::sync::atomic::AtomicU64> {
        // SAFETY: `i < len` cells of the zero-filled mapping, which outlives `&self`; AtomicU64
        // has the size and alignment of u64 and the mapping is page-aligned.
        (i < self.len).then(|| unsafe { &*self.cells.as_ptr().add(i) })
    }

    /// Stores `v` in cell `i` (ignored out of range).
    pub(crate) fn store(&self, i: usize, v: u64) {
        if let Some(c) = self.cell(i) {
            c.store(v, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Cell `i` (0 out of range or never stored).
    pub(crate) fn load(&self, i: usize) -> u64 {
        self.cell(i)
            .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
    }
}

impl Drop for SharedCells {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no reference outlives `self`.
        unsafe {
            libc::munmap(
                self.cells.as_ptr().cast(),
                self.len.max(1) * std::mem::size_of::<u64>(),
            )
        };
    }
}
