//! The RabbitMQ broker that queue mode's tests and `cargo xtask bench queue` use: Debian's
//! rabbitmq-server (installed by `install`), on 127.0.0.1:5672, started without systemd when it
//! is not running (`rabbitmq-server -detached`, which Debian's wrapper runs as the `rabbitmq`
//! user, then `rabbitmqctl await_startup`), bounded in time. docs/queue.md, "Running a broker
//! for the tests".
//!
//! Owns: whether the node answers, starting it, and how long that took. Must not: stop or
//! reconfigure a broker it did not start (a running node is used as it is), or restart one (the
//! restart test starts a node of its own).

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Where the tests and the bench find the broker (AMQP).
pub(crate) const AMQP_ADDR: &str = "127.0.0.1:5672";
/// Longest wait for a node we started to accept AMQP connections.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether something accepts TCP connections on the AMQP port.
fn listening() -> bool {
    let addr: SocketAddr = AMQP_ADDR.parse().expect("a socket address");
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// `rabbitmqctl await_startup`, bounded: the node has finished booting.
fn await_startup(timeout: Duration) -> Result<()> {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "await_startup", "--timeout"])
        .arg(timeout.as_secs().to_string())
        .stdin(Stdio::null())
        .output()
        .context("cannot run rabbitmqctl (is rabbitmq-server installed?)")?;
    if !out.status.success() {
        bail!(
            "rabbitmqctl await_startup failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Makes sure the broker runs: used as it is when it answers, started (without systemd) when
/// it does not. Fails after [`START_TIMEOUT`] with the node's startup log.
pub(crate) fn ensure_running() -> Result<()> {
    if listening() {
        await_startup(Duration::from_secs(60))?;
        eprintln!("xtask: RabbitMQ broker running on {AMQP_ADDR}");
        return Ok(());
    }
    eprintln!("xtask: starting the RabbitMQ broker (rabbitmq-server -detached)…");
    let started = Instant::now();
    let st = Command::new("rabbitmq-server")
        .arg("-detached")
        .stdin(Stdio::null())
        .status()
        .context("cannot run rabbitmq-server (is it installed?)")?;
    if !st.success() {
        bail!("rabbitmq-server -detached failed ({st})");
    }
    // The node registers with epmd a moment after `-detached` returns, and rabbitmqctl fails at
    // once before that: wait for the AMQP listener (the last step of its boot) first.
    while !listening() {
        if started.elapsed() > START_TIMEOUT {
            let log = std::fs::read_to_string("/var/log/rabbitmq/startup_err").unwrap_or_default();
            bail!(
                "the RabbitMQ broker did not listen on {AMQP_ADDR} within {START_TIMEOUT:?}; \
                 /var/log/rabbitmq/startup_err:\n{log}"
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    await_startup(Duration::from_secs(60))?;
    eprintln!(
        "xtask: RabbitMQ broker started on {AMQP_ADDR} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
