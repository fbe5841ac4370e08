//! The jail's mount tree as data: which filesystems are mounted, where, with which flags, in
//! which order (docs/jail.md, "Mount tree"), and applying one operation.
//!
//! The tree comes in two parts. The **slot template** ([`template`], rows T1–T8) is built once
//! per slot by its spawner thread in a mount namespace of its own: a read-only root with the
//! system directories, `/dev`, and empty mount points. Every jail of the slot starts in a copy of
//! it (`clone3(CLONE_NEWNS)` from that thread), and init adds the **per-run mounts**
//! ([`per_run`], rows R1–R8): private `/tmp`, `/dev/shm` and `/proc`, the run directory and the
//! profile's extra read-only paths. Host paths cannot be bound across mount namespaces, so
//! what a run mounts from the host comes as a detached tree (`open_tree`), opened by the daemon
//! and attached by init ([`MountOp::Attach`]).
//!
//! Owns: [`MountOp`] and [`MountOp::apply`] (async-signal-safe: init applies the per-run plan
//! after `clone3`), the two plans (pure functions from their inputs to the list of operations,
//! unit-tested without root), the probe of the configured system paths at start-up
//! ([`probe_system_paths`]), and the lists of jail-own filesystems that other parts of the jail
//! must agree with ([`DEV_NODES`], [`PRIVATE_TMPFS`]). Must not: decide when a plan is applied
//! (the slot thread and init do) or look at the host while planning (the caller passes only
//! paths that exist).

use std::ffi::CString;
use std::fs;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use super::{ArtifactEntry, JailError, cpath, cstr, io_err};
use crate::sys::{self, Errno};

/// Host device nodes bound into the jail's `/dev` (row T5); the daemon also opens them for the
/// Landlock base rules (`Jail::new`).
pub(super) const DEV_NODES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

/// Private, size-limited, writable tmpfs of each step (rows R1–R2); the program gets read-write
/// Landlock rules for exactly these (`prepare::landlock_jail_rules`).
pub(super) const PRIVATE_TMPFS: [&str; 2] = ["/dev/shm", "/tmp"];

/// Where run directories appear in the jail (CodeRunner strips this prefix from output); a
/// tmpfs of each run holds the run's own mount point (row R4).
pub(super) const RUNS_DIR: &str = "/home/jobe/runs";

/// The links of `/dev` (row T6): name under `/dev`, target.
const DEV_LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

// include/uapi/linux/mount.h
pub(super) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(super) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(super) const MOUNT_ATTR_NODEV: u64 = 0x4;
/// Read-only, nosuid, nodev: the attributes of everything a jail sees from the host.
pub(super) const READ_ONLY: u64 = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

/// One step of building the jail's filesystem, in order. Paths are C strings (init may not
/// allocate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MountOp {
    /// `mkdir` with mode 0755; an existing directory is fine.
    Mkdir(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    /// An empty file to bind a device node onto.
    Touch(CString),
    /// Mount attributes (`MOUNT_ATTR_*`) for the mount at a path or, `recursive`, for every
    /// mount of the tree under it (a bind of a system directory takes its submounts along).
    SetAttr {
        target: CString,
        attr: u64,
        recursive: bool,
    },
    Mount {
        src: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// Attaches a detached tree (a descriptor from `open_tree`, opened by the daemon in its own
    /// mount namespace) at a path.
    Attach {
        tree: RawFd,
        target: CString,
    },
}

impl MountOp {
    /// Performs the operation: raw syscalls only, no allocation (init runs it after `clone3`).
    pub(super) fn apply(&self) -> Result<(), Errno> {
        match self {
            MountOp::Mkdir(path) => sys::mkdir(path, 0o755),
            MountOp::Symlink { target, link } => sys::symlink(target, link),
            MountOp::Touch(path) => sys::touch(path),
            MountOp::SetAttr {
                target,
                attr,
                recursive,
            } => sys::mount_setattr(target, *attr, *recursive),
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
            MountOp::Attach { tree, target } => sys::move_mount_fd(*tree, target),
        }
    }
}

/// A configured system path as found on the host at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SysEntry {
    /// A directory: bound read-only (row T2).
    Dir(PathBuf),
    /// A symlink (e.g. `/bin -> usr/bin` on merged-`/usr` Debian): reproduced as the same
    /// symlink, path and target.
    Link(PathBuf, PathBuf),
}

