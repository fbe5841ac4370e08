//! Compiled artifacts: what a compile step left in its run directory, kept read-only for the
//! steps that run it (judge mode compiles once and runs every test case in a fresh jail;
//! docs/judge.md, "Compile once").
//!
//! An [`Artifact`] is a directory outside every jail, `<data_dir>/artifacts/art_XXXXXX` (the
//! parent 0711, the artifact 0755), owned by root: regular files (0644, or 0755 when the
//! compiler made them executable) and directories, copied out of the compile step's run
//! directory once that step's processes are all gone. A step that runs it gets a fresh run
//! directory of its own (writable, as a Jobe run's) in which each top-level entry of the artifact
//! is mounted read-only at its own name (`mount::per_run`, row R7), so the program finds its
//! binary, classes or script where the profile's run command expects them and cannot change
//! them, while everything it writes goes to its own run directory and is gone with it.
//!
//! Designed to be handed in by others too: issue 15's compile cache may keep artifacts across
//! requests ([`Artifact::adopt`] takes a directory that is already laid out and leaves it in
//! place when dropped).
//!
//! Owns: making an artifact from a run directory, its list of top-level entries, removing it
//! (and the ones a dead daemon left). Must not: follow a link, open a FIFO or device a compiler
//! left, or copy anything but regular files and directories.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{JailError, RunDir, io_err};

/// The artifacts' directory under the data directory.
pub const ARTIFACTS_DIR: &str = "artifacts";
/// Most files and directories in one artifact.
pub(super) const MAX_ARTIFACT_ENTRIES: usize = 10_000;
/// Deepest directory nesting copied into an artifact.
pub(super) const MAX_ARTIFACT_DEPTH: usize = 16;

/// A top-level name of an artifact: mounted at the same name in a step's run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactEntry {
    pub name: String,
    pub is_dir: bool,
}

/// A root-owned, read-only-to-jobs directory of compiled files (see the module docs).
#[derive(Debug)]
pub struct Artifact {
    host: PathBuf,
    entries: Vec<ArtifactEntry>,
    bytes: u64,
    remove_on_drop: bool,
}

impl Artifact {
    /// The directory on the host (never shown to a client).
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// Its top-level entries, in name order.
    pub fn entries(&self) -> &[ArtifactEntry] {
        &self.entries
    }

    /// Bytes of its regular files.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Takes an artifact directory laid out by someone else (a compile cache: root-owned, not
    /// writable by job users) as it is; it stays when the `Artifact` is dropped.
    pub fn adopt(dir: &Path) -> Result<Artifact, JailError> {
        let mut entries = Vec::new();
        for e in fs::read_dir(dir).map_err(io_err("read", dir))? {
            let e = e.map_err(io_err("read", dir))?;
            let ty = e.file_type().map_err(io_err("stat", &e.path()))?;
            if let Some(name) = e.file_name().to_str()
                && (ty.is_file() || ty.is_dir())
            {
                entries.push(ArtifactEntry {
                    name: name.to_owned(),
                    is_dir: ty.is_dir(),
                });
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Artifact {
            host: dir.to_owned(),
            entries,
            bytes: 0,
            remove_on_drop: false,
        })
    }
}

impl Drop for Artifact {
    fn drop(&mut self) {
        if self.remove_on_drop
            && let Err(err) = fs::remove_dir_all(&self.host)
        {
            tracing::error!(?err, dir = %self.host.display(), "failed to remove an artifact");
        }
    }
}

/// Copies the regular files and directories of `run_dir` into a new artifact under
/// `<data_dir>/artifacts`. The step that wrote `run_dir` must be over (its cgroup destroyed), so
/// nothing changes it meanwhile.
pub(super) fn make(data_dir: &Path, run_dir: &RunDir) -> Result<Artifact, JailError> {
    let parent = data_dir.join(ARTIFACTS_DIR);
    DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&parent)
        .map_err(io_err("create", &parent))?;
    let (name, _) = super::rundir::new_name();
    let host = parent.join(name.replacen("jobe_", "art_", 1));
    DirBuilder::new()
        .mode(0o755)
        .create(&host)
        .map_err(io_err("create", &host))?;
    // From here on the directory is removed if anything fails.
    let mut artifact = Artifact {
        host,
        entries: Vec::new(),
        bytes: 0,
        remove_on_drop: true,
    };
    let mut count = 0;
    copy_dir(
        &run_dir.host,
        &artifact.host,
        None,
        0,
        &mut count,
        &mut artifact.bytes,
    )?;
    for e in fs::read_dir(&artifact.host).map_err(io_err("read", &artifact.host))? {
        let e = e.map_err(io_err("read", &artifact.host))?;
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if let Some(name) = e.file_name().to_str() {
            artifact.entries.push(ArtifactEntry {
                name: name.to_owned(),
                is_dir,
            });
        }
    }
    artifact.entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(artifact)
}

