//! Everything a jail's child needs, made by the daemon before `clone3`: docs/jail.md steps 3–5.
//!
//! Owns: the pipes between the daemon and the jail ([`pipes`]), the Landlock ruleset with the
//! rules on host inodes, and the [`Prepared`] the child walks (argv and envp as C strings, the
//! rlimits, the mount plan, the Landlock rules on the jail's own filesystems, the descriptors init
//! keeps). Must not: fork, clone or touch the job's cgroup (the daemon does that in
//! `Jail::spawn`); after `clone3` the child may not allocate, so nothing is left for it to build.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use super::child::{ChildFds, Prepared};
use super::landlock::{self, Ruleset};
use super::mount::{self, MountInputs, PRIVATE_TMPFS};
use super::seccomp::Policy;
use super::{Artifact, Jail, JailError, JailSpec, cstr, io_err, sys_err};
use crate::profile::plan::Limits;
use crate::sys;

/// The child's ends of the pipes (and its stdin), open in the daemon until `clone3` returned.
#[derive(Debug)]
pub(super) struct ChildEnds {
    go_r: OwnedFd,
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
            go_r: self.go_r.as_raw_fd(),
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
    /// "Go" (step 17): one byte once the child is checked to be in its cgroup.
    pub(super) go_w: OwnedFd,
    /// A `SetupFailure` record, or EOF at exec (step 31).
    pub(super) err_r: OwnedFd,
    /// The program's wait status (step 34).
    pub(super) status_r: OwnedFd,
    /// The seccomp listener descriptor (step 32).
    pub(super) notify_r: OwnedFd,
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
}

/// Step 3: the go, error, status, stdout and stderr pipes, the socketpair for the seccomp
/// listener, and stdin: a duplicate of `stdin_file`'s descriptor, else a memfd holding `stdin`,
/// else `/dev/null`.
pub(super) fn pipes(
    stdin: Option<&[u8]>,
    stdin_file: Option<&std::fs::File>,
) -> Result<(ChildEnds, DaemonEnds), JailError> {
    let pipe = || sys::pipe().map_err(sys_err("pipe"));
    let (go_r, go_w) = pipe()?;
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
        go_r,
        err_w,
        status_w,
        notify_w,
        stdin,
        stdout: out_w,
        stderr: errout_w,
    };
    let daemon = DaemonEnds {
        go_w,
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
    /// envp, the rlimits, the mount plan, the Landlock rules on the jail's own filesystems, the
    /// BPF program, and the sorted list of descriptors init keeps.
    pub(super) fn prepare(
        &self,
        spec: &JailSpec<'_>,
        policy: &Policy,
        ruleset: &Ruleset,
        fds: ChildFds,
        extra_ro: &[&Path],
        artifact: Option<&Artifact>,
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
        let mut keep_fds = fds.all().to_vec();
        keep_fds.extend([ruleset.raw(), spec.slot.netns.as_raw_fd()]);
        keep_fds.sort_unstable();
        keep_fds.dedup();
        let mount_ops = mount::plan(&MountInputs {
            root: &self.root,
            system: &self.system,
            extra_ro,
            run_dir_host: &spec.run_dir.host,
            run_dir_jail: &spec.run_dir.jail,
            disk_bytes: step.limits.disk_bytes,
            artifact: artifact.map(|a| (a.host(), a.entries())),
        })?;
        Ok(Prepared {
            root: super::cpath(&self.root)?,
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
            exec_path,
            keep_fds,
            argv,
            envp,
        })
    }
}

/// The program's rlimits (step 24): `(resource, soft, hard)`.
fn rlimits(l: &Limits) -> Vec<(libc::__rlimit_resource_t, u64, u64)> {
    let cpu = l.cpu.as_secs() + 2;
    vec![
        (libc::RLIMIT_CORE, 0, 0),
        (libc::RLIMIT_FSIZE, l.disk_bytes, l.disk_bytes),
        (libc::RLIMIT_STACK, 8 << 20, libc::RLIM_INFINITY),
        (libc::RLIMIT_CPU, cpu, cpu),
        (libc::RLIMIT_NOFILE, 8192, 8192),
        // Not inherited from the daemon: a real-time class (RLIMIT_RTPRIO > 0) or a negative
        // nice value (RLIMIT_NICE > 20) would let a job starve the host.
        (libc::RLIMIT_RTPRIO, 0, 0),
        (libc::RLIMIT_NICE, 0, 0),
    ]
}

/// Landlock rules the program adds after init mounted the jail's own filesystems (step 27):
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
        };
        let r = rlimits(&l);
        let get = |res| r.iter().find(|(x, ..)| *x == res).map(|(_, s, h)| (*s, *h));
        // ⌊cputime⌋ + 2 s, as the backstop behind the cgroup budget.
        assert_eq!(get(libc::RLIMIT_CPU), Some((4, 4)));
        assert_eq!(get(libc::RLIMIT_FSIZE), Some((5 << 20, 5 << 20)));
        assert_eq!(get(libc::RLIMIT_CORE), Some((0, 0)));
        assert_eq!(get(libc::RLIMIT_RTPRIO), Some((0, 0)));
        assert_eq!(get(libc::RLIMIT_NICE), Some((0, 0)));
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
