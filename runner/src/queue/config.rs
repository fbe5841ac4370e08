//! The `[queue]` section of the config file: `RawQueue` (serde, as written) and its validation
//! into `QueueConfig` (docs/queue.md, "Configuration"). Lives with queue mode, as `[peer]` lives
//! with peer mode; `config` embeds `RawQueue` and calls [`QueueConfig::new`].
//!
//! Owns: the queue settings, their defaults and checks; reading `url_file` and `password_file`;
//! the broker URL as a [`BrokerUrl`], whose `Debug` and `Display` never show the password.
//!
//! Must not: log or print the password (only [`BrokerUrl::uri`] hands it out, to the connect).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lapin::uri::{AMQPScheme, AMQPUri};
use serde::Deserialize;

/// Default name of the direct exchange submissions are published to.
pub const DEFAULT_JUDGE_EXCHANGE: &str = "runner.judge";
/// Default name of the exchange results go to when a message has no `reply_to`.
pub const DEFAULT_RESULTS_EXCHANGE: &str = "runner.results";
/// Default name of the topic exchange of progress events.
pub const DEFAULT_EVENTS_EXCHANGE: &str = "runner.events";
/// Default name of the dead-letter exchange and of the queue bound to it.
pub const DEFAULT_DEAD_LETTER: &str = "runner.dead";
/// Default prefix of the per-language queues (`judge.c`, `judge.python3`, …).
pub const DEFAULT_QUEUE_PREFIX: &str = "judge.";
/// Default prefetch headroom: deliveries held beyond what the judge can run at once.
pub const DEFAULT_PREFETCH: usize = 1;
/// Default delivery limit of the per-language quorum queues (`x-delivery-limit`).
pub const DEFAULT_DELIVERY_LIMIT: u32 = 10;
/// Default time `on_stop = "finish"` waits for running submissions.
pub const DEFAULT_DRAIN_TIMEOUT_SECS: f64 = 30.0;
/// Default first wait before reconnecting to the broker; doubled per failure up to the maximum.
pub const DEFAULT_RECONNECT_MIN_SECS: f64 = 0.5;
/// Default longest wait between two connection attempts.
pub const DEFAULT_RECONNECT_MAX_SECS: f64 = 30.0;
/// Default largest message body accepted (as the HTTP API's `max_body_bytes`).
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 10 << 20;

/// A setting that cannot be used; the message names it (`queue.<key>`).
#[derive(Debug, thiserror::Error)]
#[error("setting `{setting}`: {reason}")]
pub struct QueueConfigError {
    pub setting: &'static str,
    pub reason: String,
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> QueueConfigError {
    QueueConfigError {
        setting,
        reason: reason.into(),
    }
}

/// `[queue]` as written. Every field is optional, but one of `url` and `url_file` is required.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    /// The broker: `amqp://user:password@host:5672/vhost` (vhost percent-encoded: `%2f` is `/`).
    pub url: Option<String>,
    /// A file whose first line is the URL (instead of `url`).
    pub url_file: Option<PathBuf>,
    /// A file whose first line is the password (it replaces the URL's password).
    pub password_file: Option<PathBuf>,
    pub judge_exchange: Option<String>,
    pub results_exchange: Option<String>,
    pub events_exchange: Option<String>,
    /// The dead-letter exchange and the queue bound to it (one name for both).
    pub dead_letter: Option<String>,
    pub queue_prefix: Option<String>,
    /// Deliveries held beyond the judge's capacity (default 1).
    pub prefetch: Option<usize>,
    /// `x-delivery-limit` of the per-language quorum queues (default 10).
    pub delivery_limit: Option<u32>,
    /// `"finish"` (default) or `"requeue"`.
    pub on_stop: Option<String>,
    pub drain_timeout_secs: Option<f64>,
    pub reconnect_min_secs: Option<f64>,
    pub reconnect_max_secs: Option<f64>,
    pub max_message_bytes: Option<u64>,
}

/// What a SIGTERM does to the submissions queue mode holds (docs/queue.md, "Stopping").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStop {
    /// Stop taking deliveries, finish running submissions, publish, ack, exit; what still runs
    /// at the drain timeout is aborted and requeued.
    Finish,
    /// Stop taking deliveries, abort running submissions and requeue everything at once.
    Requeue,
}

impl std::str::FromStr for OnStop {
    type Err = String;

    fn from_str(s: &str) -> Result<OnStop, String> {
        match s {
            "finish" => Ok(OnStop::Finish),
            "requeue" => Ok(OnStop::Requeue),
            _ => Err(format!("must be \"finish\" or \"requeue\", not {s:?}")),
        }
    }
}

