//! Logging: `tracing` to stderr, one line per event, no colours when stderr is not a terminal
//! (journald adds its own timestamps and priorities). `RUST_LOG` overrides the level; whatever
//! it says, message bodies the AMQP client would log stay out (`QUIET`).

use tracing_subscriber::EnvFilter;

/// Always added to the filter: the AMQP client logs every message the broker returns (an
/// unroutable result of queue mode) with its whole body, which holds compiler output and case
/// messages; queue mode logs the event itself, without the body.
const QUIET: &str = "lapin::returned_messages=error";

/// Logs to stderr at `default_level` (`info` for the daemon), or as `RUST_LOG` says.
pub fn init(default_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_level))
        .add_directive(QUIET.parse().expect("a valid directive"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

/// The error and its sources on one line, for the log.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}
