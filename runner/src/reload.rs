//! Reloading the configuration while serving: `SIGHUP` (`systemctl reload runner`).
//!
//! Owns: [`Publishers`], the one writer of every reloadable section (each module reads its
//! section through a `live::Live` it was given at start-up), and [`Reloader`], which re-reads the
//! config file, validates all of it and builds what depends on it (the language registry, whose
//! version commands run again) **before** anything changes, says which changed settings need a
//! restart, then publishes every section. A file that does not load, or profiles that do not,
//! change nothing: the error is logged and the running configuration stays. Runs in flight keep
//! the snapshot they started with.
//!
//! Live: `[api]` (keys and their rates, body and time limits, `shutdown_grace_secs`),
//! `[limits]`, `queue_timeout_secs`, `max_queue`, `profiles_dir` and the profiles in it (new
//! version probes), `[peer]` (peers, weights, keys, probes), `log_level`. Restart-only (logged
//! as "needs a restart", the running value kept): `listen`, `metrics_listen`, `data_dir`, `slots`,
//! `[jail]`, `[monitor]`, `[cache]`, `api.max_connections`, `log_format`, and the seccomp policies
//! (`<profiles_dir>/seccomp/`), which are compiled into the jail at start-up.
//!
//! Must not: touch the jail, the slots or the listeners. To make a new section reloadable, see
//! docs/ARCHITECTURE.md ("Reloading the configuration").

use std::path::PathBuf;
use std::sync::Arc;

use crate::api::ApiConfig;
use crate::config::{Config, ConfigError};
use crate::jail::Jail;
use crate::live::Publisher;
use crate::peer;
use crate::profile::{ProfileError, Registry};
use crate::sched;
use crate::telemetry::LogConfig;

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot load the language profiles")]
    Profiles(#[source] ProfileError),
    #[error(
        "profile {id} names seccomp policy '{policy}', which the running jail does not have \
         (new seccomp policies need a restart)"
    )]
    UnknownPolicy { id: String, policy: String },
    #[error(
        "profile {id} names extra read-only path {path}, which the running jail has no mount point \
         for (a new path outside the system directories needs a restart)"
    )]
    NoMountPoint { id: String, path: String },
    #[error("the version probes did not finish")]
    Probes(#[source] tokio::task::JoinError),
}

/// The writers of the reloadable sections, one per consuming module.
#[derive(Debug)]
pub struct Publishers {
    pub api: Publisher<ApiConfig>,
    pub sched: Publisher<sched::Settings>,
    pub peer: Publisher<peer::Settings>,
    pub log: Publisher<LogConfig>,
}

impl Publishers {
    /// The sections of `cfg`, with `registry` its languages.
    pub fn new(cfg: &Config, registry: Registry) -> Publishers {
        Publishers {
            api: Publisher::new(cfg.api.clone()).0,
            sched: Publisher::new(sched::Settings::new(registry, cfg.sched.clone())).0,
            peer: Publisher::new(peer::Settings::new(&cfg.peer, &cfg.sched)).0,
            log: Publisher::new(cfg.log.clone()).0,
        }
    }
}

/// What a reload did: the sections it published that changed, and the changed settings it left
/// as they are until a restart.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    pub changed: Vec<&'static str>,
    pub needs_restart: Vec<&'static str>,
}

/// Re-reads and applies the config file of a running daemon.
pub struct Reloader {
    /// The file (`None`: no file, all defaults; a reload then re-applies the defaults).
    path: Option<PathBuf>,
    /// The file as the daemon started with it: the restart-only values in force.
    started: Config,
    /// The seccomp policies compiled into the jail at start-up.
    policies: Vec<(String, String)>,
    /// The file as last applied (to say what changed).
    applied: Config,
    jail: Arc<Jail>,
    publishers: Arc<Publishers>,
}