/// Looks at each configured system path once, at start-up: directories and symlinks are kept,
/// anything else (missing, a file) is skipped.
pub(super) fn probe_system_paths(paths: &[PathBuf]) -> Result<Vec<SysEntry>, JailError> {
    let mut system = Vec::new();
    for p in paths {
        match fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(p).map_err(io_err("readlink", p))?;
                system.push(SysEntry::Link(p.clone(), target));
            }
            Ok(m) if m.is_dir() => system.push(SysEntry::Dir(p.clone())),
            _ => {}
        }
    }
    Ok(system)
}

/// The per-run filesystems' mount points (rows R1–R4): nothing from the host can be attached
/// under them, since each run mounts a fresh filesystem there first.
pub(super) const PER_RUN_MOUNT_POINTS: [&str; 4] =
    [PRIVATE_TMPFS[0], PRIVATE_TMPFS[1], "/proc", RUNS_DIR];

/// Checks that `path` can be a mount point in every slot template (for a profile's
/// `extra_ro_paths`): absolute, not `/`, and not on or under a per-run filesystem.
pub(super) fn check_mount_point(path: &Path) -> Result<(), String> {
    if !path.is_absolute() || path == Path::new("/") {
        return Err(format!(
            "{} is not an absolute path below /",
            path.display()
        ));
    }
    match PER_RUN_MOUNT_POINTS.iter().find(|m| path.starts_with(m)) {
        Some(m) => Err(format!(
            "{} is under {m}, which each run mounts afresh",
            path.display()
        )),
        None => Ok(()),
    }
}

/// What a slot's template is made of.
#[derive(Debug, Clone, Copy)]
pub(super) struct TemplateInputs<'a> {
    /// `<data_dir>/root`: the empty mount point that becomes the template's `/` (in the slot
    /// thread's own mount namespace; it stays empty on the host).
    pub(super) root: &'a Path,
    pub(super) system: &'a [SysEntry],
    /// Paths that runs may attach a host directory at (profiles' `extra_ro_paths`): a mount
    /// point is made for each one outside the system directories.
    pub(super) mount_points: &'a [PathBuf],
}

const NOSUID_NODEV: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;

/// The slot template (rows T1–T7, in order), as operations on host paths under `inputs.root`;
/// the slot thread then makes it its root (T8: `pivot_root`, `/` and `/dev` read-only).
pub(super) fn template(inputs: &TemplateInputs<'_>) -> Result<Vec<MountOp>, JailError> {
    let mut p = Planner {
        root: Some(inputs.root),
        ops: Vec::new(),
    };
    // T1: the root, a small tmpfs that holds only mount points (read-only once they exist).
    p.tmpfs(cpath(inputs.root)?, NOSUID_NODEV, "size=1m,mode=755".into())?;
    // T2: the system directories, read-only all the way down; symlinks as symlinks.
    for e in inputs.system {
        match e {
            SysEntry::Dir(dir) => p.bind_ro(dir)?,
            SysEntry::Link(link, target) => p.ops.push(MountOp::Symlink {
                target: cpath(target)?,
                link: p.at(path_str(link)?)?,
            }),
        }
    }
    // T3: mount points for extra read-only paths outside the system directories (those inside
    // exist already, as the host's own directories).
    for dir in inputs.mount_points {
        let inside = inputs.system.iter().any(|e| match e {
            SysEntry::Dir(d) | SysEntry::Link(d, _) => dir.starts_with(d),
        });
        if !inside {
            p.mkdir_all(path_str(dir)?)?;
        }
    }
    // T4–T6: a minimal /dev.
    p.dev()?;
    // T7: the mount points of the per-run filesystems.
    for dir in PER_RUN_MOUNT_POINTS {
        p.mkdir_all(dir)?;
    }
    Ok(p.ops)
}

/// What one run mounts on top of its copy of the template. Every path is already checked by
/// the caller; the trees are descriptors the daemon opened with `open_tree`.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunInputs<'a> {
    /// The run directory as the jail sees it (`/home/jobe/runs/jobe_XXXXXX`) and its detached
    /// tree (the request's own tmpfs).
    pub(super) run_dir_jail: &'a str,
    pub(super) run_dir_tree: RawFd,
    /// The profile's `extra_ro_paths` that exist on the host, each with its detached tree.
    pub(super) extra_ro: &'a [(&'a Path, RawFd)],
    /// The step's disk limit: the size of the private `/tmp` and `/dev/shm`.
    pub(super) disk_bytes: u64,
    /// Judge mode: the compiled artifact's top-level entries, each with its detached tree
    /// (row R7).
    pub(super) artifact: &'a [(&'a ArtifactEntry, RawFd)],
}

