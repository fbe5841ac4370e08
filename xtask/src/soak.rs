//! `cargo xtask soak [--runs N] [--slots S]`: the soak test (tests/tests/soak.rs) at full length,
//! against the release daemon: N mixed runs (default 10 000: ok, compile error, runtime error,
//! time limit, memory limit, illegal syscall in equal parts) through the HTTP API at concurrency
//! 2 × slots. It fails on any lost or wrong result, daemon RSS growth over the bound, or a cgroup,
//! run directory, jailed process or daemon descriptor left at the end. Needs root (real jails).

use std::process::Command;

use anyhow::{Result, bail};
use clap::Args;

use crate::util;

#[derive(Args)]
pub(crate) struct SoakArgs {
    /// How many runs, in equal parts of the six kinds.
    #[arg(long, default_value_t = 10_000)]
    runs: usize,
    /// Slots of the daemon (default: one per CPU); the clients run 2 × slots requests at once.
    #[arg(long)]
    slots: Option<usize>,
}

pub(crate) fn run(args: &SoakArgs) -> Result<()> {
    if !util::is_root() {
        bail!("the soak needs root (real jails): sudo -E cargo xtask soak");
    }
    // The soak test starts target/release/runner (tests/src/daemon.rs: runner_binary).
    util::build_release_runner()?;
    let root = util::workspace_root();
    let mut cmd = Command::new(util::cargo());
    cmd.args([
        "test",
        "--release",
        "-p",
        "runner-tests",
        "--test",
        "soak",
        "--",
        "--nocapture",
        "--test-threads=1",
    ])
    .current_dir(&root)
    .env("SOAK_RUNS", args.runs.to_string())
    // A skip (not root, no jail) must fail here, not pass silently.
    .env("RUNNER_REQUIRE_ALL", "1");
    if let Some(s) = args.slots {
        cmd.env("SOAK_SLOTS", s.to_string());
    }
    util::timed(&format!("soak ({} runs)", args.runs), || {
        util::run(&mut cmd)
    })
}
