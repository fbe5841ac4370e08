//! Small helpers shared by the tasks: paths, environment, running commands.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The workspace root (the parent of `xtask/`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_path_buf()
}

/// The workspace's target directory (honours `CARGO_TARGET_DIR` and config, via cargo metadata).
pub(crate) fn target_dir() -> Result<PathBuf> {
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(workspace_root())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let dir = v["target_directory"]
        .as_str()
        .context("cargo metadata: no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// The cargo that runs us (so `cargo +toolchain xtask` stays on that toolchain).
pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// True when `CI` is set to anything but empty/`false`/`0`.
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Print a command, run it with inherited stdio, fail on a non-zero exit.
pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

/// Run `f` and print how long it took under `label`.
pub(crate) fn timed<T>(label: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let start = Instant::now();
    let r = f();
    eprintln!(
        "xtask: {label}: {} in {:.1}s",
        if r.is_ok() { "ok" } else { "FAILED" },
        start.elapsed().as_secs_f64()
    );
    r
}

/// A shell-like rendering of a command, for messages.
pub(crate) fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Stops a daemon we started: SIGTERM (so it removes its cgroups, run directories and mounts),
/// up to `grace` to exit, then SIGKILL. Only ever the child's own pid.
pub(crate) fn stop_child(child: &mut std::process::Child, grace: std::time::Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGTERM to a daemon we started, then it must drain and exit 0 within `grace` (else an
/// error, and SIGKILL). Only ever the child's own pid.
pub(crate) fn terminate(child: &mut std::process::Child, grace: std::time::Duration) -> Result<()> {
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    // SAFETY: kill(2) on the pid of our own child, which has not been waited for yet (so the pid
    // cannot have been reused).
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        bail!("kill(SIGTERM): {}", std::io::Error::last_os_error());
    }
    let deadline = Instant::now() + grace;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("runner serve exited with {status} after SIGTERM (expected 0)");
            }
            eprintln!("xtask: SIGTERM: runner serve exited 0");
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "runner serve still running {} s after SIGTERM (killed)",
                grace.as_secs()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Whether `needle` (non-empty) occurs in `haystack`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, _)) = needle.split_first() else {
        return false;
    };
    haystack
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == first)
        .any(|(i, _)| haystack[i..].starts_with(needle))
}

/// Builds the release `runner` binary and returns its path.
pub(crate) fn build_release_runner() -> Result<PathBuf> {
    timed("build the release daemon", || {
        run(Command::new(cargo())
            .args(["build", "--release", "-p", "runner"])
            .current_dir(workspace_root()))
    })?;
    Ok(target_dir()?.join("release/runner"))
}

/// `RUNNER_TEST_UID_OFFSET` (default 0), added to the slot uids of the daemons the benches start,
/// as runner-tests does (`runner_tests::uid_offset`), so two checkouts never share a uid.
pub(crate) fn uid_offset() -> u32 {
    std::env::var("RUNNER_TEST_UID_OFFSET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Nearest-rank percentile `p` (0–1] of `sorted` (ascending); NaN when empty.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Durations as milliseconds, sorted ascending (for [`percentile`]).
pub(crate) fn sorted_ms(d: &[std::time::Duration]) -> Vec<f64> {
    let mut ms: Vec<f64> = d.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    ms
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Byte search used to check built objects.
    use super::*;

    #[test]
    fn test_contains() {
        assert!(contains(b"xx\x7fELFabc", b"\x7fELFab"));
        assert!(contains(b"abc", b"abc"));
        assert!(!contains(b"ab", b"abc"));
        assert!(!contains(b"\x7fELF\x7fELx", b"\x7fELFx"));
        assert!(!contains(b"abc", b""));
    }
}