impl Reloader {
    /// `started` is the config as read from `path` at start-up (before command-line
    /// overrides such as `--listen`).
    pub fn new(
        path: Option<PathBuf>,
        started: Config,
        policies: Vec<(String, String)>,
        jail: Arc<Jail>,
        publishers: Arc<Publishers>,
    ) -> Reloader {
        Reloader {
            path,
            applied: started.clone(),
            started,
            policies,
            jail,
            publishers,
        }
    }

    /// Reads the file again and applies it; logs the outcome (one line, plus one per setting
    /// that needs a restart). A failure changes nothing.
    pub async fn reload_and_log(&mut self) {
        let file = self
            .path
            .as_ref()
            .map_or_else(|| "none (defaults)".to_owned(), |p| p.display().to_string());
        tracing::info!(config = %file, "SIGHUP: reloading the config");
        match self.reload().await {
            Ok(r) => {
                for setting in &r.needs_restart {
                    tracing::warn!(
                        setting,
                        "changed in the config file, but needs a restart: the running value is kept"
                    );
                }
                tracing::info!(
                    changed = %if r.changed.is_empty() { "nothing".to_owned() } else { r.changed.join(", ") },
                    needs_restart = r.needs_restart.len(),
                    "config reloaded"
                );
            }
            Err(e) => tracing::error!(
                error = %crate::telemetry::error_chain(&e),
                "config reload failed; the running config is kept"
            ),
        }
    }

    /// Reads, validates and applies the file (see the module docs).
    pub async fn reload(&mut self) -> Result<Reloaded, ReloadError> {
        let new = Config::load(self.path.as_deref())?;
        let policies = new.seccomp_policies()?;
        let dir = new.profiles_dir.clone();
        // Version commands take up to 10 s each: off the async workers.
        let registry = tokio::task::spawn_blocking(move || Registry::load(dir.as_deref()))
            .await
            .map_err(ReloadError::Probes)?
            .map_err(ReloadError::Profiles)?;
        for (id, _) in registry.languages() {
            if let Some(p) = registry.get(&id)
                && !self.jail.has_policy(&p.seccomp)
            {
                return Err(ReloadError::UnknownPolicy {
                    id,
                    policy: p.seccomp.clone(),
                });
            }
            if let Some(p) = registry.get(&id)
                && let Some(path) = p
                    .extra_ro_paths
                    .iter()
                    .find(|x| !self.jail.has_mount_point(std::path::Path::new(x)))
            {
                return Err(ReloadError::NoMountPoint {
                    id,
                    path: path.clone(),
                });
            }
        }
        // Everything is valid: from here on nothing fails.
        let mut out = Reloaded {
            needs_restart: restart_only_changes(&self.started, &new),
            changed: changed_sections(&self.applied, &new),
        };
        if policies != self.policies {
            out.needs_restart
                .push("seccomp policies (profiles_dir/seccomp)");
        }
        let languages_before = self.publishers.sched.current().languages().to_vec();
        let sched = sched::Settings::new(registry, new.sched.clone());
        if sched.languages() != languages_before.as_slice() && !out.changed.contains(&"languages") {
            out.changed.push("languages");
        }
        let p = &self.publishers;
        p.api.publish(new.api.clone());
        p.sched.publish(sched);
        p.peer.publish(peer::Settings::new(&new.peer, &new.sched));
        p.log.publish(new.log.clone());
        self.applied = new;
        Ok(out)
    }
}

/// The reloadable sections that differ between `old` and `new`. Every field of `Config` is
/// named here or in [`restart_only_changes`] (both destructure it), so a new setting cannot be
/// forgotten: it fails to compile until it is placed in one of them.
fn changed_sections(old: &Config, new: &Config) -> Vec<&'static str> {
    let Config {
        listen: _,
        metrics_listen: _,
        data_dir: _,
        slots: _,
        cache_dir: _,
        cache_max_bytes: _,
        compile_cache: _,
        jail: _,
        log,
        profiles_dir,
        shutdown_grace,
        api,
        sched,
        peer,
        judge: _,
        queue: _,
    } = new;
    let mut out = Vec::new();
    if *api != old.api || *shutdown_grace != old.shutdown_grace {
        out.push("api");
    }
    if sched.plan != old.sched.plan {
        out.push("limits");
    }
    if sched.queue_timeout != old.sched.queue_timeout || sched.max_queue != old.sched.max_queue {
        out.push("queue");
    }
    if *profiles_dir != old.profiles_dir {
        out.push("languages");
    }
    if *peer != old.peer {
        out.push("peer");
    }
    if log.level != old.log.level {
        out.push("log_level");
    }
    out
}