/// Names of the exchanges and queues queue mode declares and uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub judge_exchange: String,
    pub results_exchange: String,
    pub events_exchange: String,
    pub dead_letter: String,
    pub queue_prefix: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            judge_exchange: DEFAULT_JUDGE_EXCHANGE.into(),
            results_exchange: DEFAULT_RESULTS_EXCHANGE.into(),
            events_exchange: DEFAULT_EVENTS_EXCHANGE.into(),
            dead_letter: DEFAULT_DEAD_LETTER.into(),
            queue_prefix: DEFAULT_QUEUE_PREFIX.into(),
        }
    }
}

impl Names {
    /// The queue of `language`: `<queue_prefix><language>`.
    pub fn queue_of(&self, language: &str) -> String {
        format!("{}{language}", self.queue_prefix)
    }
}

/// The broker's address with its credentials. `Debug` and `Display` show
/// `amqp://user@host:port/vhost`: never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl(AMQPUri);

impl BrokerUrl {
    /// Parses an `amqp://` URL. `amqps://` is refused: runner is built without a TLS client.
    pub fn parse(url: &str) -> Result<BrokerUrl, String> {
        let uri: AMQPUri = url
            .parse()
            .map_err(|e: String| format!("not an AMQP URL ({})", redact_error(&e, url)))?;
        if uri.scheme == AMQPScheme::AMQPS {
            return Err(
                "amqps:// is not supported (runner has no TLS client): use amqp:// on a \
                 private network, or a TLS-terminating proxy on localhost"
                    .into(),
            );
        }
        if uri.authority.host.is_empty() {
            return Err("has no host".into());
        }
        Ok(BrokerUrl(uri))
    }

    /// Replaces the password (from `password_file`).
    pub fn with_password(mut self, password: String) -> BrokerUrl {
        self.0.authority.userinfo.password = password;
        self
    }

    /// `host:port`, for logs.
    pub fn host(&self) -> String {
        format!("{}:{}", self.0.authority.host, self.0.authority.port)
    }

    pub fn vhost(&self) -> &str {
        &self.0.vhost
    }

    /// The URI with the password, for the one place that connects.
    pub fn uri(&self) -> AMQPUri {
        self.0.clone()
    }
}

/// A parse error of `url` may quote the URL: never let the password through.
fn redact_error(err: &str, url: &str) -> String {
    match url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
    {
        Some((_, password)) if !password.is_empty() => err.replace(password, "***"),
        _ => err.to_owned(),
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.0.authority;
        let vhost = if self.0.vhost == "/" {
            "%2f"
        } else {
            &self.0.vhost
        };
        write!(
            f,
            "amqp://{}@{}:{}/{vhost}",
            a.userinfo.username, a.host, a.port
        )
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({self})")
    }
}

/// The validated `[queue]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    pub url: BrokerUrl,
    pub names: Names,
    pub prefetch: usize,
    pub delivery_limit: u32,
    pub on_stop: OnStop,
    pub drain_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub max_message_bytes: u64,
}

