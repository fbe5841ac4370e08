//! The daemon's configuration: a TOML file read with serde (`raw`), then validated as a whole into
//! `Config` (ripgrep's lowargs → hiargs). Every setting has a default, so runner runs with no file
//! at all; `deploy/runner.toml` documents each one and is checked by a test to parse.
//!
//! Owns: the file's shape and its validation, assembled from the settings types of the modules
//! they configure (`api`, `sched`, `jail`, `monitor`, `peer`, `judge`, `queue`, `telemetry`). Must
//! not: be imported by those modules (the assembler sits above what it assembles; `server` hands
//! each part its section at start-up, `reload` publishes the reloadable ones again on `SIGHUP`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::api::ApiConfig;
use crate::jail::JailConfig;
use crate::judge::{JudgeConfig, JudgeConfigError, RawJudge};
use crate::peer::{InvalidPeerSetting, PeerConfig, RawPeer};
use crate::profile::PlanConfig;
use crate::queue::{QueueConfig, QueueConfigError, RawQueue};
use crate::sched::SchedConfig;
use crate::telemetry::{LogConfig, LogFormat};

/// Errors reading or validating the configuration. Messages name the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("setting `{setting}`: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
    #[error("cannot read seccomp policy {path}")]
    Policy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        reason: reason.into(),
    }
}

impl From<QueueConfigError> for ConfigError {
    fn from(e: QueueConfigError) -> Self {
        invalid(e.setting, e.reason)
    }
}

impl From<JudgeConfigError> for ConfigError {
    fn from(e: JudgeConfigError) -> Self {
        invalid(e.setting, e.reason)
    }
}

impl From<InvalidPeerSetting> for ConfigError {
    fn from(e: InvalidPeerSetting) -> Self {
        invalid(e.setting, e.reason)
    }
}

/// The file as written (every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    /// A second listener for `/metrics`, `/health` and `/version` only.
    pub metrics_listen: Option<String>,
    /// An `EnvFilter` directive (default `info`); reloaded on SIGHUP.
    pub log_level: Option<String>,
    /// `text` (default) or `json`.
    pub log_format: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub slots: Option<usize>,
    pub queue_timeout_secs: Option<f64>,
    pub max_queue: Option<usize>,
    pub profiles_dir: Option<PathBuf>,
    pub shutdown_grace_secs: Option<f64>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub api: RawApi,
    #[serde(default)]
    pub cache: RawCache,
    /// `[compile_cache]`: the compile cache (docs/performance.md, "Compile cache").
    #[serde(default)]
    pub compile_cache: RawCompileCache,
    #[serde(default)]
    pub jail: RawJail,
    /// `[peer]`: peer mode (docs/peers.md).
    #[serde(default)]
    pub peer: RawPeer,
    #[serde(default)]
    pub monitor: RawMonitor,
    /// `[judge]`: judge mode (docs/judge.md).
    #[serde(default)]
    pub judge: RawJudge,
    /// `[queue]`: queue mode on RabbitMQ (docs/queue.md).
    #[serde(default)]
    pub queue: RawQueue,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub cputime_max_secs: Option<f64>,
    pub wall_factor: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub max_body_bytes: Option<u64>,
    pub header_read_timeout_secs: Option<f64>,
    pub max_connections: Option<usize>,
    /// API key → runs per hour (0 = unlimited). Present (even empty) = keys required.
    pub keys: Option<HashMap<String, u32>>,
    pub body_read_timeout_secs: Option<f64>,
    pub send_timeout_secs: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompileCache {
    pub enabled: Option<bool>,
    pub max_bytes: Option<u64>,
}

