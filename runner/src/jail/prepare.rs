//! Everything a jail's child needs, made by the daemon before `clone3`: docs/jail.md steps 3–5.
//!
//! Owns: the pipes between the daemon and the jail ([`pipes`]), the Landlock ruleset with the
//! rules on host inodes, the detached trees of what the run mounts from the host (`open_tree`:
//! the run directory, the profile's extra read-only paths), and the [`Prepared`] the child walks
//! (argv and envp as C strings, the rlimits, the per-run mounts, the Landlock rules on the jail's
//! own filesystems, the descriptors init keeps). Must not: fork, clone or touch the job's cgroup (the daemon does that in
//! `Jail::spawn`); after `clone3` the child may not allocate, so nothing is left for it to build.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::child::{ChildFds, Prepared};
use super::landlock::{self, Ruleset};
use super::mount::{self, PRIVATE_TMPFS, RunInputs};
use super::seccomp::Policy;
use super::timing::Clock;
use super::{Artifact, Jail, JailError, JailSpec, cstr, io_err, sys_err};
use crate::profile::plan::Limits;
use crate::sys;

/// The child's ends of the pipes (and its stdin, and the job's `cgroup.procs`), open in the
/// daemon until init says it started (it has its own copies then).
#[derive(Debug)]
pub(super) struct ChildEnds {
    started_w: OwnedFd,
    procs: OwnedFd,
    err_w: OwnedFd,
    status_w: OwnedFd,
    notify_w: OwnedFd,
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

impl ChildEnds {
    /// The numbers the child uses (`Prepared::fds`).
    pub(super) fn raw(&self) -> ChildFds {
        ChildFds {
            started_w: self.started_w.as_raw_fd(),
            procs: self.procs.as_raw_fd(),
            err_w: self.err_w.as_raw_fd(),
            status_w: self.status_w.as_raw_fd(),
            notify_w: self.notify_w.as_raw_fd(),
            stdin: self.stdin.as_raw_fd(),
            stdout: self.stdout.as_raw_fd(),
            stderr: self.stderr.as_raw_fd(),
        }
    }
}

/// The daemon's ends of the same pipes.
#[derive(Debug)]
pub(super) struct DaemonEnds {
    /// "Started" (step 7): one byte once init runs.
    pub(super) started_r: OwnedFd,
    /// A `SetupFailure` record, or EOF at exec (step 29).
    pub(super) err_r: OwnedFd,
    /// The program's wait status (step 32).
    pub(super) status_r: OwnedFd,
    /// The seccomp listener descriptor (step 30).
    pub(super) notify_r: OwnedFd,
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
}

/// Step 3: the started, error, status, stdout and stderr pipes, the socketpair for the seccomp
/// listener, and stdin: a duplicate of `stdin_file`'s descriptor, else a memfd holding `stdin`,
/// else `/dev/null`. `procs` (the job's v2 `cgroup.procs`) goes with the child's ends.
pub(super) fn pipes(
    stdin: Option<&[u8]>,
    stdin_file: Option<&std::fs::File>,
    procs: OwnedFd,
) -> Result<(ChildEnds, DaemonEnds), JailError> {
    let pipe = || sys::pipe().map_err(sys_err("pipe"));
    let (started_r, started_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (errout_r, errout_w) = pipe()?;
    let (notify_r, notify_w) = sys::socketpair().map_err(sys_err("socketpair"))?;
    let stdin = match (stdin_file, stdin) {
        // Judge mode: the case's input file, opened read-only by the daemon (its path is never
        // inside the jail; the program has only this descriptor).
        (Some(file), _) => {
            OwnedFd::from(file.try_clone().map_err(|source| JailError::Syscall {
                call: "dup(stdin file)",
                source,
            })?)
        }
        (None, Some(data)) => sys::memfd_with(data).map_err(sys_err("memfd_create"))?,
        (None, None) => sys::open_owned(c"/dev/null", libc::O_RDONLY).map_err(sys_err("open"))?,
    };
    let child = ChildEnds {
        started_w,
        procs,
        err_w,
        status_w,
        notify_w,
        stdin,
        stdout: out_w,
        stderr: errout_w,
    };
    let daemon = DaemonEnds {
        started_r,
        err_r,
        status_r,
        notify_r,
        stdout: out_r,
        stderr: errout_r,
    };
    Ok((child, daemon))
}

/// The profile's extra read-only paths that exist on the host (the others are skipped).
pub(super) fn existing(extra_ro: &[String]) -> Vec<&Path> {
    extra_ro
        .iter()
        .map(Path::new)
        .filter(|p| p.exists())
        .collect()
}

impl Jail {
    /// Step 4: a Landlock ruleset with the rules on host inodes: the base rules opened at
    /// start-up (system directories, device nodes), the extra read-only paths and the run
    /// directory.
    pub(super) fn landlock_ruleset(
        &self,
        extra_ro: &[&Path],
        run_dir: &Path,
    ) -> Result<Ruleset, JailError> {
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
        for p in extra_ro {
            allow(p, landlock::RX)?;
        }
        allow(run_dir, self.abi.rw())?;
        Ok(rs)
    }

    /// Step 5: everything else the child needs, owned and ready: argv[0] resolved, argv and
    /// envp, the rlimits, the per-run mounts with the detached trees they attach, the Landlock
    /// rules on the jail's own filesystems, the BPF program, and the sorted list of descriptors
    /// init keeps. The trees are returned beside: the daemon holds them until `clone3` returned.
    pub(super) fn prepare(
        &self,
        spec: &JailSpec<'_>,
        policy: &Policy,
        ruleset: &Ruleset,
        fds: ChildFds,
        extra_ro: &[&Path],
        artifact: Option<&Artifact>,
    ) -> Result<(Prepared, Vec<OwnedFd>), JailError> {
        let step = spec.step;
        let argv0 = step.argv.first().ok_or(JailError::EmptyCommand)?;
        let exec_path = cstr(resolve_exec(argv0, &step.env))?;
        let argv: Vec<CString> = step.argv.iter().map(cstr).collect::<Result<_, _>>()?;
        let envp: Vec<CString> = step
            .env
            .iter()
            .map(|(k, v)| cstr(format!("{k}={v}")))
            .collect::<Result<_, _>>()?;
        // Detached copies of what the run mounts from the host, made here in the daemon's mount
        // namespace (init lives in a copy of the slot template, which has no host paths).
        let run_dir_tree = detached_tree(&spec.run_dir.host, false)?;
        let extra_trees = extra_ro
            .iter()
            .map(|p| detached_tree(p, true))
            .collect::<Result<Vec<_>, _>>()?;
        let extra: Vec<(&Path, RawFd)> = extra_ro
            .iter()
            .zip(&extra_trees)
            .map(|(p, t)| (*p, t.as_raw_fd()))
            .collect();
        // Judge mode: each top-level entry of the compiled artifact, with the mounts under it.
        let artifact_trees = match artifact {
            None => Vec::new(),
            Some(a) => a
                .entries()
                .iter()
                .map(|e| Ok((e, detached_tree(&a.host().join(&e.name), true)?)))
                .collect::<Result<Vec<_>, JailError>>()?,
        };
        let artifact_entries: Vec<_> = artifact_trees
            .iter()
            .map(|(e, t)| (*e, t.as_raw_fd()))
            .collect();
        let mount_ops = mount::per_run(&RunInputs {
            run_dir_jail: &spec.run_dir.jail,
            run_dir_tree: run_dir_tree.as_raw_fd(),
            extra_ro: &extra,
            disk_bytes: step.limits.disk_bytes,
            artifact: &artifact_entries,
        })?;
        let mut trees = extra_trees;
        trees.push(run_dir_tree);
        trees.extend(artifact_trees.into_iter().map(|(_, t)| t));
        let mut keep_fds = fds.all().to_vec();
        keep_fds.extend([ruleset.raw(), spec.slot.netns.as_raw_fd()]);
        keep_fds.extend(trees.iter().map(AsRawFd::as_raw_fd));
        keep_fds.sort_unstable();
        keep_fds.dedup();
        let prepared = Prepared {
            mount_ops,
            hostname: b"runner",
            netns: Some(spec.slot.netns.as_raw_fd()),
            fds,
            uid: spec.slot.uid,
            gid: self.gid,
            rlimits: rlimits(&step.limits),
            workdir: cstr(&spec.run_dir.jail)?,
            landlock: ruleset.raw(),
            landlock_jail_rules: landlock_jail_rules(self.abi)?,
            seccomp: policy.program.clone(), // an Arc: shared, not copied
            ignored_signals: self.ignored_signals.clone(),
            exec_path,
            keep_fds,
            argv,
            envp,
            clock: Clock::default(),
        };
        Ok((prepared, trees))
    }
}

/// A detached copy (`open_tree(OPEN_TREE_CLONE)`) of the mount at `path` (with the mounts
/// beneath it if `recursive`), for init to attach in its copy of the slot template.
fn detached_tree(path: &Path, recursive: bool) -> Result<OwnedFd, JailError> {
    sys::open_tree_clone(&super::cpath(path)?, recursive)
        .map_err(|e| io_err("make a detached copy of", path)(e.into_io()))
}

/// The program's rlimits (step 21): `(resource, soft, hard)`.
fn rlimits(l: &Limits) -> Vec<(libc::__rlimit_resource_t, u64, u64)> {
    let cpu = l.cpu.as_secs() + 2;
    let mut r = vec![
        (libc::RLIMIT_CORE, 0, 0),
        (libc::RLIMIT_FSIZE, l.disk_bytes, l.disk_bytes),
        (libc::RLIMIT_STACK, 8 << 20, libc::RLIM_INFINITY),
        (libc::RLIMIT_CPU, cpu, cpu),
        (libc::RLIMIT_NOFILE, 8192, 8192),
        // Not inherited from the daemon: a real-time class (RLIMIT_RTPRIO > 0) or a negative
        // nice value (RLIMIT_NICE > 20) would let a job starve the host.
        (libc::RLIMIT_RTPRIO, 0, 0),
        (libc::RLIMIT_NICE, 0, 0),
    ];
    // Jobe's RLIMIT_AS, for the profiles that ask for it (`limit_address_space`).
    if let Some(bytes) = l.address_space_bytes {
        r.push((libc::RLIMIT_AS, bytes, bytes));
    }
    r
}

/// Landlock rules the program adds after init mounted the jail's own filesystems (step 25):
/// `(path inside the jail, access)`.
fn landlock_jail_rules(abi: landlock::Abi) -> Result<Vec<(CString, u64)>, JailError> {
    let mut rules = Vec::new();
    for dir in PRIVATE_TMPFS {
        rules.push((cstr(dir)?, abi.rw()));
    }
    rules.extend([
        (cstr("/proc")?, landlock::RO),
        (cstr("/dev")?, landlock::READ_DIR),
        // Listing directories of the jail's own tree (/, /home/jobe/runs…) reveals nothing: the
        // mount namespace holds only what is bound in.
        (cstr("/")?, landlock::READ_DIR),
    ]);
    Ok(rules)
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

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md).
    use std::time::Duration;

    use super::*;

    #[test]
    fn test_resolve_exec() {
        assert_eq!(resolve_exec("./prog", &[]), "./prog");
        assert_eq!(resolve_exec("/bin/x", &[]), "/bin/x");
        let env = [("PATH".to_owned(), "/nonexistent:/bin:/usr/bin".to_owned())];
        let sh = resolve_exec("sh", &env);
        assert!(sh == "/bin/sh" || sh == "/usr/bin/sh", "{sh}");
        // Not found: left as is, so execve fails with ENOENT (the program's outcome).
        assert_eq!(resolve_exec("no-such-tool-here", &env), "no-such-tool-here");
    }

    #[test]
    fn test_rlimits_from_limits() {
        let l = Limits {
            cpu: Duration::from_millis(2900),
            wall: Duration::from_secs(6),
            memory_bytes: 1 << 28,
            disk_bytes: 5 << 20,
            stream_bytes: 1 << 20,
            procs: 3,
            address_space_bytes: None,
        };
        let r = rlimits(&l);
        let get = |res| r.iter().find(|(x, ..)| *x == res).map(|(_, s, h)| (*s, *h));
        // ⌊cputime⌋ + 2 s, as the backstop behind the cgroup budget.
        assert_eq!(get(libc::RLIMIT_CPU), Some((4, 4)));
        assert_eq!(get(libc::RLIMIT_FSIZE), Some((5 << 20, 5 << 20)));
        assert_eq!(get(libc::RLIMIT_CORE), Some((0, 0)));
        assert_eq!(get(libc::RLIMIT_RTPRIO), Some((0, 0)));
        assert_eq!(get(libc::RLIMIT_NICE), Some((0, 0)));
        assert_eq!(
            get(libc::RLIMIT_AS),
            None,
            "not set unless the profile asks"
        );
        let r = rlimits(&Limits {
            address_space_bytes: Some(400 << 20),
            ..l
        });
        let get = |res| r.iter().find(|(x, ..)| *x == res).map(|(_, s, h)| (*s, *h));
        assert_eq!(get(libc::RLIMIT_AS), Some((400 << 20, 400 << 20)));
    }

    #[test]
    fn test_private_tmpfs_get_read_write_rules() {
        let abi = landlock::Abi(1);
        let rules = landlock_jail_rules(abi).expect("rules");
        for dir in PRIVATE_TMPFS {
            assert!(
                rules
                    .iter()
                    .any(|(p, a)| p.to_bytes() == dir.as_bytes() && *a == abi.rw()),
                "{dir}"
            );
        }
    }
}