/// The restart-only settings that differ between the running `started` and `new`.
fn restart_only_changes(started: &Config, new: &Config) -> Vec<&'static str> {
    let Config {
        listen,
        metrics_listen,
        data_dir,
        slots,
        cache_dir: _,
        cache_max_bytes,
        compile_cache,
        jail,
        log,
        profiles_dir: _,
        shutdown_grace: _,
        api,
        sched: _,
        peer: _,
        judge,
        queue,
    } = new;
    let mut out = Vec::new();
    let mut check = |changed: bool, name: &'static str| {
        if changed {
            out.push(name);
        }
    };
    check(*listen != started.listen, "listen");
    check(*metrics_listen != started.metrics_listen, "metrics_listen");
    check(*data_dir != started.data_dir, "data_dir");
    check(*slots != started.slots, "slots");
    check(*queue != started.queue, "queue");
    // `judge.parallel_cases` defaults to the number of slots: a change of `slots` alone is
    // reported as `slots` only.
    let judge_as_started = crate::judge::JudgeConfig {
        parallel_cases: started.judge.parallel_cases,
        ..judge.clone()
    };
    check(
        if *slots == started.slots {
            *judge != started.judge
        } else {
            judge_as_started != started.judge
        },
        "judge",
    );
    check(
        *cache_max_bytes != started.cache_max_bytes,
        "cache.max_bytes",
    );
    check(*compile_cache != started.compile_cache, "compile_cache");
    check(jail.uid_base != started.jail.uid_base, "jail.uid_base");
    check(jail.gid != started.jail.gid, "jail.gid");
    check(
        jail.system_paths != started.jail.system_paths,
        "jail.system_paths",
    );
    check(jail.ebpf != started.jail.ebpf, "monitor.ebpf");
    check(
        api.max_connections != started.api.max_connections,
        "api.max_connections",
    );
    check(log.format != started.log.format, "log_format");
    out
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). What a reload reports as changed and as restart-only (the
    //! reload itself, with a real daemon and SIGHUP: tests/tests/operator.rs).
    use super::*;
    use crate::config::RawConfig;

    fn parse(text: &str) -> Config {
        Config::try_from(toml::from_str::<RawConfig>(text).expect("toml")).expect("valid")
    }

    #[test]
    fn test_sections_and_restart_only() {
        let old = parse("listen = \"127.0.0.1:4000\"\nslots = 2\n");
        let new = parse(
            "listen = \"127.0.0.1:4001\"\nslots = 3\nlog_level = \"debug\"\nlog_format = \"json\"\n\
             queue_timeout_secs = 3.0\n[limits]\nwall_factor = 3.0\n[api.keys]\nk = 0\n\
             [jail]\nuid_base = 2000000\n",
        );
        assert_eq!(
            changed_sections(&old, &new),
            ["api", "limits", "queue", "log_level"]
        );
        assert_eq!(
            restart_only_changes(&old, &new),
            ["listen", "slots", "jail.uid_base", "log_format"]
        );
        assert!(changed_sections(&old, &old).is_empty());
        assert!(restart_only_changes(&old, &old).is_empty());
        // Judge mode is set up once (store, journal): any change of `[judge]` needs a restart.
        let judged = parse("listen = \"127.0.0.1:4000\"\nslots = 2\n[judge]\nmax_queue = 5\n");
        assert!(changed_sections(&old, &judged).is_empty());
        assert_eq!(restart_only_changes(&old, &judged), ["judge"]);
    }
}