/// Copies what a finished step left in `run_dir` into the existing, empty, root-owned directory
/// `to` with the same rules as an artifact (regular files 0644/0755 and directories 0755, no
/// links, FIFOs or devices, bounded): the compile cache's snapshot (`sched::compile_cache`).
/// Returns the bytes of the regular files copied.
pub fn copy_out(run_dir: &RunDir, to: &Path) -> Result<u64, JailError> {
    let (mut count, mut bytes) = (0, 0);
    copy_dir(&run_dir.host, to, None, 0, &mut count, &mut bytes)?;
    Ok(bytes)
}

/// Copies the tree `from` (what [`copy_out`] made) into the existing directory `to`, every file
/// and directory owned by `owner` (uid, gid), with the same rules: the compile cache's restore
/// into a run directory (`RunDir::copy_in`).
pub(super) fn copy_in(from: &Path, to: &Path, owner: (u32, u32)) -> Result<(), JailError> {
    let (mut count, mut bytes) = (0, 0);
    copy_dir(from, to, Some(owner), 0, &mut count, &mut bytes)
}

/// Copies directory `from` into the existing directory `to` (recursively, bounded); what it
/// creates is root's, or `owner`'s.
fn copy_dir(
    from: &Path,
    to: &Path,
    owner: Option<(u32, u32)>,
    depth: usize,
    count: &mut usize,
    bytes: &mut u64,
) -> Result<(), JailError> {
    for e in fs::read_dir(from).map_err(io_err("read", from))? {
        let e = e.map_err(io_err("read", from))?;
        // Names that are not UTF-8 cannot be mounted by name later; nothing a compiler makes.
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // Does not follow links: the type of the entry itself.
        let Ok(ty) = e.file_type() else { continue };
        if !(ty.is_file() || ty.is_dir()) {
            continue;
        }
        *count += 1;
        if *count > MAX_ARTIFACT_ENTRIES || depth >= MAX_ARTIFACT_DEPTH {
            return Err(JailError::Io {
                step: "copy the compiled artifact from",
                path: from.to_owned(),
                source: io::Error::other("too many files or directories"),
            });
        }
        let (src, dst) = (from.join(&name), to.join(&name));
        if ty.is_dir() {
            DirBuilder::new()
                .mode(0o755)
                .create(&dst)
                .map_err(io_err("create", &dst))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::lchown(&dst, Some(uid), Some(gid))
                    .map_err(io_err("chown", &dst))?;
            }
            // The umask may have taken bits away.
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o755))
                .map_err(io_err("chmod", &dst))?;
            copy_dir(&src, &dst, owner, depth + 1, count, bytes)?;
        } else {
            *bytes += copy_file(&src, &dst, owner)?;
        }
    }
    Ok(())
}

/// Copies one regular file (never through a link, never blocking on a FIFO swapped in), owned
/// by root or `owner`.
fn copy_file(src: &Path, dst: &Path, owner: Option<(u32, u32)>) -> Result<u64, JailError> {
    let mut input = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(src)
        .map_err(io_err("open", src))?;
    let meta = input.metadata().map_err(io_err("stat", src))?;
    if !meta.is_file() {
        return Ok(0);
    }
    let mode = if meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    };
    let mut output: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dst)
        .map_err(io_err("create", dst))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&output, Some(uid), Some(gid)).map_err(io_err("chown", dst))?;
    }
    // The umask may have taken bits away.
    output
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err("chmod", dst))?;
    io::copy(&mut input, &mut output).map_err(io_err("copy", src))
}

/// Removes the artifacts a previous daemon left (the data directory is locked to one daemon).
pub(super) fn remove_stale(data_dir: &Path) {
    let Ok(entries) = fs::read_dir(data_dir.join(ARTIFACTS_DIR)) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with("art_") {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}
