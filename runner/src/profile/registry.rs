//! The set of languages this server offers: profiles (embedded or from a directory) whose
//! toolchain answered its version command on the host.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::schema::{Profile, ProfileError};

/// The shipped profiles, compiled in. Keep in sync with `profiles/*.toml`.
const EMBEDDED: [(&str, &str); 8] = [
    ("c.toml", include_str!("../../../profiles/c.toml")),
    ("cpp.toml", include_str!("../../../profiles/cpp.toml")),
    ("java.toml", include_str!("../../../profiles/java.toml")),
    ("nodejs.toml", include_str!("../../../profiles/nodejs.toml")),
    ("octave.toml", include_str!("../../../profiles/octave.toml")),
    ("pascal.toml", include_str!("../../../profiles/pascal.toml")),
    ("php.toml", include_str!("../../../profiles/php.toml")),
    (
        "python3.toml",
        include_str!("../../../profiles/python3.toml"),
    ),
];

/// How long a version command may take before its language is left out.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a version command gave no usable output.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("failed to start {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {secs} s")]
    Timeout { secs: u64 },
    #[error("exited with {status}")]
    Failed { status: String },
    #[error("printed nothing")]
    Empty,
    #[error("failed to wait for the version command")]
    Wait(#[source] std::io::Error),
}

/// Runs a version command and returns its output (stdout and stderr merged, as Jobe's `2>&1`).
/// Injectable so tests need no toolchains.
pub trait VersionProbe: Sync {
    fn probe(&self, argv: &[String]) -> Result<String, ProbeError>;
}

impl<F> VersionProbe for F
where
    F: Fn(&[String]) -> Result<String, ProbeError> + Sync,
{
    fn probe(&self, argv: &[String]) -> Result<String, ProbeError> {
        self(argv)
    }
}

/// Runs the command on the host with [`PROBE_TIMEOUT`].
#[derive(Debug, Clone, Copy, Default)]
pub struct HostProbe;

impl VersionProbe for HostProbe {
    fn probe(&self, argv: &[String]) -> Result<String, ProbeError> {
        run_merged(argv, PROBE_TIMEOUT)
    }
}

/// Runs `argv` with stdout and stderr on one pipe; kills it after `timeout`.
fn run_merged(argv: &[String], timeout: Duration) -> Result<String, ProbeError> {
    let program = argv.first().cloned().unwrap_or_default();
    let spawn_err = |source| ProbeError::Spawn {
        program: program.clone(),
        source,
    };
    let (mut reader, writer) = std::io::pipe().map_err(spawn_err)?;
    let writer2 = writer.try_clone().map_err(spawn_err)?;
    let mut child = Command::new(&program)
        .args(&argv[1.min(argv.len())..])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .spawn()
        .map_err(spawn_err)?;
    // The Command (and with it our copies of the write end) was a temporary and is dropped, so the
    // reader sees EOF when the child (and anything it forked) closes its copies.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let res = reader.read_to_end(&mut out).map(|_| out);
        // The receiver may have given up after a timeout.
        let _ = tx.send(res);
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().map_err(ProbeError::Wait)? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                // Best effort: it may have exited in between.
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProbeError::Timeout {
                    secs: timeout.as_secs(),
                });
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    let out = match rx.recv_timeout(remaining) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(ProbeError::Wait(e)),
        Err(_) => {
            return Err(ProbeError::Timeout {
                secs: timeout.as_secs(),
            });
        }
    };
    if !status.success() {
        return Err(ProbeError::Failed {
            status: status.to_string(),
        });
    }
    let out = String::from_utf8_lossy(&out).into_owned();
    if out.trim().is_empty() {
        return Err(ProbeError::Empty);
    }
    Ok(out)
}

/// The shipped profiles, parsed and validated, sorted by id.
pub fn embedded_profiles() -> Result<Vec<Profile>, ProfileError> {
    EMBEDDED
        .iter()
        .map(|(name, text)| Profile::from_toml(name, text))
        .collect()
}

