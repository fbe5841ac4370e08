//! `cargo xtask vm setup|run`: a throw-away QEMU (TCG) VM with a pure cgroup v2 hierarchy, for
//! the tests that the hybrid-cgroup host cannot run (`vm_*`).
//!
//! The work is done by the scripts in `xtask/vm/` (ported from the project's spike):
//! `setup.sh` installs QEMU 10 and the 6.12 kernel from bookworm-backports through a private apt
//! source list (the host's apt configuration is left alone), unpacks the kernel with `dpkg -x` into
//! the cache and builds the initramfs (`mkinitramfs.sh` + `init` + `init2`); `run.sh` boots it.
//! The guest sees the host's `/` read-only (9p), the workspace `target/` directory writable at the
//! same path, a tmpfs `/tmp`, and cgroup2 with `+cpu +memory +pids` in the root's subtree_control.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::util;

const DEFAULT_CACHE: &str = "/var/cache/runner-vmtest";

#[derive(Args)]
pub(crate) struct RunArgs {
    /// Kill the VM after this many seconds (exit 124).
    #[arg(long, default_value_t = 600)]
    pub(crate) timeout: u64,
    /// Guest memory (QEMU syntax).
    #[arg(long, default_value = "1G")]
    pub(crate) mem: String,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 2)]
    pub(crate) cpus: u32,
    /// Writable directory shared at the same path (default: the workspace target dir).
    #[arg(long)]
    pub(crate) scratch: Option<PathBuf>,
    /// The command to run in the guest (as root, in the current directory).
    #[arg(last = true, required = true)]
    pub(crate) cmd: Vec<String>,
}

fn assets() -> PathBuf {
    util::workspace_root().join("xtask/vm")
}

pub(crate) fn cache() -> PathBuf {
    std::env::var_os("VMTEST_CACHE").map_or_else(|| PathBuf::from(DEFAULT_CACHE), PathBuf::from)
}

pub(crate) fn setup() -> Result<()> {
    if !util::is_root() {
        bail!(
            "vm setup installs packages (apt) and writes {}: run it as root",
            cache().display()
        );
    }
    util::timed("vm setup", || {
        util::run(
            Command::new("bash")
                .arg(assets().join("setup.sh"))
                .env("VMTEST_CACHE", cache()),
        )
    })
}

/// `Ok(())` if a VM can be started now, else the reason why not (`cargo xtask vm setup`, or the
/// installer of `cargo xtask test`, fixes each).
pub(crate) fn ready() -> std::result::Result<(), String> {
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    let Ok(qemu) = qemu else {
        return Err("qemu-system-x86_64 is not installed".into());
    };
    let version = String::from_utf8_lossy(&qemu.stdout);
    let major = version
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
        .unwrap_or(0);
    if major < 9 {
        return Err(format!(
            "QEMU {major}.x crashes TCG guests with 2 vCPUs; need >= 9 from bookworm-backports"
        ));
    }
    let cache = cache();
    let initrd = cache.join("initrd.gz");
    for f in [cache.join("vmlinux"), initrd.clone()] {
        if !f.is_file() {
            return Err(format!("{} is missing", f.display()));
        }
    }
    // The initramfs embeds init/init2: a stale one would run old guest code.
    let built = mtime(&initrd);
    for f in ["init", "init2", "mkinitramfs.sh"] {
        if mtime(&assets().join(f)) > built {
            return Err(format!("{} is older than xtask/vm/{f}", initrd.display()));
        }
    }
    Ok(())
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Run `cmd` in a VM with `cwd` as its working directory; returns the guest command's exit code
/// (124 timeout, 125 guest died). Extra environment goes through `envs` (RUST_*, CARGO_*,
/// RUNNER_* and CI are forwarded into the guest by run.sh).
pub(crate) fn run(args: &RunArgs, cwd: &Path, envs: &[(&str, &str)]) -> Result<i32> {
    if let Err(why) = ready() {
        bail!("the test VM is not ready: {why} (run `cargo xtask vm setup` as root)");
    }
    let scratch = match &args.scratch {
        Some(s) => s.clone(),
        None => util::target_dir()?,
    };
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let mut cmd = Command::new("bash");
    cmd.arg(assets().join("run.sh"))
        .args([
            "-t",
            &args.timeout.to_string(),
            "-m",
            &args.mem,
            "-c",
            &args.cpus.to_string(),
        ])
        .arg("-s")
        .arg(&scratch)
        .arg("--")
        .args(&args.cmd)
        .current_dir(cwd)
        .env("PWD", cwd)
        .env("VMTEST_CACHE", cache());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    eprintln!("xtask: vm: {}", args.cmd.join(" "));
    let start = Instant::now();
    let status = cmd.status().context("starting xtask/vm/run.sh")?;
    let code = status.code().unwrap_or(125);
    eprintln!(
        "xtask: vm: exit {code} after {:.1}s",
        start.elapsed().as_secs_f64()
    );
    Ok(code)
}

pub(crate) fn run_cli(args: &RunArgs) -> Result<ExitCode> {
    let cwd = std::env::current_dir().context("current dir")?;
    let code = run(args, &cwd, &[])?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(125)))
}