/// The per-run mounts (rows R1–R8, in order), at jail paths: init applies them in its copy of
/// the slot template, whose root is already its `/`.
pub(super) fn per_run(inputs: &RunInputs<'_>) -> Result<Vec<MountOp>, JailError> {
    let mut p = Planner {
        root: None,
        ops: Vec::new(),
    };
    // R1–R2: private /dev/shm and /tmp, charged to the job's memory cgroup.
    let disk = inputs.disk_bytes.max(1 << 20);
    for dir in PRIVATE_TMPFS {
        p.tmpfs(p.at(dir)?, NOSUID_NODEV, format!("size={disk},mode=1777"))?;
    }
    // R3: /proc of the jail's own pid namespace. hidepid=invisible (Linux 5.8): the program
    // sees only processes of its own uid, so not init, a copy of the daemon whose command line
    // names the daemon's config and data directory (payload `escape/proc_leaks`).
    p.ops.push(mount(
        Some("proc"),
        p.at("/proc")?,
        Some("proc"),
        NOSUID_NODEV | libc::MS_NOEXEC,
        Some("hidepid=invisible".into()),
    )?);
    // R4: a tmpfs of this run on /home/jobe/runs for the run directory's mount point (the
    // template's filesystems are shared by every run of the slot and never written).
    p.tmpfs(
        p.at(RUNS_DIR)?,
        NOSUID_NODEV,
        "size=16k,nr_inodes=8,mode=755".into(),
    )?;
    // R5: the run directory, read-write (nosuid, nodev: its own tmpfs's flags), at the path
    // Jobe uses.
    p.ops.push(MountOp::Mkdir(p.at(inputs.run_dir_jail)?));
    p.ops.push(MountOp::Attach {
        tree: inputs.run_dir_tree,
        target: p.at(inputs.run_dir_jail)?,
    });
    // R6: the profile's extra read-only paths, read-only all the way down.
    for &(dir, tree) in inputs.extra_ro {
        p.attach_read_only(tree, p.at(path_str(dir)?)?);
    }
    // R7 (judge mode): each top-level entry of the compiled artifact at its name in the run
    // directory, on a mount point made first (an empty file or directory), then read-only all
    // the way down. A mount cannot be unlinked or renamed by the program and a read-only one
    // cannot be written: the compiled program stays as the compile step left it, for every
    // case, while the run directory around it stays writable.
    for &(entry, tree) in inputs.artifact {
        let target = p.at(&format!("{}/{}", inputs.run_dir_jail, entry.name))?;
        p.ops.push(if entry.is_dir {
            MountOp::Mkdir(target.clone())
        } else {
            MountOp::Touch(target.clone())
        });
        p.attach_read_only(tree, target);
    }
    // R8: nothing more may appear in /home/jobe/runs.
    p.ops.push(MountOp::SetAttr {
        target: p.at(RUNS_DIR)?,
        attr: READ_ONLY,
        recursive: false,
    });
    Ok(p.ops)
}

/// Builds a list of operations; `root` is the host path of the template's `/` (`None`: paths
/// are used as they are, for init, whose root is the template's).
struct Planner<'a> {
    root: Option<&'a Path>,
    ops: Vec<MountOp>,
}