/// Every `*.toml` in `dir` (not recursive), parsed and validated. A file must be named `<id>.toml`.
pub fn dir_profiles(dir: &Path) -> Result<Vec<Profile>, ProfileError> {
    let read_err = |path: &Path, source| ProfileError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| read_err(dir, e))? {
        let path = entry.map_err(|e| read_err(dir, e))?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut profiles = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
        let name = path.display().to_string();
        let profile = Profile::from_toml(&name, &text)?;
        if path.file_stem().and_then(|s| s.to_str()) != Some(profile.id.as_str()) {
            return Err(ProfileError::Invalid {
                name,
                reason: format!("file must be named {}.toml after its id", profile.id),
            });
        }
        profiles.push(profile);
    }
    Ok(profiles)
}

/// Available languages: profile and detected version, by id.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    languages: BTreeMap<String, (Profile, String)>,
    /// Profiles left out, with why (for `runner check`).
    missing: BTreeMap<String, String>,
}

impl Registry {
    /// The shipped profiles, overridden and extended by those of `dir` when given (a config's
    /// `profiles_dir`), detected on this host.
    pub fn load(dir: Option<&Path>) -> Result<Registry, ProfileError> {
        match dir {
            Some(dir) => Registry::load_dir(dir),
            None => Registry::embedded(),
        }
    }

    /// The shipped profiles, detected on this host.
    pub fn embedded() -> Result<Registry, ProfileError> {
        Ok(Registry::from_profiles(embedded_profiles()?, &HostProbe))
    }

    /// The shipped profiles overridden (same id) and extended (new id) by `dir`'s, detected on
    /// this host.
    pub fn load_dir(dir: &Path) -> Result<Registry, ProfileError> {
        Ok(Registry::from_profiles(
            merge(embedded_profiles()?, dir_profiles(dir)?),
            &HostProbe,
        ))
    }

    /// Detects each profile with `probe` (in parallel). A profile whose version command fails is
    /// left out, with a warning naming the language and why.
    pub fn from_profiles(profiles: Vec<Profile>, probe: &dyn VersionProbe) -> Registry {
        let results: Vec<(Profile, Result<String, ProbeError>)> = std::thread::scope(|s| {
            let handles: Vec<_> = profiles
                .into_iter()
                .map(|profile| {
                    s.spawn(move || {
                        let res = probe.probe(&profile.version_command);
                        (profile, res)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let mut languages = BTreeMap::new();
        let mut missing = BTreeMap::new();
        for (profile, res) in results {
            match res {
                Ok(output) => {
                    let version = profile.parse_version(&output);
                    tracing::info!(lang = %profile.id, %version, "language available");
                    languages.insert(profile.id.clone(), (profile, version));
                }
                Err(err) => {
                    tracing::warn!(
                        lang = %profile.id,
                        command = ?profile.version_command,
                        error = %DisplayChain(&err),
                        "language left out: its version command failed"
                    );
                    missing.insert(profile.id.clone(), DisplayChain(&err).to_string());
                }
            }
        }
        Registry { languages, missing }
    }

    /// Languages whose profile exists but whose toolchain was not found, with the reason.
    pub fn missing(&self) -> impl Iterator<Item = (&str, &str)> {
        self.missing.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `(id, version)` pairs sorted by id, as `GET /languages` answers.
    pub fn languages(&self) -> Vec<(String, String)> {
        self.languages
            .iter()
            .map(|(id, (_, version))| (id.clone(), version.clone()))
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<&Profile> {
        self.languages.get(id).map(|(profile, _)| profile)
    }

    /// Every `extra_ro_paths` entry of the available languages' profiles, once each: the jail
    /// makes a mount point for each in every slot's template.
    pub fn extra_ro_paths(&self) -> Vec<std::path::PathBuf> {
        let mut paths: Vec<std::path::PathBuf> = self
            .languages
            .values()
            .flat_map(|(p, _)| p.extra_ro_paths.iter().map(std::path::PathBuf::from))
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }
}

/// `base` with `overrides` replacing same-id profiles and adding new ones.
pub fn merge(base: Vec<Profile>, overrides: Vec<Profile>) -> Vec<Profile> {
    let mut by_id: BTreeMap<String, Profile> =
        base.into_iter().map(|p| (p.id.clone(), p)).collect();
    for p in overrides {
        by_id.insert(p.id.clone(), p);
    }
    by_id.into_values().collect()
}

/// Prints an error and its sources, `a: b: c`.
struct DisplayChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
