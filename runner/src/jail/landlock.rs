//! Landlock, the jail's second filesystem wall (and, from ABI 4/6, a TCP and IPC-scope wall).
//!
//! The parent creates the ruleset and adds the rules for host inodes that the jail sees through
//! bind mounts (system directories, the run directory, device nodes). The child adds rules for the
//! filesystems it mounts itself (`/tmp`, `/dev/shm`, `/proc`: new inodes the parent cannot name)
//! and then calls `landlock_restrict_self`. Raw syscalls rather than the `landlock` crate because
//! half of the work happens after `clone3`, where only raw syscalls are allowed, and because the
//! daemon fails closed (docs/ARCHITECTURE.md#failure-handling): there is no best-effort mode
//! to negotiate.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crate::sys;

pub const EXECUTE: u64 = 1 << 0;
pub const WRITE_FILE: u64 = 1 << 1;
pub const READ_FILE: u64 = 1 << 2;
pub const READ_DIR: u64 = 1 << 3;
const REMOVE_DIR: u64 = 1 << 4;
const REMOVE_FILE: u64 = 1 << 5;
const MAKE_CHAR: u64 = 1 << 6;
const MAKE_DIR: u64 = 1 << 7;
const MAKE_REG: u64 = 1 << 8;
const MAKE_SOCK: u64 = 1 << 9;
const MAKE_FIFO: u64 = 1 << 10;
const MAKE_BLOCK: u64 = 1 << 11;
const MAKE_SYM: u64 = 1 << 12;
const REFER: u64 = 1 << 13; // ABI 2
const TRUNCATE: u64 = 1 << 14; // ABI 3
const IOCTL_DEV: u64 = 1 << 15; // ABI 5

const NET_BIND_TCP: u64 = 1 << 0; // ABI 4
const NET_CONNECT_TCP: u64 = 1 << 1; // ABI 4
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0; // ABI 6
const SCOPE_SIGNAL: u64 = 1 << 1; // ABI 6

const CREATE_RULESET_VERSION: u32 = 1 << 0;

/// Read and execute: system directories.
pub const RX: u64 = EXECUTE | READ_FILE | READ_DIR;
/// Read only: /proc, device nodes that are only read.
pub const RO: u64 = READ_FILE | READ_DIR;

/// What the running kernel supports.
#[derive(Debug, Clone, Copy)]
pub struct Abi(pub u32);

impl Abi {
    /// Asks the kernel for its Landlock ABI version; `None` when Landlock is unavailable.
    pub fn detect() -> Option<Abi> {
        sys::landlock_create_ruleset(None, CREATE_RULESET_VERSION)
            .ok()
            .map(|v| Abi(v as u32))
    }

    /// Every filesystem right this ABI knows: all of them are handled (denied unless granted).
    pub fn fs_all(self) -> u64 {
        let mut m = EXECUTE
            | WRITE_FILE
            | READ_FILE
            | READ_DIR
            | REMOVE_DIR
            | REMOVE_FILE
            | MAKE_CHAR
            | MAKE_DIR
            | MAKE_REG
            | MAKE_SOCK
            | MAKE_FIFO
            | MAKE_BLOCK
            | MAKE_SYM;
        if self.0 >= 2 {
            m |= REFER;
        }
        if self.0 >= 3 {
            m |= TRUNCATE;
        }
        if self.0 >= 5 {
            m |= IOCTL_DEV;
        }
        m
    }

    /// Read-write rights for the run directory and the private temporary directories: everything
    /// except creating device nodes.
    pub fn rw(self) -> u64 {
        self.fs_all() & !(MAKE_CHAR | MAKE_BLOCK | IOCTL_DEV)
    }

    /// Rights for character devices the program writes (/dev/null…).
    pub fn dev_rw(self) -> u64 {
        (READ_FILE | WRITE_FILE | TRUNCATE) & self.fs_all()
    }

    /// What `runner check` prints.
    pub fn describe(self) -> String {
        let mut s = format!("Landlock ABI {}: filesystem", self.0);
        if self.0 >= 4 {
            s.push_str(", TCP bind/connect denied");
        }
        if self.0 >= 6 {
            s.push_str(", abstract unix sockets and signals scoped to the run");
        }
        s
    }
}

/// A ruleset under construction; its descriptor is inherited by the child.
#[derive(Debug)]
pub struct Ruleset {
    fd: OwnedFd,
}

impl Ruleset {
    pub fn new(abi: Abi) -> std::io::Result<Ruleset> {
        let net = if abi.0 >= 4 {
            NET_BIND_TCP | NET_CONNECT_TCP
        } else {
            0
        };
        let scoped = if abi.0 >= 6 {
            SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        } else {
            0
        };
        // struct landlock_ruleset_attr grew with the ABI; pass only the fields this kernel knows.
        let attr = [abi.fs_all(), net, scoped];
        let len = if abi.0 >= 6 {
            3
        } else if abi.0 >= 4 {
            2
        } else {
            1
        };
        let fd = sys::landlock_ruleset(&attr[..len]).map_err(sys::Errno::into_io)?;
        Ok(Ruleset { fd })
    }

    /// Grants `access` beneath a host path (which the jail sees through a bind mount).
    pub fn allow(&self, path: &Path, access: u64) -> std::io::Result<()> {
        let c = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        let fd = sys::open_owned(&c, libc::O_PATH).map_err(sys::Errno::into_io)?;
        sys::landlock_add_path_rule(self.fd.as_raw_fd(), access, fd.as_raw_fd())
            .map_err(sys::Errno::into_io)
    }

    /// Grants `access` beneath an already opened (O_PATH) directory or file.
    pub fn allow_fd(&self, fd: std::os::fd::BorrowedFd<'_>, access: u64) -> std::io::Result<()> {
        sys::landlock_add_path_rule(self.fd.as_raw_fd(), access, fd.as_raw_fd())
            .map_err(sys::Errno::into_io)
    }

    pub fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}