impl QueueConfig {
    /// Validates `raw`: `None` when neither `url` nor `url_file` is set (queue mode off) and
    /// no other key is either.
    pub fn new(raw: RawQueue) -> Result<Option<QueueConfig>, QueueConfigError> {
        let url = match (&raw.url, &raw.url_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "queue.url_file",
                    "set only one of queue.url and queue.url_file",
                ));
            }
            (Some(u), None) => BrokerUrl::parse(u).map_err(|e| invalid("queue.url", e))?,
            (None, Some(path)) => BrokerUrl::parse(&read_first_line("queue.url_file", path)?)
                .map_err(|e| invalid("queue.url_file", e))?,
            (None, None) => {
                if raw_is_empty(&raw) {
                    return Ok(None);
                }
                return Err(invalid(
                    "queue.url",
                    "is required in a [queue] section (or queue.url_file)",
                ));
            }
        };
        let url = match &raw.password_file {
            Some(path) => url.with_password(read_first_line("queue.password_file", path)?),
            None => url,
        };
        let defaults = Names::default();
        let names = Names {
            judge_exchange: name(
                "queue.judge_exchange",
                raw.judge_exchange,
                defaults.judge_exchange,
            )?,
            results_exchange: name(
                "queue.results_exchange",
                raw.results_exchange,
                defaults.results_exchange,
            )?,
            events_exchange: name(
                "queue.events_exchange",
                raw.events_exchange,
                defaults.events_exchange,
            )?,
            dead_letter: name("queue.dead_letter", raw.dead_letter, defaults.dead_letter)?,
            queue_prefix: name(
                "queue.queue_prefix",
                raw.queue_prefix,
                defaults.queue_prefix,
            )?,
        };
        let prefetch = raw.prefetch.unwrap_or(DEFAULT_PREFETCH);
        if prefetch > 1000 {
            return Err(invalid("queue.prefetch", "must be between 0 and 1000"));
        }
        let delivery_limit = raw.delivery_limit.unwrap_or(DEFAULT_DELIVERY_LIMIT);
        if !(1..=1000).contains(&delivery_limit) {
            return Err(invalid(
                "queue.delivery_limit",
                "must be between 1 and 1000",
            ));
        }
        let on_stop = match raw.on_stop.as_deref() {
            None => OnStop::Finish,
            Some(s) => s.parse().map_err(|e: String| invalid("queue.on_stop", e))?,
        };
        let drain_timeout = secs(
            "queue.drain_timeout_secs",
            raw.drain_timeout_secs.unwrap_or(DEFAULT_DRAIN_TIMEOUT_SECS),
            0.0,
            86_400.0,
        )?;
        let reconnect_min = secs(
            "queue.reconnect_min_secs",
            raw.reconnect_min_secs.unwrap_or(DEFAULT_RECONNECT_MIN_SECS),
            0.01,
            3600.0,
        )?;
        let reconnect_max = secs(
            "queue.reconnect_max_secs",
            raw.reconnect_max_secs.unwrap_or(DEFAULT_RECONNECT_MAX_SECS),
            0.01,
            3600.0,
        )?;
        if reconnect_max < reconnect_min {
            return Err(invalid(
                "queue.reconnect_max_secs",
                "must be at least queue.reconnect_min_secs",
            ));
        }
        let max_message_bytes = raw.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        if !(1024..=1 << 30).contains(&max_message_bytes) {
            return Err(invalid(
                "queue.max_message_bytes",
                "must be between 1024 and 2^30",
            ));
        }
        Ok(Some(QueueConfig {
            url,
            names,
            prefetch,
            delivery_limit,
            on_stop,
            drain_timeout,
            reconnect_min,
            reconnect_max,
            max_message_bytes,
        }))
    }

    /// A configuration with every default, for `url` (tests, tools).
    pub fn with_url(url: BrokerUrl) -> QueueConfig {
        QueueConfig {
            url,
            names: Names::default(),
            prefetch: DEFAULT_PREFETCH,
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
            on_stop: OnStop::Finish,
            drain_timeout: Duration::from_secs_f64(DEFAULT_DRAIN_TIMEOUT_SECS),
            reconnect_min: Duration::from_secs_f64(DEFAULT_RECONNECT_MIN_SECS),
            reconnect_max: Duration::from_secs_f64(DEFAULT_RECONNECT_MAX_SECS),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

fn raw_is_empty(raw: &RawQueue) -> bool {
    let RawQueue {
        url,
        url_file,
        password_file,
        judge_exchange,
        results_exchange,
        events_exchange,
        dead_letter,
        queue_prefix,
        prefetch,
        delivery_limit,
        on_stop,
        drain_timeout_secs,
        reconnect_min_secs,
        reconnect_max_secs,
        max_message_bytes,
    } = raw;
    url.is_none()
        && url_file.is_none()
        && password_file.is_none()
        && judge_exchange.is_none()
        && results_exchange.is_none()
        && events_exchange.is_none()
        && dead_letter.is_none()
        && queue_prefix.is_none()
        && prefetch.is_none()
        && delivery_limit.is_none()
        && on_stop.is_none()
        && drain_timeout_secs.is_none()
        && reconnect_min_secs.is_none()
        && reconnect_max_secs.is_none()
        && max_message_bytes.is_none()
}

/// An exchange or queue name: 1–127 characters of `[A-Za-z0-9._:-]`, not starting with `amq.`
/// (reserved by the broker). The prefix may be empty.
fn name(
    setting: &'static str,
    value: Option<String>,
    default: String,
) -> Result<String, QueueConfigError> {
    let v = value.unwrap_or(default);
    let prefix_ok = setting == "queue.queue_prefix" && v.is_empty();
    if !prefix_ok
        && (v.is_empty()
            || v.len() > 127
            || !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')))
    {
        return Err(invalid(
            setting,
            "must be 1-127 characters of [A-Za-z0-9._:-]",
        ));
    }
    if v.starts_with("amq.") {
        return Err(invalid(setting, "names starting with amq. are reserved"));
    }
    Ok(v)
}

fn secs(setting: &'static str, v: f64, min: f64, max: f64) -> Result<Duration, QueueConfigError> {
    if !(min..=max).contains(&v) {
        return Err(invalid(
            setting,
            format!("must be between {min} and {max} seconds"),
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

/// The first line of `path`, trimmed (a secret: never quoted in an error).
fn read_first_line(setting: &'static str, path: &Path) -> Result<String, QueueConfigError> {
    if !path.is_absolute() {
        return Err(invalid(setting, "must be an absolute path"));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(setting, format!("cannot read {}: {e}", path.display())))?;
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return Err(invalid(
            setting,
            format!("{} has an empty first line", path.display()),
        ));
    }
    Ok(line.to_owned())
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Defaults, validation, and that the password never shows.
    use super::*;

    fn parse(text: &str) -> Result<Option<QueueConfig>, QueueConfigError> {
        QueueConfig::new(toml::from_str::<RawQueue>(text).expect("toml"))
    }

    #[test]
    fn test_absent_section_is_off() {
        assert!(parse("").unwrap().is_none());
    }

    #[test]
    fn test_defaults() {
        let c = parse("url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"")
            .unwrap()
            .unwrap();
        assert_eq!(c.names, Names::default());
        assert_eq!(c.names.queue_of("c"), "judge.c");
        assert_eq!(c.prefetch, 1);
        assert_eq!(c.delivery_limit, 10);
        assert_eq!(c.on_stop, OnStop::Finish);
        assert_eq!(c.drain_timeout, Duration::from_secs(30));
        assert_eq!(c.url.host(), "127.0.0.1:5672");
        assert_eq!(c.url.vhost(), "/");
        assert_eq!(c, {
            let mut d = QueueConfig::with_url(c.url.clone());
            d.url = c.url.clone();
            d
        });
    }

    #[test]
    fn test_password_never_shows() {
        let c = parse(
            "url = \"amqp://judge:s3cr3t-pw@mq.internal:5673/contest\"\non_stop = \"requeue\"",
        )
        .unwrap()
        .unwrap();
        for text in [format!("{c:?}"), c.url.to_string()] {
            assert!(!text.contains("s3cr3t-pw"), "{text}");
            assert!(text.contains("judge@mq.internal:5673/contest"), "{text}");
        }
        assert_eq!(c.url.uri().authority.userinfo.password, "s3cr3t-pw");
        assert_eq!(c.on_stop, OnStop::Requeue);
        // A URL that does not parse: the error does not quote the password either.
        let err = parse("url = \"amqp://judge:s3cr3t-pw@mq.internal:notaport/x\"").unwrap_err();
        assert_eq!(err.setting, "queue.url");
        assert!(!err.to_string().contains("s3cr3t-pw"), "{err}");
    }

    #[test]
    fn test_url_and_password_files() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("url");
        let pw = dir.path().join("pw");
        std::fs::write(&url, "amqp://judge:old@broker/%2f\nignored\n").unwrap();
        std::fs::write(&pw, "from-file\n").unwrap();
        let text = format!(
            "url_file = \"{}\"\npassword_file = \"{}\"",
            url.display(),
            pw.display()
        );
        let c = parse(&text).unwrap().unwrap();
        assert_eq!(c.url.uri().authority.userinfo.password, "from-file");
        assert_eq!(c.url.host(), "broker:5672");
        assert!(!format!("{c:?}").contains("from-file"));
    }

    #[test]
    fn test_invalid_values_name_the_setting() {
        let u = "url = \"amqp://g:g@h/%2f\"\n";
        for (text, setting) in [
            ("prefetch = 1", "queue.url"),
            ("url = \"http://h/\"", "queue.url"),
            ("url = \"amqps://h/\"", "queue.url"),
            (
                "url = \"amqp://h/\"\nurl_file = \"/nonexistent\"",
                "queue.url_file",
            ),
            ("url_file = \"relative\"", "queue.url_file"),
            ("url_file = \"/nonexistent/url\"", "queue.url_file"),
            (
                &format!("{u}password_file = \"/nonexistent\""),
                "queue.password_file",
            ),
            (&format!("{u}prefetch = 5000"), "queue.prefetch"),
            (&format!("{u}delivery_limit = 0"), "queue.delivery_limit"),
            (&format!("{u}on_stop = \"wait\""), "queue.on_stop"),
            (
                &format!("{u}drain_timeout_secs = -1"),
                "queue.drain_timeout_secs",
            ),
            (
                &format!("{u}reconnect_min_secs = 5\nreconnect_max_secs = 1"),
                "queue.reconnect_max_secs",
            ),
            (
                &format!("{u}judge_exchange = \"amq.direct\""),
                "queue.judge_exchange",
            ),
            (
                &format!("{u}events_exchange = \"a b\""),
                "queue.events_exchange",
            ),
            (&format!("{u}dead_letter = \"\""), "queue.dead_letter"),
            (
                &format!("{u}max_message_bytes = 10"),
                "queue.max_message_bytes",
            ),
        ] {
            match parse(text) {
                Err(e) => assert_eq!(e.setting, setting, "{text}: {e}"),
                Ok(c) => panic!("{text}: expected an error naming {setting}, got {c:?}"),
            }
        }
        // An empty queue prefix is allowed (queues named as the languages).
        let c = parse(&format!("{u}queue_prefix = \"\"")).unwrap().unwrap();
        assert_eq!(c.names.queue_of("c"), "c");
    }
}