impl Planner<'_> {
    /// A detached tree attached at `target`, then read-only, nosuid and nodev all the way down.
    fn attach_read_only(&mut self, tree: RawFd, target: CString) {
        self.ops.push(MountOp::Attach {
            tree,
            target: target.clone(),
        });
        self.ops.push(MountOp::SetAttr {
            target,
            attr: READ_ONLY,
            recursive: true,
        });
    }

    /// `jail_path` (absolute, as the jail sees it) where the plan's operations reach it.
    fn at(&self, jail_path: &str) -> Result<CString, JailError> {
        match self.root {
            Some(root) => cpath(&root.join(jail_path.trim_start_matches('/'))),
            None => cstr(jail_path),
        }
    }

    fn tmpfs(
        &mut self,
        target: CString,
        flags: libc::c_ulong,
        data: String,
    ) -> Result<(), JailError> {
        self.ops.push(mount(
            Some("runner"),
            target,
            Some("tmpfs"),
            flags,
            Some(data),
        )?);
        Ok(())
    }

    /// `mkdir` of every component of `jail_path`, parents first (mount points may be nested,
    /// e.g. /opt/tool, and the run directories are three levels down).
    fn mkdir_all(&mut self, jail_path: &str) -> Result<(), JailError> {
        let mut acc = PathBuf::from("/");
        for comp in Path::new(jail_path).components().skip(1) {
            acc.push(comp);
            let op = MountOp::Mkdir(self.at(path_str(&acc)?)?);
            if !self.ops.contains(&op) {
                self.ops.push(op);
            }
        }
        Ok(())
    }

    /// A host directory at the same path in the template, with everything mounted beneath it,
    /// read-only, nosuid, nodev.
    fn bind_ro(&mut self, host: &Path) -> Result<(), JailError> {
        let path = path_str(host)?;
        self.mkdir_all(path)?;
        let target = self.at(path)?;
        self.ops.push(mount(
            Some(path),
            target.clone(),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?);
        // Recursively: a submount under /usr or /etc must not stay writable (an MS_REMOUNT
        // would reach only the top mount).
        self.ops.push(MountOp::SetAttr {
            target,
            attr: READ_ONLY,
            recursive: true,
        });
        Ok(())
    }

    /// Rows T4–T6: a small tmpfs with the harmless device nodes bound from the host, and the
    /// links into /proc/self/fd that programs expect.
    fn dev(&mut self) -> Result<(), JailError> {
        self.ops.push(MountOp::Mkdir(self.at("/dev")?));
        self.tmpfs(
            self.at("/dev")?,
            libc::MS_NOSUID | libc::MS_NOEXEC,
            "size=64k,mode=755".into(),
        )?;
        for d in DEV_NODES {
            let node = format!("/dev/{d}");
            let target = self.at(&node)?;
            self.ops.push(MountOp::Touch(target.clone()));
            self.ops
                .push(mount(Some(&node), target, None, libc::MS_BIND, None)?);
        }
        for (link, target) in DEV_LINKS {
            self.ops.push(MountOp::Symlink {
                target: cstr(target)?,
                link: self.at(&format!("/dev/{link}"))?,
            });
        }
        Ok(())
    }
}

fn mount(
    src: Option<&str>,
    target: CString,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<String>,
) -> Result<MountOp, JailError> {
    Ok(MountOp::Mount {
        src: src.map(cstr).transpose()?,
        target,
        fstype: fstype.map(cstr).transpose()?,
        flags,
        data: data.map(cstr).transpose()?,
    })
}

