//! The jail's mount tree as data: which filesystems init mounts, where, with which flags, in
//! which order (docs/jail.md, "Mount tree", rows 1–11 in the order of the table).
//!
//! Owns: [`MountOp`], [`plan`] (a pure function from the jail's inputs to the list of operations
//! init walks at step 12), the probe of the configured system paths at start-up
//! ([`probe_system_paths`]), and the lists of jail-own filesystems that other parts of the jail
//! must agree with ([`DEV_NODES`], [`PRIVATE_TMPFS`]). Must not: mount anything (init does, in
//! `child.rs`) or look at the host while planning (the caller passes only paths that exist).

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

use super::{ArtifactEntry, JailError, cpath, cstr, io_err};

/// Host device nodes bound into the jail's `/dev` (row 5); the daemon also opens them for the
/// Landlock base rules (`Jail::new`).
pub(super) const DEV_NODES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

/// Private, size-limited, writable tmpfs of each step (rows 7–8); the program gets read-write
/// Landlock rules for exactly these (`prepare::landlock_jail_rules`).
pub(super) const PRIVATE_TMPFS: [&str; 2] = ["/dev/shm", "/tmp"];

/// The links of `/dev` (row 6): name under `/dev`, target.
const DEV_LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// One step of building the jail's filesystem, in order. Paths are C strings (init may not
/// allocate); targets are host paths under the jail's root mount point.
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

/// A configured system path as found on the host at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SysEntry {
    /// A directory: bound read-only (row 2).
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

/// What one jail's mount tree is made of. Every path is already checked by the caller.
#[derive(Debug, Clone, Copy)]
pub(super) struct MountInputs<'a> {
    /// `<data_dir>/root`: the empty mount point that becomes `/` at step 13.
    pub(super) root: &'a Path,
    pub(super) system: &'a [SysEntry],
    /// The profile's `extra_ro_paths` that exist on the host.
    pub(super) extra_ro: &'a [&'a Path],
    /// The run directory on the host (`<data_dir>/runs/jobe_XXXXXX`) and in the jail
    /// (`/home/jobe/runs/jobe_XXXXXX`).
    pub(super) run_dir_host: &'a Path,
    pub(super) run_dir_jail: &'a str,
    /// The step's disk limit: the size of the private `/tmp` and `/dev/shm`.
    pub(super) disk_bytes: u64,
    /// A compiled artifact (judge mode): its host directory and top-level entries, each bound
    /// read-only into the run directory (row 11).
    pub(super) artifact: Option<(&'a Path, &'a [ArtifactEntry])>,
}

const NOSUID_NODEV: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;

/// The mount tree of one jail, in order, as operations on host paths under `inputs.root`.
/// Pure: the same inputs give the same list, and nothing is read from the host.
pub(super) fn plan(inputs: &MountInputs<'_>) -> Result<Vec<MountOp>, JailError> {
    let mut p = Planner {
        root: inputs.root,
        ops: Vec::new(),
    };
    // Row 1: the new root, a small tmpfs that holds only mount points (init makes it
    // read-only once they exist, after pivot_root).
    p.tmpfs(cpath(inputs.root)?, NOSUID_NODEV, "size=1m,mode=755".into())?;
    // Row 2: the system directories, read-only all the way down; symlinks as symlinks.
    for e in inputs.system {
        match e {
            SysEntry::Dir(dir) => p.bind_ro(dir)?,
            SysEntry::Link(link, target) => p.ops.push(MountOp::Symlink {
                target: cpath(target)?,
                link: p.in_jail(path_str(link)?)?,
            }),
        }
    }
    // Row 3: the profile's extra read-only paths.
    for dir in inputs.extra_ro {
        p.bind_ro(dir)?;
    }
    // Rows 4–6: a minimal /dev.
    p.dev()?;
    // Rows 7–8: private /dev/shm and /tmp, charged to the job's memory cgroup.
    let disk = inputs.disk_bytes.max(1 << 20);
    for dir in PRIVATE_TMPFS {
        p.ops.push(MountOp::Mkdir(p.in_jail(dir)?));
        p.tmpfs(
            p.in_jail(dir)?,
            NOSUID_NODEV,
            format!("size={disk},mode=1777"),
        )?;
    }
    // Row 9: /proc of the jail's own pid namespace. hidepid=invisible (Linux 5.8): the program
    // sees only processes of its own uid, so not init, a copy of the daemon whose command line
    // names the daemon's config and data directory (payload `escape/proc_leaks`).
    p.ops.push(MountOp::Mkdir(p.in_jail("/proc")?));
    p.ops.push(mount(
        Some("proc"),
        p.in_jail("/proc")?,
        Some("proc"),
        NOSUID_NODEV | libc::MS_NOEXEC,
        Some("hidepid=invisible".into()),
    )?);
    // Row 10: the run directory, read-write, at the path Jobe uses.
    p.run_dir(inputs.run_dir_host, inputs.run_dir_jail)?;
    // Row 11 (judge mode): the compiled artifact's entries, read-only, in the run directory.
    if let Some((host, entries)) = inputs.artifact {
        p.artifact(host, entries, inputs.run_dir_jail)?;
    }
    Ok(p.ops)
}