/// `[compile_cache]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileCacheConfig {
    pub enabled: bool,
    /// Cap on the entries' bytes (least recently used evicted beyond it).
    pub max_bytes: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJail {
    pub uid_base: Option<u32>,
    pub gid: Option<u32>,
    pub system_paths: Option<Vec<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitor {
    /// "auto" (default), "require" or "off" (docs/ebpf.md).
    pub ebpf: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Where `/metrics`, `/health` and `/version` are served instead of `listen`.
    pub metrics_listen: Option<SocketAddr>,
    pub log: LogConfig,
    pub data_dir: PathBuf,
    pub slots: usize,
    pub profiles_dir: Option<PathBuf>,
    pub shutdown_grace: Duration,
    pub api: ApiConfig,
    pub cache_dir: PathBuf,
    pub cache_max_bytes: u64,
    /// The compile cache, under `<data_dir>/compile-cache`.
    pub compile_cache: CompileCacheConfig,
    pub sched: SchedConfig,
    pub jail: JailConfig,
    pub peer: PeerConfig,
    pub judge: JudgeConfig,
    /// Queue mode; `None`: off (no `[queue] url`).
    pub queue: Option<QueueConfig>,
}

fn secs(setting: &'static str, v: f64, min: f64, max: f64) -> Result<Duration, ConfigError> {
    if !(min..=max).contains(&v) {
        return Err(invalid(
            setting,
            format!("must be between {min} and {max} seconds"),
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

impl Config {
    /// Reads `path` (or nothing: all defaults) and validates it.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let raw = match path {
            None => RawConfig::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: p.to_owned(),
                    source,
                })?
            }
        };
        Config::try_from(raw)
    }
}

