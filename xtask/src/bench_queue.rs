//! `cargo xtask bench queue`: queue mode on RabbitMQ, 3 runners × 1 slot on one queue against
//! one runner, then a runner SIGKILLed and one stopped (`on_stop = "finish"`) halfway; numbers,
//! no assertions. Needs root (real jails). Installs and starts the broker as `cargo xtask test`
//! does, builds the release daemon, and runs the bench itself (`tests/benches/queue.rs`, which
//! starts the `runner serve` processes and publishes through the broker).

use std::process::Command;

use anyhow::{Result, bail};

use crate::install::{self, Piece};
use crate::{broker, util};

pub(crate) fn run(submissions: usize) -> Result<()> {
    if !util::is_root() {
        bail!("the queue bench needs root (real jails): sudo -E cargo xtask bench queue");
    }
    util::timed("install", || {
        install::ensure(&[Piece::Languages, Piece::Broker])
    })?;
    util::timed("broker", broker::ensure_running)?;
    // The bench starts target/release/runner (tests/src/daemon.rs: runner_binary).
    util::build_release_runner()?;
    let mut cmd = Command::new(util::cargo());
    cmd.args(["bench", "-p", "runner-tests", "--bench", "queue", "--"])
        .args(["--submissions", &submissions.to_string()])
        .current_dir(util::workspace_root())
        .env("RUNNER_REQUIRE_ALL", "1");
    util::timed("bench queue", || util::run(&mut cmd))
}