/// A path as UTF-8 (mount sources and jail paths are written as text).
fn path_str(p: &Path) -> Result<&str, JailError> {
    p.to_str().ok_or(JailError::Nul)
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The plans as data (the slot thread and init walking them
    //! inside a real jail: tests/tests/jail_steps.rs).
    use super::*;

    const ROOT: &str = "/data/root";
    const RUN_JAIL: &str = "/home/jobe/runs/jobe_AbC123";
    const RUN_TREE: RawFd = 40;

    /// One operation as a line of text, paths shown as in the jail (`ROOT` stripped).
    fn line(op: &MountOp) -> String {
        let s = |c: &CString| c.to_str().expect("utf-8").to_owned();
        let j = |c: &CString| {
            let p = s(c);
            match p.strip_prefix(ROOT) {
                Some("") => "/".to_owned(),
                Some(rest) => rest.to_owned(),
                None => p,
            }
        };
        match op {
            MountOp::Mkdir(p) => format!("mkdir {}", j(p)),
            MountOp::Symlink { target, link } => format!("symlink {} -> {}", j(link), s(target)),
            MountOp::Touch(p) => format!("touch {}", j(p)),
            MountOp::SetAttr {
                target,
                attr,
                recursive,
            } => {
                assert_eq!(*attr, READ_ONLY, "unexpected attributes {attr:#x}");
                let what = if *recursive { "tree" } else { "mount" };
                format!("readonly-{what} {}", j(target))
            }
            MountOp::Attach { tree, target } => format!("attach #{tree} on {}", j(target)),
            MountOp::Mount {
                src,
                target,
                fstype,
                flags,
                data,
            } => {
                let names = [
                    (libc::MS_BIND, "bind"),
                    (libc::MS_REC, "rec"),
                    (libc::MS_REMOUNT, "remount"),
                    (libc::MS_NOSUID, "nosuid"),
                    (libc::MS_NODEV, "nodev"),
                    (libc::MS_NOEXEC, "noexec"),
                ];
                let known: libc::c_ulong = names.iter().map(|(f, _)| f).fold(0, |a, f| a | f);
                assert_eq!(flags & !known, 0, "unexpected flags {flags:#x}");
                let flags: Vec<&str> = names
                    .iter()
                    .filter(|(f, _)| flags & f != 0)
                    .map(|(_, n)| *n)
                    .collect();
                format!(
                    "mount {} {} on {} [{}] {}",
                    fstype.as_ref().map_or("-".into(), s),
                    src.as_ref().map_or("-".into(), s),
                    j(target),
                    flags.join(","),
                    data.as_ref().map_or("-".into(), s),
                )
            }
        }
    }

    fn template_lines(system: &[SysEntry], mount_points: &[PathBuf]) -> Vec<String> {
        let ops = template(&TemplateInputs {
            root: Path::new(ROOT),
            system,
            mount_points,
        })
        .expect("template");
        ops.iter().map(line).collect()
    }

    fn run_lines(extra_ro: &[(&Path, RawFd)], disk_bytes: u64) -> Vec<String> {
        let ops = per_run(&RunInputs {
            run_dir_jail: RUN_JAIL,
            run_dir_tree: RUN_TREE,
            extra_ro,
            disk_bytes,
            artifact: &[],
        })
        .expect("per-run plan");
        ops.iter().map(line).collect()
    }

    fn debian() -> Vec<SysEntry> {
        vec![
            SysEntry::Dir("/usr".into()),
            SysEntry::Link("/bin".into(), "usr/bin".into()),
            SysEntry::Dir("/etc".into()),
        ]
    }

    /// Where `want` (a whole line) is in `got`; fails with the plan printed.
    fn at(got: &[String], want: &str) -> usize {
        got.iter()
            .position(|l| l == want)
            .unwrap_or_else(|| panic!("no `{want}` in\n{}", got.join("\n")))
    }

    #[test]
    fn test_whole_template_in_order() {
        let got = template_lines(&debian(), &["/opt/tool".into(), "/usr/lib/x".into()]);
        let want = [
            "mount tmpfs runner on / [nosuid,nodev] size=1m,mode=755",
            "mkdir /usr",
            "mount - /usr on /usr [bind,rec] -",
            "readonly-tree /usr",
            "symlink /bin -> usr/bin",
            "mkdir /etc",
            "mount - /etc on /etc [bind,rec] -",
            "readonly-tree /etc",
            "mkdir /opt",
            "mkdir /opt/tool",
            "mkdir /dev",
            "mount tmpfs runner on /dev [nosuid,noexec] size=64k,mode=755",
            "touch /dev/null",
            "mount - /dev/null on /dev/null [bind] -",
            "touch /dev/zero",
            "mount - /dev/zero on /dev/zero [bind] -",
            "touch /dev/full",
            "mount - /dev/full on /dev/full [bind] -",
            "touch /dev/random",
            "mount - /dev/random on /dev/random [bind] -",
            "touch /dev/urandom",
            "mount - /dev/urandom on /dev/urandom [bind] -",
            "symlink /dev/fd -> /proc/self/fd",
            "symlink /dev/stdin -> /proc/self/fd/0",
            "symlink /dev/stdout -> /proc/self/fd/1",
            "symlink /dev/stderr -> /proc/self/fd/2",
            "mkdir /dev/shm",
            "mkdir /tmp",
            "mkdir /proc",
            "mkdir /home",
            "mkdir /home/jobe",
            "mkdir /home/jobe/runs",
        ];
        assert_eq!(got, want, "\n{}", got.join("\n"));
    }

    #[test]
    fn test_system_dirs_read_only_recursively() {
        let got = template_lines(&debian(), &[]);
        for dir in ["/usr", "/etc"] {
            let bind = at(&got, &format!("mount - {dir} on {dir} [bind,rec] -"));
            // Right after the recursive bind, before anything can be mounted beneath it.
            assert_eq!(got[bind + 1], format!("readonly-tree {dir}"));
            assert!(at(&got, &format!("mkdir {dir}")) < bind);
        }
    }

    #[test]
    fn test_symlinked_system_path_stays_a_symlink() {
        let got = template_lines(&debian(), &[]);
        at(&got, "symlink /bin -> usr/bin");
        assert!(
            !got.iter()
                .any(|l| l.contains(" on /bin ") || l == "mkdir /bin"),
            "{got:?}"
        );
    }

    #[test]
    fn test_template_holds_no_host_path_but_the_system_binds() {
        let got = template_lines(&debian(), &["/opt/a/b".into()]);
        // Mount points only: nothing of the host is bound at an extra path in the template.
        assert!(!got.iter().any(|l| l.contains(" on /opt")), "{got:?}");
        assert!(at(&got, "mkdir /opt") < at(&got, "mkdir /opt/a"));
        assert!(at(&got, "mkdir /opt/a") < at(&got, "mkdir /opt/a/b"));
        // No per-run filesystem in the template, only their mount points.
        for dir in ["/tmp", "/dev/shm", "/proc", RUNS_DIR] {
            at(&got, &format!("mkdir {dir}"));
            assert!(
                !got.iter().any(|l| l.contains(&format!(" on {dir} "))),
                "{dir}"
            );
        }
    }

    #[test]
    fn test_minimal_dev() {
        let got = template_lines(&[], &[]);
        let dev: Vec<&String> = got
            .iter()
            .filter(|l| l.contains(" /dev/") && !l.contains("/dev/shm"))
            .collect();
        // 5 nodes (touch + bind each) and 4 links: nothing else of the host's /dev.
        assert_eq!(dev.len(), 5 * 2 + 4, "{dev:?}");
        for node in DEV_NODES {
            at(
                &got,
                &format!("mount - /dev/{node} on /dev/{node} [bind] -"),
            );
        }
        at(
            &got,
            "mount tmpfs runner on /dev [nosuid,noexec] size=64k,mode=755",
        );
    }

    #[test]
    fn test_whole_per_run_plan_in_order() {
        let got = run_lines(&[(Path::new("/opt/tool"), 41)], 8 << 20);
        let want = [
            "mount tmpfs runner on /dev/shm [nosuid,nodev] size=8388608,mode=1777",
            "mount tmpfs runner on /tmp [nosuid,nodev] size=8388608,mode=1777",
            "mount proc proc on /proc [nosuid,nodev,noexec] hidepid=invisible",
            "mount tmpfs runner on /home/jobe/runs [nosuid,nodev] size=16k,nr_inodes=8,mode=755",
            "mkdir /home/jobe/runs/jobe_AbC123",
            "attach #40 on /home/jobe/runs/jobe_AbC123",
            "attach #41 on /opt/tool",
            "readonly-tree /opt/tool",
            "readonly-mount /home/jobe/runs",
        ];
        assert_eq!(got, want, "\n{}", got.join("\n"));
    }

    #[test]
    fn test_private_tmp_and_shm_sized_by_disk_limit() {
        let got = run_lines(&[], 3 << 20);
        for dir in PRIVATE_TMPFS {
            at(
                &got,
                &format!("mount tmpfs runner on {dir} [nosuid,nodev] size=3145728,mode=1777"),
            );
        }
        // Never unlimited: a tmpfs of size 0 would be.
        let got = run_lines(&[], 0);
        at(
            &got,
            "mount tmpfs runner on /tmp [nosuid,nodev] size=1048576,mode=1777",
        );
    }

    #[test]
    fn test_proc_hides_other_uids() {
        let got = run_lines(&[], 1 << 20);
        at(
            &got,
            "mount proc proc on /proc [nosuid,nodev,noexec] hidepid=invisible",
        );
    }

    #[test]
    fn test_run_dir_attached_then_runs_dir_read_only() {
        let got = run_lines(&[], 1 << 20);
        let mkdir = at(&got, &format!("mkdir {RUN_JAIL}"));
        let runs = at(
            &got,
            "mount tmpfs runner on /home/jobe/runs [nosuid,nodev] size=16k,nr_inodes=8,mode=755",
        );
        let attach = at(&got, &format!("attach #{RUN_TREE} on {RUN_JAIL}"));
        assert!(runs < mkdir && mkdir < attach);
        // Last: nothing more may appear beside the run directory.
        assert_eq!(
            got.last().map(String::as_str),
            Some("readonly-mount /home/jobe/runs")
        );
        // Only jail paths: init's root is the template's.
        assert!(got.iter().all(|l| !l.contains(ROOT)), "{got:?}");
    }

    #[test]
    fn test_artifact_entries_attached_read_only_inside_the_run_dir() {
        let (file, dir) = (
            ArtifactEntry {
                name: "prog.c".into(),
                is_dir: false,
            },
            ArtifactEntry {
                name: "pkg".into(),
                is_dir: true,
            },
        );
        let ops = per_run(&RunInputs {
            run_dir_jail: RUN_JAIL,
            run_dir_tree: RUN_TREE,
            extra_ro: &[],
            disk_bytes: 1 << 20,
            artifact: &[(&file, 50), (&dir, 51)],
        })
        .expect("per-run plan");
        let got: Vec<String> = ops.iter().map(line).collect();
        let run = at(&got, &format!("attach #{RUN_TREE} on {RUN_JAIL}"));
        let first = at(&got, &format!("touch {RUN_JAIL}/prog.c"));
        assert!(
            run < first,
            "inside the attached run directory\n{}",
            got.join("\n")
        );
        assert_eq!(
            got[first..first + 6],
            [
                format!("touch {RUN_JAIL}/prog.c"),
                format!("attach #50 on {RUN_JAIL}/prog.c"),
                format!("readonly-tree {RUN_JAIL}/prog.c"),
                format!("mkdir {RUN_JAIL}/pkg"),
                format!("attach #51 on {RUN_JAIL}/pkg"),
                format!("readonly-tree {RUN_JAIL}/pkg"),
            ],
            "\n{}",
            got.join("\n")
        );
        assert_eq!(
            got.last().map(String::as_str),
            Some("readonly-mount /home/jobe/runs")
        );
    }

    #[test]
    fn test_extra_ro_paths_attached_read_only() {
        let got = run_lines(
            &[(Path::new("/opt/a/b"), 41), (Path::new("/usr/x"), 42)],
            1 << 20,
        );
        for (dir, fd) in [("/opt/a/b", 41), ("/usr/x", 42)] {
            let attach = at(&got, &format!("attach #{fd} on {dir}"));
            assert_eq!(got[attach + 1], format!("readonly-tree {dir}"));
        }
    }

    #[test]
    fn test_extra_mount_points_outside_per_run_filesystems() {
        for ok in ["/opt/tool", "/usr/lib/jvm", "/home/jobe/tools", "/procfs"] {
            assert_eq!(check_mount_point(Path::new(ok)), Ok(()), "{ok}");
        }
        for bad in [
            "/tmp",
            "/tmp/x",
            "/dev/shm/y",
            "/proc/1",
            "/home/jobe/runs/z",
            "/",
            "rel",
        ] {
            assert!(check_mount_point(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn test_nul_in_a_path_is_an_error() {
        let bad = [SysEntry::Dir("/us\0r".into())];
        let r = template(&TemplateInputs {
            root: Path::new(ROOT),
            system: &bad,
            mount_points: &[],
        });
        assert!(matches!(r, Err(JailError::Nul)), "{r:?}");
        let r = per_run(&RunInputs {
            run_dir_jail: "/home/jobe/runs/a\0b",
            run_dir_tree: RUN_TREE,
            extra_ro: &[],
            disk_bytes: 1 << 20,
            artifact: &[],
        });
        assert!(matches!(r, Err(JailError::Nul)), "{r:?}");
    }

    #[test]
    fn test_probe_system_paths_keeps_dirs_and_links() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        fs::create_dir(dir.join("real")).expect("mkdir");
        std::os::unix::fs::symlink("real", dir.join("link")).expect("symlink");
        fs::write(dir.join("file"), b"").expect("file");
        let got = probe_system_paths(&[
            dir.join("real"),
            dir.join("link"),
            dir.join("file"),
            dir.join("missing"),
        ]);
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(
            got.expect("probe"),
            [
                SysEntry::Dir(dir.join("real")),
                SysEntry::Link(dir.join("link"), "real".into()),
            ]
        );
    }
}