impl Config {
    /// The seccomp policies this config names: the built-in `default` plus
    /// `<profiles_dir>/seccomp/<name>.toml` (one of the same name replaces the built-in one), as
    /// `(name, TOML text)`. A missing directory is no policy.
    pub fn seccomp_policies(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let mut policies = self.jail.seccomp_policies.clone();
        let Some(dir) = self.profiles_dir.as_ref().map(|d| d.join("seccomp")) else {
            return Ok(policies);
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(policies);
        };
        let read_err = |path: &Path| {
            let path = path.to_owned();
            move |source| ConfigError::Policy { path, source }
        };
        let mut paths = Vec::new();
        for e in entries {
            let path = e.map_err(read_err(&dir))?.path();
            if path.extension().is_some_and(|x| x == "toml") {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            let Some(name) = path.file_stem().and_then(|n| n.to_str()) else {
                return Err(invalid(
                    "profiles_dir",
                    format!("seccomp policy file name {} is not UTF-8", path.display()),
                ));
            };
            let name = name.to_owned();
            let text = std::fs::read_to_string(&path).map_err(read_err(&path))?;
            policies.retain(|(n, _)| *n != name);
            policies.push((name, text));
        }
        Ok(policies)
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        let listen: SocketAddr = raw
            .listen
            .as_deref()
            .unwrap_or("127.0.0.1:4000")
            .parse()
            .map_err(|e| invalid("listen", format!("not an address:port ({e})")))?;
        let metrics_listen = match raw.metrics_listen.as_deref() {
            None => None,
            Some(a) => {
                let addr: SocketAddr = a
                    .parse()
                    .map_err(|e| invalid("metrics_listen", format!("not an address:port ({e})")))?;
                if addr == listen {
                    return Err(invalid(
                        "metrics_listen",
                        "must differ from listen (leave it out to serve both on listen)",
                    ));
                }
                Some(addr)
            }
        };
        let level = raw.log_level.unwrap_or_else(|| "info".to_owned());
        LogConfig::check_level(&level).map_err(|e| invalid("log_level", e))?;
        let format = match raw.log_format.as_deref() {
            None => LogFormat::default(),
            Some(f) => f.parse().map_err(|e: String| invalid("log_format", e))?,
        };
        let data_dir = raw
            .data_dir
            .unwrap_or_else(|| PathBuf::from("/var/lib/runner"));
        if !data_dir.is_absolute() {
            return Err(invalid("data_dir", "must be an absolute path"));
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let slots = match raw.slots {
            None | Some(0) => cpus,
            Some(n) if n <= 4096 => n,
            Some(_) => return Err(invalid("slots", "must be at most 4096")),
        };
        let queue_timeout = secs(
            "queue_timeout_secs",
            raw.queue_timeout_secs.unwrap_or(10.0),
            0.0,
            3600.0,
        )?;
        let max_queue = raw.max_queue.unwrap_or(1000);
        let shutdown_grace = secs(
            "shutdown_grace_secs",
            raw.shutdown_grace_secs.unwrap_or(30.0),
            0.0,
            3600.0,
        )?;
        let cputime_max = raw.limits.cputime_max_secs.unwrap_or(120.0);
        if !(1.0..=3600.0).contains(&cputime_max) {
            return Err(invalid(
                "limits.cputime_max_secs",
                "must be between 1 and 3600",
            ));
        }
        let wall_factor = raw.limits.wall_factor.unwrap_or(2.0);
        if !(1.0..=100.0).contains(&wall_factor) {
            return Err(invalid("limits.wall_factor", "must be between 1 and 100"));
        }
        let defaults = ApiConfig::default();
        let api = ApiConfig {
            max_body_bytes: raw.api.max_body_bytes.unwrap_or(defaults.max_body_bytes),
            header_read_timeout: match raw.api.header_read_timeout_secs {
                Some(v) => secs("api.header_read_timeout_secs", v, 0.1, 3600.0)?,
                None => defaults.header_read_timeout,
            },
            max_connections: raw.api.max_connections.unwrap_or(defaults.max_connections),
            api_keys: raw.api.keys,
            drain_timeout: shutdown_grace,
            cputime_upper_limit_secs: cputime_max as u32,
            body_read_timeout: match raw.api.body_read_timeout_secs {
                Some(v) => secs("api.body_read_timeout_secs", v, 0.1, 3600.0)?,
                None => defaults.body_read_timeout,
            },
            send_timeout: match raw.api.send_timeout_secs {
                Some(v) => secs("api.send_timeout_secs", v, 0.1, 3600.0)?,
                None => defaults.send_timeout,
            },
        };
        if api.max_body_bytes < 1024 {
            return Err(invalid("api.max_body_bytes", "must be at least 1024"));
        }
        if api.max_connections == 0 {
            return Err(invalid("api.max_connections", "must be at least 1"));
        }
        let jail_defaults = JailConfig::default();
        let uid_base = raw.jail.uid_base.unwrap_or(jail_defaults.uid_base);
        if uid_base < 1000 || uid_base.checked_add(slots as u32).is_none() {
            return Err(invalid(
                "jail.uid_base",
                "must be at least 1000 and leave room for one uid per slot",
            ));
        }
        let gid = raw.jail.gid.unwrap_or(jail_defaults.gid);
        if gid == 0 {
            return Err(invalid("jail.gid", "must not be 0"));
        }
        let system_paths = raw.jail.system_paths.unwrap_or(jail_defaults.system_paths);
        if let Some(p) = system_paths.iter().find(|p| !p.is_absolute()) {
            return Err(invalid(
                "jail.system_paths",
                format!("{} is not absolute", p.display()),
            ));
        }
        let peer = PeerConfig::try_from(raw.peer)?;
        let judge = JudgeConfig::new(raw.judge, slots)?;
        let queue = QueueConfig::new(raw.queue)?;
        let ebpf = match raw.monitor.ebpf.as_deref() {
            None => crate::monitor::EbpfMode::default(),
            Some(v) => v.parse().map_err(|e: String| invalid("monitor.ebpf", e))?,
        };
        Ok(Config {
            peer,
            judge,
            queue,
            listen,
            metrics_listen,
            log: LogConfig { level, format },
            cache_dir: data_dir.join("files"),
            cache_max_bytes: raw.cache.max_bytes.unwrap_or(1 << 30),
            compile_cache: CompileCacheConfig {
                enabled: raw.compile_cache.enabled.unwrap_or(true),
                max_bytes: raw.compile_cache.max_bytes.unwrap_or(1 << 30),
            },
            jail: JailConfig {
                data_dir: data_dir.clone(),
                system_paths,
                uid_base,
                gid,
                ebpf,
                ..jail_defaults
            },
            data_dir,
            slots,
            profiles_dir: raw.profiles_dir,
            shutdown_grace,
            api,
            sched: SchedConfig {
                queue_timeout,
                max_queue,
                plan: PlanConfig {
                    cputime_max_secs: cputime_max,
                    wall_factor,
                },
            },
        })
    }
}

/// A warning when the config file at `path` can be read by its group or by others: it may hold
/// API keys, and jobs can read world-readable files under `/etc` (docs/threat-model.md). `None`
/// when the mode is fine or the file cannot be inspected.
pub fn readable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "config file {} is readable by group or others (mode {:o}); it may hold API keys: chmod 600 it",
            path.display(),
            mode & 0o777
        )
    })
}

