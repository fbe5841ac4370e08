//! Logging: `tracing` to stderr, one event per line (journald adds its own timestamps and
//! priorities), as text (no colours when stderr is not a terminal) or as JSON objects
//! (`log_format = "json"`: the same fields, one object per line).
//!
//! The level is the config's `log_level` (an `EnvFilter` directive such as `info` or
//! `info,runner::peer=debug`), applied again on every config reload ([`follow`]); `-v` on the
//! command line or `RUST_LOG` in the environment pins it instead (a reload then says so and
//! leaves it). The subscriber is process-wide, as `tracing` makes it: [`init`] installs it once.
//!
//! Whatever the level, message bodies the AMQP client would log stay out (`QUIET`).
//!
//! Owns: the subscriber, its format and its level. Must not: log anything a client sent.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::live::Live;

/// How log lines are written (`log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2024-01-01T00:00:00Z  INFO span{a=1}: message k=v` (the default).
    #[default]
    Text,
    /// `{"timestamp":…,"level":"INFO","message":…,"k":"v","spans":[{"name":"span","a":1}]}`.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("must be \"text\" or \"json\", not {other:?}")),
        }
    }
}

/// The logging settings of the config file (`log_level`, `log_format`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// An `EnvFilter` directive, checked by [`LogConfig::check_level`].
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

impl LogConfig {
    /// Whether `level` is a valid filter directive (`Err`: why not).
    pub fn check_level(level: &str) -> Result<(), String> {
        EnvFilter::builder()
            .parse(level)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Always added to the filter: the AMQP client logs every message the broker returns (an
/// unroutable result of queue mode) with its whole body, which holds compiler output and case
/// messages; queue mode logs the event itself, without the body.
const QUIET: &str = "lapin::returned_messages=error";

/// `level` as a filter, with [`QUIET`] added.
fn filter(level: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    Ok(EnvFilter::builder()
        .parse(level)?
        .add_directive(QUIET.parse().expect("a valid directive")))
}

/// The handle that changes the level of the installed subscriber, and who pinned it (if anyone).
struct Installed {
    filter: reload::Handle<EnvFilter, Registry>,
    pinned_by: Option<&'static str>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Installs the subscriber (once per process; later calls do nothing). `pinned`: a level from
/// the command line (`-v`) that reloads must not change. `RUST_LOG`, when set and valid, wins
/// over both.
pub fn init(cfg: &LogConfig, pinned: Option<&str>) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.is_empty() && LogConfig::check_level(v).is_ok());
    let (level, pinned_by) = match (&from_env, pinned) {
        (Some(env), _) => (env.as_str(), Some("RUST_LOG")),
        (None, Some(p)) => (p, Some("-v on the command line")),
        (None, None) => (cfg.level.as_str(), None),
    };
    let filter = filter(level).unwrap_or_else(|_| filter("info").expect("a valid level"));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let format = match cfg.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_target(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .with_target(false)
            .boxed(),
    };
    if tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .try_init()
        .is_ok()
    {
        let _ = INSTALLED.set(Installed {
            filter: handle,
            pinned_by,
        });
    }
}

/// Applies every new `log_level` published on `live` (a config reload); `log_format` needs a
/// restart (`reload` says so). Spawns a task; must be called inside a tokio runtime.
pub fn follow(mut live: Live<LogConfig>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut current = live.get().level.clone();
        while live.changed().await {
            let next = live.get();
            if next.level != current {
                set_level(&next.level);
                current.clone_from(&next.level);
            }
        }
    })
}

fn set_level(level: &str) {
    let Some(installed) = INSTALLED.get() else {
        return;
    };
    if let Some(by) = installed.pinned_by {
        tracing::info!(log_level = level, "log level pinned by {by}: not changed");
        return;
    }
    match filter(level) {
        Ok(filter) => match installed.filter.reload(filter) {
            Ok(()) => tracing::info!(log_level = level, "log level changed"),
            Err(e) => tracing::warn!(error = %e, "cannot change the log level"),
        },
        Err(e) => tracing::warn!(error = %e, log_level = level, "invalid log level ignored"),
    }
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

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Settings parsing (the subscriber is process-wide: the
    //! level change and the JSON lines are tested through the real daemon,
    //! tests/tests/operator.rs).
    use super::*;

    #[test]
    fn test_levels_and_formats() {
        for ok in ["info", "debug", "warn,runner::peer=debug", "error"] {
            assert_eq!(LogConfig::check_level(ok), Ok(()), "{ok}");
        }
        assert!(LogConfig::check_level("info,[").is_err());
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