/// Builds the list of operations; `root` is the host path of the jail's `/`.
struct Planner<'a> {
    root: &'a Path,
    ops: Vec<MountOp>,
}

impl Planner<'_> {
    /// The host path of `jail_path` (absolute, as the jail sees it) under the new root.
    fn in_jail(&self, jail_path: &str) -> Result<CString, JailError> {
        cpath(&self.root.join(jail_path.trim_start_matches('/')))
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

    /// `mkdir` of every component of `jail_path`, parents first (extra paths may be nested, e.g.
    /// /opt/tool, and the run directory is three levels down).
    fn mkdir_all(&mut self, jail_path: &str) -> Result<(), JailError> {
        let mut acc = PathBuf::from("/");
        for comp in Path::new(jail_path).components().skip(1) {
            acc.push(comp);
            self.ops
                .push(MountOp::Mkdir(self.in_jail(path_str(&acc)?)?));
        }
        Ok(())
    }

    /// A host directory at the same path in the jail, with everything mounted beneath it,
    /// read-only, nosuid, nodev.
    fn bind_ro(&mut self, host: &Path) -> Result<(), JailError> {
        let path = path_str(host)?;
        self.mkdir_all(path)?;
        let target = self.in_jail(path)?;
        self.ops.push(mount(
            Some(path),
            target.clone(),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?);
        // Recursively: a submount under /usr or /etc must not stay writable (an MS_REMOUNT
        // would reach only the top mount).
        self.ops.push(MountOp::ReadOnlyTree(target));
        Ok(())
    }

    /// Rows 4–6: a small tmpfs with the harmless device nodes bound from the host, and the
    /// links into /proc/self/fd that programs expect.
    fn dev(&mut self) -> Result<(), JailError> {
        self.ops.push(MountOp::Mkdir(self.in_jail("/dev")?));
        self.tmpfs(
            self.in_jail("/dev")?,
            libc::MS_NOSUID | libc::MS_NOEXEC,
            "size=64k,mode=755".into(),
        )?;
        for d in DEV_NODES {
            let node = format!("/dev/{d}");
            let target = self.in_jail(&node)?;
            self.ops.push(MountOp::Touch(target.clone()));
            self.ops
                .push(mount(Some(&node), target, None, libc::MS_BIND, None)?);
        }
        for (link, target) in DEV_LINKS {
            self.ops.push(MountOp::Symlink {
                target: cstr(target)?,
                link: self.in_jail(&format!("/dev/{link}"))?,
            });
        }
        Ok(())
    }

    /// Row 10: the run directory bound at its jail path, then made nosuid and nodev (a bind
    /// mount takes these flags only on a remount).
    fn run_dir(&mut self, host: &Path, jail: &str) -> Result<(), JailError> {
        self.mkdir_all(jail)?;
        let target = self.in_jail(jail)?;
        self.ops.push(mount(
            Some(path_str(host)?),
            target.clone(),
            None,
            libc::MS_BIND,
            None,
        )?);
        self.ops.push(mount(
            None,
            target,
            None,
            libc::MS_BIND | libc::MS_REMOUNT | NOSUID_NODEV,
            None,
        )?);
        Ok(())
    }
}

impl Planner<'_> {
    /// Row 11: each top-level entry of the artifact at `host` bound at the same name in the run
    /// directory `run_jail` (a mount point made first: an empty file or directory), then made
    /// read-only, nosuid and nodev all the way down. A bind mount cannot be unlinked or renamed
    /// by the program, and a read-only one cannot be written: the compiled program stays as the
    /// compile step left it, for every case.
    fn artifact(
        &mut self,
        host: &Path,
        entries: &[ArtifactEntry],
        run_jail: &str,
    ) -> Result<(), JailError> {
        for e in entries {
            let target = self.in_jail(&format!("{run_jail}/{}", e.name))?;
            self.ops.push(if e.is_dir {
                MountOp::Mkdir(target.clone())
            } else {
                MountOp::Touch(target.clone())
            });
            let src = host.join(&e.name);
            self.ops.push(mount(
                Some(path_str(&src)?),
                target.clone(),
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )?);
            self.ops.push(MountOp::ReadOnlyTree(target));
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
    //! Tier: unit (docs/testing.md). The plan as data (init walking it inside a real jail:
    //! tests/tests/jail_steps.rs).
    use super::*;

    const ROOT: &str = "/data/root";
    const RUN_HOST: &str = "/data/runs/jobe_AbC123";
    const RUN_JAIL: &str = "/home/jobe/runs/jobe_AbC123";

    /// One operation as a line of text, paths shown as in the jail (`ROOT` stripped).
    fn line(op: &MountOp) -> String {
        let s = |c: &CString| c.to_str().expect("utf-8").to_owned();
        let j = |c: &CString| {
            let p = s(c);
            match p.strip_prefix(ROOT) {
                Some("") => "/".to_owned(),
                Some(rest) => rest.to_owned(),
                None => format!("HOST:{p}"),
            }
        };
        match op {
            MountOp::Mkdir(p) => format!("mkdir {}", j(p)),
            MountOp::Symlink { target, link } => format!("symlink {} -> {}", j(link), s(target)),
            MountOp::Touch(p) => format!("touch {}", j(p)),
            MountOp::ReadOnlyTree(p) => format!("readonly-tree {}", j(p)),
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

    fn lines(system: &[SysEntry], extra_ro: &[&Path], disk_bytes: u64) -> Vec<String> {
        let ops = plan(&MountInputs {
            root: Path::new(ROOT),
            system,
            extra_ro,
            run_dir_host: Path::new(RUN_HOST),
            run_dir_jail: RUN_JAIL,
            disk_bytes,
            artifact: None,
        })
        .expect("plan");
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
    fn test_whole_plan_in_order() {
        let got = lines(&debian(), &[Path::new("/opt/tool")], 8 << 20);
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
            "mount - /opt/tool on /opt/tool [bind,rec] -",
            "readonly-tree /opt/tool",
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
            "mount tmpfs runner on /dev/shm [nosuid,nodev] size=8388608,mode=1777",
            "mkdir /tmp",
            "mount tmpfs runner on /tmp [nosuid,nodev] size=8388608,mode=1777",
            "mkdir /proc",
            "mount proc proc on /proc [nosuid,nodev,noexec] hidepid=invisible",
            "mkdir /home",
            "mkdir /home/jobe",
            "mkdir /home/jobe/runs",
            "mkdir /home/jobe/runs/jobe_AbC123",
            "mount - /data/runs/jobe_AbC123 on /home/jobe/runs/jobe_AbC123 [bind] -",
            "mount - - on /home/jobe/runs/jobe_AbC123 [bind,remount,nosuid,nodev] -",
        ];
        assert_eq!(got, want, "\n{}", got.join("\n"));
    }

    #[test]
    fn test_system_dirs_read_only_recursively() {
        let got = lines(&debian(), &[], 1 << 20);
        for dir in ["/usr", "/etc"] {
            let bind = at(&got, &format!("mount - {dir} on {dir} [bind,rec] -"));
            // Right after the recursive bind, before anything can be mounted beneath it.
            assert_eq!(got[bind + 1], format!("readonly-tree {dir}"));
            assert!(at(&got, &format!("mkdir {dir}")) < bind);
        }
    }

    #[test]
    fn test_symlinked_system_path_stays_a_symlink() {
        let got = lines(&debian(), &[], 1 << 20);
        at(&got, "symlink /bin -> usr/bin");
        assert!(
            !got.iter()
                .any(|l| l.contains(" on /bin ") || l == "mkdir /bin"),
            "{got:?}"
        );
    }

    #[test]
    fn test_extra_ro_paths_nested_and_read_only() {
        let got = lines(&[], &[Path::new("/opt/a/b")], 1 << 20);
        let bind = at(&got, "mount - /opt/a/b on /opt/a/b [bind,rec] -");
        assert_eq!(got[bind + 1], "readonly-tree /opt/a/b");
        assert!(at(&got, "mkdir /opt") < at(&got, "mkdir /opt/a"));
        assert!(at(&got, "mkdir /opt/a") < at(&got, "mkdir /opt/a/b"));
        assert!(at(&got, "mkdir /opt/a/b") < bind);
    }

    #[test]
    fn test_artifact_entries_bound_read_only_after_the_run_dir() {
        let entries = [
            ArtifactEntry {
                name: "prog.c".into(),
                is_dir: false,
            },
            ArtifactEntry {
                name: "pkg".into(),
                is_dir: true,
            },
        ];
        let ops = plan(&MountInputs {
            root: Path::new(ROOT),
            system: &[],
            extra_ro: &[],
            run_dir_host: Path::new(RUN_HOST),
            run_dir_jail: RUN_JAIL,
            disk_bytes: 1 << 20,
            artifact: Some((Path::new("/data/artifacts/art_X"), &entries)),
        })
        .expect("plan");
        let got: Vec<String> = ops.iter().map(line).collect();
        let tail = &got[got.len() - 6..];
        assert_eq!(
            tail,
            [
                format!("touch {RUN_JAIL}/prog.c"),
                format!("mount - /data/artifacts/art_X/prog.c on {RUN_JAIL}/prog.c [bind,rec] -"),
                format!("readonly-tree {RUN_JAIL}/prog.c"),
                format!("mkdir {RUN_JAIL}/pkg"),
                format!("mount - /data/artifacts/art_X/pkg on {RUN_JAIL}/pkg [bind,rec] -"),
                format!("readonly-tree {RUN_JAIL}/pkg"),
            ],
            "\n{}",
            got.join("\n")
        );
        // After the run directory's own bind (row 10), so they land inside it.
        let run = at(&got, &format!("mount - {RUN_HOST} on {RUN_JAIL} [bind] -"));
        assert!(run < got.len() - 6);
    }

    #[test]
    fn test_private_tmp_and_shm_sized_by_disk_limit() {
        let got = lines(&[], &[], 3 << 20);
        for dir in PRIVATE_TMPFS {
            at(
                &got,
                &format!("mount tmpfs runner on {dir} [nosuid,nodev] size=3145728,mode=1777"),
            );
        }
        // Never unlimited: a tmpfs of size 0 would be.
        let got = lines(&[], &[], 0);
        at(
            &got,
            "mount tmpfs runner on /tmp [nosuid,nodev] size=1048576,mode=1777",
        );
    }

    #[test]
    fn test_minimal_dev() {
        let got = lines(&[], &[], 1 << 20);
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
    fn test_proc_hides_other_uids() {
        let got = lines(&[], &[], 1 << 20);
        at(
            &got,
            "mount proc proc on /proc [nosuid,nodev,noexec] hidepid=invisible",
        );
    }

    #[test]
    fn test_run_dir_at_jobe_path_nosuid_nodev() {
        let got = lines(&debian(), &[], 1 << 20);
        let n = got.len();
        assert_eq!(
            got[n - 2..],
            [
                format!("mount - {RUN_HOST} on {RUN_JAIL} [bind] -"),
                format!("mount - - on {RUN_JAIL} [bind,remount,nosuid,nodev] -"),
            ]
        );
        // Every target is under the jail's root: nothing is mounted over a host path.
        assert!(!got.iter().any(|l| l.contains("HOST:")), "{got:?}");
    }

    #[test]
    fn test_order_root_first_proc_before_run_dir() {
        let got = lines(&debian(), &[Path::new("/opt")], 1 << 20);
        assert!(got[0].starts_with("mount tmpfs runner on / "));
        let usr = at(&got, "mount - /usr on /usr [bind,rec] -");
        let opt = at(&got, "mount - /opt on /opt [bind,rec] -");
        let dev = at(
            &got,
            "mount tmpfs runner on /dev [nosuid,noexec] size=64k,mode=755",
        );
        let shm = at(
            &got,
            "mount tmpfs runner on /dev/shm [nosuid,nodev] size=1048576,mode=1777",
        );
        let proc = at(
            &got,
            "mount proc proc on /proc [nosuid,nodev,noexec] hidepid=invisible",
        );
        let run = at(&got, &format!("mount - {RUN_HOST} on {RUN_JAIL} [bind] -"));
        // /dev/shm lives on /dev's tmpfs, so after it; the rest as the table of docs/jail.md.
        assert!(usr < opt && opt < dev && dev < shm && shm < proc && proc < run);
    }

    #[test]
    fn test_nul_in_a_path_is_an_error() {
        let bad = [SysEntry::Dir("/us\0r".into())];
        let r = plan(&MountInputs {
            root: Path::new(ROOT),
            system: &bad,
            extra_ro: &[],
            run_dir_host: Path::new(RUN_HOST),
            run_dir_jail: RUN_JAIL,
            disk_bytes: 1 << 20,
            artifact: None,
        });
        assert!(matches!(r, Err(JailError::Nul)), "{r:?}");
    }

    #[test]
    fn test_probe_system_paths_keeps_dirs_and_links() {
        let dir = std::env::temp_dir().join(format!("runner-mount-probe-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("real")).expect("mkdir");
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