#[cfg(test)]
mod documented;

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Defaults and validation.
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::try_from(toml::from_str::<RawConfig>(text).expect("toml"))
    }

    #[test]
    fn test_defaults_without_file() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:4000");
        assert_eq!(c.sched.queue_timeout, Duration::from_secs(10));
        assert!(c.slots >= 1);
        assert!(c.api.api_keys.is_none());
        assert!(c.queue.is_none(), "queue mode is off without [queue] url");
    }

    #[test]
    fn test_shipped_example_config_parses() {
        let text = include_str!("../../../deploy/runner.toml");
        let c = parse(text).expect("deploy/runner.toml is valid");
        assert_eq!(c.listen.port(), 4000);
    }

    #[test]
    fn test_unknown_setting_rejected() {
        let err = toml::from_str::<RawConfig>("lisen = \"x\"").unwrap_err();
        assert!(err.to_string().contains("lisen"));
    }

    #[test]
    fn test_invalid_values_name_the_setting() {
        for (text, setting) in [
            ("listen = \"nope\"", "listen"),
            ("data_dir = \"relative\"", "data_dir"),
            ("[limits]\nwall_factor = 0.5", "limits.wall_factor"),
            ("[jail]\nuid_base = 10", "jail.uid_base"),
            ("queue_timeout_secs = -1.0", "queue_timeout_secs"),
            ("[monitor]\nebpf = \"on\"", "monitor.ebpf"),
            ("log_level = \"info,[\"", "log_level"),
            ("log_format = \"xml\"", "log_format"),
            ("metrics_listen = \"nope\"", "metrics_listen"),
            ("metrics_listen = \"127.0.0.1:4000\"", "metrics_listen"),
            (
                "[api]\nbody_read_timeout_secs = 0",
                "api.body_read_timeout_secs",
            ),
            ("[api]\nsend_timeout_secs = 1e9", "api.send_timeout_secs"),
            ("[judge]\nmax_cases = 0", "judge.max_cases"),
            ("[queue]\nprefetch = 2", "queue.url"),
            (
                "[queue]\nurl = \"amqp://h/\"\non_stop = \"later\"",
                "queue.on_stop",
            ),
        ] {
            match parse(text) {
                Err(ConfigError::Invalid { setting: s, .. }) => assert_eq!(s, setting, "{text}"),
                other => panic!("{text}: expected invalid {setting}, got {other:?}"),
            }
        }
    }

    #[test]
    fn test_keys_table_enables_keys() {
        let c = parse("[api.keys]\nabc = 60\n").unwrap();
        assert_eq!(c.api.api_keys.unwrap().get("abc"), Some(&60));
    }

    #[test]
    fn test_config_readable_by_others_warns() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runner.toml");
        std::fs::write(&p, "").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(readable_by_others(&p).is_some_and(|w| w.contains("mode 644")));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(readable_by_others(&p), None);
        std::fs::remove_file(&p).unwrap();
        assert_eq!(readable_by_others(&p), None);
    }
}
