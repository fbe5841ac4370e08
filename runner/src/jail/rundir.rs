//! Run directories: the one place a request's files live, shared by its compile and run steps.
//!
//! Owns: [`RunDir`] (`<data_dir>/runs/jobe_XXXXXX`, a tmpfs of its own, 0700, the slot's uid),
//! its names, creating it, the files the daemon writes into it and reads back, and handing it to
//! the teardown threads when dropped (`teardown.rs` unmounts and removes it); removing the ones
//! a dead daemon left. Must not: walk what a program left in it (it is unmounted, never
//! traversed), follow a link or block on a FIFO a program made.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::teardown::{Fence, Held, Release, Teardown};
use super::{JailError, cpath, cstr, io_err, sys_err};
use crate::sys;

/// Where a run directory appears inside the jail (CodeRunner strips this prefix from output).
pub const JAIL_RUNS_DIR: &str = "/home/jobe/runs";

/// Inodes of a run directory's tmpfs (files, directories and links together).
pub const RUN_DIR_INODES: u32 = 16384;

/// A run directory on the host, unmounted and removed (without following links) on a teardown
/// thread when dropped.
#[derive(Debug)]
pub struct RunDir {
    pub host: PathBuf,
    /// The same directory as the jail sees it: `/home/jobe/runs/jobe_XXXXXX` (another random
    /// name than the host's).
    pub jail: String,
    uid: u32,
    gid: u32,
    /// Hands the directory to the teardown threads when the `RunDir` is dropped (counted by the
    /// slot's fence on hybrid hosts: what the job wrote here is charged to the slot).
    _release: Held,
}

/// A new random run directory name, `jobe_XXXXXX` as Jobe's `tempnam`, and the path the jail
/// will see it at (planning needs the path before a slot is free).
pub(super) fn new_name() -> (String, String) {
    let name = format!("jobe_{}", random_suffix());
    let jail = format!("{JAIL_RUNS_DIR}/{name}");
    (name, jail)
}

/// Creates a run directory that the jail will see as `JAIL_RUNS_DIR/name`, for a slot's `uid`:
/// see `Jail::create_run_dir`. On the host it gets a random name of its own, `runs/jobe_XXXXXX`:
/// a request may make a second one of the same `name` (a deferred check, a cache hit after a
/// failed store) while the teardown threads still remove the first.
pub(super) fn create(
    runs: &Path,
    name: &str,
    size_bytes: u64,
    uid: u32,
    gid: u32,
    teardown: &Arc<Teardown>,
    fence: Option<&Arc<Fence>>,
) -> Result<RunDir, JailError> {
    let mut tries = 0;
    let host = loop {
        let host = runs.join(format!("jobe_{}", random_suffix()));
        match fs::DirBuilder::new().mode(0o700).create(&host) {
            Ok(()) => break host,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 8 => tries += 1,
            Err(e) => return Err(io_err("create", &host)(e)),
        }
    };
    // At least 1 MiB: a tmpfs of size 0 would be unlimited.
    let data = format!(
        "size={},nr_inodes={RUN_DIR_INODES},mode=0700,uid={uid},gid={gid}",
        size_bytes.max(1 << 20),
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
        _release: teardown.hold(Release::RunDir(host.clone()), fence),
        host,
        uid,
        gid,
    })
}

/// Removes the run directories in `runs` left by a previous daemon that died (the data
/// directory is locked to one daemon, so none of them is in use), unmounting their tmpfs first.
/// Returns how many it removed.
pub(super) fn remove_stale(runs: &Path) -> usize {
    let Ok(entries) = fs::read_dir(runs) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with("jobe_") {
            if let Ok(p) = cpath(&e.path()) {
                while sys::umount2(&p, libc::MNT_DETACH).is_ok() {}
            }
            if fs::remove_dir_all(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
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

    /// Copies the tree `from` (a compile cache entry: root-owned regular files and directories
    /// only) into this run directory, owned by the slot's user, keeping each file's mode
    /// (0644 or 0755): the layout a compile step left, for the run step. Every file and
    /// directory is created new and never through a link.
    pub fn copy_in(&self, from: &Path) -> Result<(), JailError> {
        super::artifact::copy_in(from, &self.host, (self.uid, self.gid))
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

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Names (creating and mounting needs root:
    //! tests/tests/jail_steps.rs).
    use super::*;

    #[test]
    fn test_new_name_is_jobe_style_and_random() {
        let (name, jail) = new_name();
        let suffix = name.strip_prefix("jobe_").expect("jobe_ prefix");
        assert_eq!(suffix.len(), 6);
        assert!(suffix.bytes().all(|b| b.is_ascii_alphanumeric()), "{name}");
        assert_eq!(jail, format!("/home/jobe/runs/{name}"));
        let names: std::collections::HashSet<String> = (0..64).map(|_| new_name().0).collect();
        assert!(names.len() > 60, "names repeat: {names:?}");
    }
}
