//! The `[judge]` section of the config file: `RawJudge` (serde, as written) and its validation
//! into `JudgeConfig` (docs/judge.md, "Configuration"). Lives with the judge, as `[peer]` lives
//! with peer mode; `config` embeds `RawJudge` and calls [`JudgeConfig::new`].
//!
//! Owns: the judge settings, their defaults and their checks; reading `origin_token_file`.
//!
//! Must not: log or print the origin token (it is kept as a `Secret`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::archive::ArchiveLimits;
use super::origin::{OriginConfig, Secret, UrlTemplate};

/// Default cap on one test-set archive, uncompressed: 256 MiB.
pub const DEFAULT_MAX_TESTSET_BYTES: u64 = 256 << 20;
/// Default cap on the cases of one test set.
pub const DEFAULT_MAX_CASES: usize = 1000;
/// Default cap on the test-set store: 4 GiB.
pub const DEFAULT_TESTSET_CACHE_MAX_BYTES: u64 = 4 << 30;
/// Default time for which a finished submission's result stays readable: one day.
pub const DEFAULT_RESULT_TTL_SECS: u64 = 86_400;
/// Default longest `?wait=true` before the answer is 202.
pub const DEFAULT_WAIT_MAX_SECS: f64 = 60.0;
/// Default number of accepted submissions not finished yet, beyond which a POST gets 503.
pub const DEFAULT_MAX_QUEUE: usize = 1000;
/// Default bound on one fetch from the origin (connect, answer, whole body).
pub const DEFAULT_ORIGIN_TIMEOUT_SECS: f64 = 120.0;

/// A setting that cannot be used; the message names it (`judge.<key>`).
#[derive(Debug, thiserror::Error)]
#[error("setting `{setting}`: {reason}")]
pub struct JudgeConfigError {
    pub setting: &'static str,
    pub reason: String,
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> JudgeConfigError {
    JudgeConfigError {
        setting,
        reason: reason.into(),
    }
}

/// `[judge]` as written. Every field is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJudge {
    /// Where missing test-set versions are fetched from: an `http://` URL with `{problem}` and
    /// `{version}`. Unset: no origin (a missing version is `unknown test set`).
    pub origin_url: Option<String>,
    /// Sent to the origin as `Authorization: Bearer <token>`.
    pub origin_token: Option<String>,
    /// A file holding the token (first line), instead of `origin_token`.
    pub origin_token_file: Option<PathBuf>,
    /// Bound on one fetch, in seconds (default 120).
    pub origin_timeout_secs: Option<f64>,
    /// Largest test-set archive, uncompressed, in bytes (default 256 MiB).
    pub max_testset_bytes: Option<u64>,
    /// Most cases in one test set (default 1000).
    pub max_cases: Option<usize>,
    /// Cap on the stored test sets, in bytes; least recently used versions are evicted
    /// (default 4 GiB; at least `max_testset_bytes`).
    pub testset_cache_max_bytes: Option<u64>,
    /// Cases of one submission run at once (default and 0: the number of slots).
    pub parallel_cases: Option<usize>,
    /// How long a finished submission stays readable, in seconds (default 86400).
    pub result_ttl_secs: Option<u64>,
    /// Longest `?wait=true`, in seconds (default 60).
    pub wait_max_secs: Option<f64>,
    /// Accepted, unfinished submissions beyond which a new one gets 503 (default 1000).
    pub max_queue: Option<usize>,
}

/// The validated `[judge]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    pub origin: Option<OriginConfig>,
    /// `max_testset_bytes` and `max_cases`.
    pub archive: ArchiveLimits,
    pub testset_cache_max_bytes: u64,
    pub parallel_cases: usize,
    pub result_ttl: Duration,
    pub wait_max: Duration,
    pub max_queue: usize,
}

impl JudgeConfig {
    /// Validates `raw`; `slots` is the daemon's number of slots (the default and the ceiling
    /// of `parallel_cases`).
    pub fn new(raw: RawJudge, slots: usize) -> Result<JudgeConfig, JudgeConfigError> {
        let max_testset_bytes = raw.max_testset_bytes.unwrap_or(DEFAULT_MAX_TESTSET_BYTES);
        if !(1024..=1 << 40).contains(&max_testset_bytes) {
            return Err(invalid(
                "judge.max_testset_bytes",
                "must be between 1024 and 2^40",
            ));
        }
        let max_cases = raw.max_cases.unwrap_or(DEFAULT_MAX_CASES);
        if !(1..=100_000).contains(&max_cases) {
            return Err(invalid("judge.max_cases", "must be between 1 and 100000"));
        }
        let cache = raw
            .testset_cache_max_bytes
            .unwrap_or(DEFAULT_TESTSET_CACHE_MAX_BYTES.max(max_testset_bytes));
        if cache < max_testset_bytes {
            return Err(invalid(
                "judge.testset_cache_max_bytes",
                "must be at least judge.max_testset_bytes (one test set must fit)",
            ));
        }
        let parallel_cases = match raw.parallel_cases {
            None | Some(0) => slots,
            Some(n) if n <= slots => n,
            Some(_) => {
                return Err(invalid(
                    "judge.parallel_cases",
                    format!("must be at most the number of slots ({slots})"),
                ));
            }
        };
        let result_ttl_secs = raw.result_ttl_secs.unwrap_or(DEFAULT_RESULT_TTL_SECS);
        if !(60..=366 * 86_400).contains(&result_ttl_secs) {
            return Err(invalid(
                "judge.result_ttl_secs",
                "must be between 60 and 31622400 (366 days)",
            ));
        }
        let wait_max = secs(
            "judge.wait_max_secs",
            raw.wait_max_secs.unwrap_or(DEFAULT_WAIT_MAX_SECS),
            0.0,
            3600.0,
        )?;
        let max_queue = raw.max_queue.unwrap_or(DEFAULT_MAX_QUEUE);
        if !(1..=1_000_000).contains(&max_queue) {
            return Err(invalid("judge.max_queue", "must be between 1 and 1000000"));
        }
        Ok(JudgeConfig {
            origin: origin(&raw)?,
            archive: ArchiveLimits {
                max_bytes: max_testset_bytes,
                max_cases,
            },
            testset_cache_max_bytes: cache,
            parallel_cases,
            result_ttl: Duration::from_secs(result_ttl_secs),
            wait_max,
            max_queue,
        })
    }
}

fn secs(setting: &'static str, v: f64, min: f64, max: f64) -> Result<Duration, JudgeConfigError> {
    if !(min..=max).contains(&v) {
        return Err(invalid(
            setting,
            format!("must be between {min} and {max} seconds"),
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

fn origin(raw: &RawJudge) -> Result<Option<OriginConfig>, JudgeConfigError> {
    let token = match (&raw.origin_token, &raw.origin_token_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "judge.origin_token_file",
                "set only one of judge.origin_token and judge.origin_token_file",
            ));
        }
        (Some(t), None) => Some(check_token("judge.origin_token", t.clone())?),
        (None, Some(path)) => Some(read_token(path)?),
        (None, None) => None,
    };
    let timeout = secs(
        "judge.origin_timeout_secs",
        raw.origin_timeout_secs
            .unwrap_or(DEFAULT_ORIGIN_TIMEOUT_SECS),
        1.0,
        3600.0,
    )?;
    let Some(url) = &raw.origin_url else {
        if token.is_some() {
            return Err(invalid(
                "judge.origin_url",
                "must be set when an origin token is",
            ));
        }
        return Ok(None);
    };
    let url = UrlTemplate::parse(url).map_err(|e| invalid("judge.origin_url", e))?;
    Ok(Some(OriginConfig {
        url,
        token,
        timeout,
    }))
}

/// A token goes into an HTTP header: 1 to 4096 visible ASCII characters.
fn check_token(setting: &'static str, token: String) -> Result<Secret, JudgeConfigError> {
    if token.is_empty() || token.len() > 4096 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            setting,
            "must be 1 to 4096 visible ASCII characters (no spaces)",
        ));
    }
    Ok(Secret::new(token))
}

/// The first line of the token file, without its line end.
fn read_token(path: &Path) -> Result<Secret, JudgeConfigError> {
    const SETTING: &str = "judge.origin_token_file";
    if !path.is_absolute() {
        return Err(invalid(SETTING, "must be an absolute path"));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(SETTING, format!("cannot read {}: {e}", path.display())))?;
    let line = text.lines().next().unwrap_or_default().to_owned();
    check_token(SETTING, line)
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Defaults and validation.
    use super::*;

    fn parse(text: &str, slots: usize) -> Result<JudgeConfig, JudgeConfigError> {
        JudgeConfig::new(toml::from_str::<RawJudge>(text).expect("toml"), slots)
    }

    #[test]
    fn test_defaults() {
        let c = parse("", 6).unwrap();
        assert_eq!(
            c,
            JudgeConfig {
                origin: None,
                archive: ArchiveLimits {
                    max_bytes: 256 << 20,
                    max_cases: 1000,
                },
                testset_cache_max_bytes: 4 << 30,
                parallel_cases: 6,
                result_ttl: Duration::from_secs(86_400),
                wait_max: Duration::from_secs(60),
                max_queue: 1000,
            }
        );
        assert_eq!(parse("parallel_cases = 0", 3).unwrap().parallel_cases, 3);
        // A bigger archive cap lifts the default store cap with it.
        let c = parse("max_testset_bytes = 8589934592", 1).unwrap();
        assert_eq!(c.testset_cache_max_bytes, 8 << 30);
    }

    #[test]
    fn test_every_setting() {
        let c = parse(
            "origin_url = \"http://site:8080/t/{problem}/{version}.tgz\"\n\
             origin_token = \"abc.DEF-123\"\norigin_timeout_secs = 30\n\
             max_testset_bytes = 1048576\nmax_cases = 50\ntestset_cache_max_bytes = 2097152\n\
             parallel_cases = 2\nresult_ttl_secs = 3600\nwait_max_secs = 2.5\nmax_queue = 10\n",
            4,
        )
        .unwrap();
        let o = c.origin.unwrap();
        assert_eq!(o.url.as_str(), "http://site:8080/t/{problem}/{version}.tgz");
        assert_eq!(o.token.unwrap().expose(), "abc.DEF-123");
        assert_eq!(o.timeout, Duration::from_secs(30));
        assert_eq!(c.archive.max_bytes, 1 << 20);
        assert_eq!(c.archive.max_cases, 50);
        assert_eq!(c.testset_cache_max_bytes, 2 << 20);
        assert_eq!(c.parallel_cases, 2);
        assert_eq!(c.result_ttl, Duration::from_secs(3600));
        assert_eq!(c.wait_max, Duration::from_millis(2500));
        assert_eq!(c.max_queue, 10);
    }

    #[test]
    fn test_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "from-a-file\n").unwrap();
        let text = format!(
            "origin_url = \"http://o/{{problem}}/{{version}}\"\norigin_token_file = {:?}\n",
            path.display().to_string()
        );
        let c = parse(&text, 1).unwrap();
        assert_eq!(c.origin.unwrap().token.unwrap().expose(), "from-a-file");
        // Errors name the setting and never show the token.
        std::fs::write(&path, "has space\n").unwrap();
        let e = parse(&text, 1).unwrap_err();
        assert_eq!(e.setting, "judge.origin_token_file");
        assert!(!e.to_string().contains("has space"));
        let missing = text.replace("token\"", "nope\"");
        let e = parse(&missing, 1).unwrap_err();
        assert_eq!(e.setting, "judge.origin_token_file");
        assert!(e.to_string().contains("cannot read"));
    }

    #[test]
    fn test_invalid_values_name_the_setting() {
        let url = "origin_url = \"http://o/{problem}/{version}\"\n";
        for (text, setting) in [
            (
                "origin_url = \"https://o/{problem}/{version}\"",
                "judge.origin_url",
            ),
            ("origin_url = \"http://o/{problem}\"", "judge.origin_url"),
            ("origin_token = \"abc\"", "judge.origin_url"),
            (&format!("{url}origin_token = \"\""), "judge.origin_token"),
            (
                &format!("{url}origin_token = \"a b\""),
                "judge.origin_token",
            ),
            (
                &format!("{url}origin_token = \"a\"\norigin_token_file = \"/t\""),
                "judge.origin_token_file",
            ),
            (
                &format!("{url}origin_token_file = \"relative\""),
                "judge.origin_token_file",
            ),
            (
                &format!("{url}origin_timeout_secs = 0"),
                "judge.origin_timeout_secs",
            ),
            ("max_testset_bytes = 10", "judge.max_testset_bytes"),
            ("max_cases = 0", "judge.max_cases"),
            ("max_cases = 100001", "judge.max_cases"),
            (
                "max_testset_bytes = 2048\ntestset_cache_max_bytes = 1024",
                "judge.testset_cache_max_bytes",
            ),
            ("parallel_cases = 5", "judge.parallel_cases"),
            ("result_ttl_secs = 1", "judge.result_ttl_secs"),
            ("wait_max_secs = -1", "judge.wait_max_secs"),
            ("wait_max_secs = 1e9", "judge.wait_max_secs"),
            ("max_queue = 0", "judge.max_queue"),
        ] {
            match parse(text, 4) {
                Err(e) => {
                    assert_eq!(e.setting, setting, "{text}");
                    assert!(e.to_string().starts_with(&format!("setting `{setting}`: ")));
                }
                Ok(c) => panic!("{text}: expected invalid {setting}, got {c:?}"),
            }
        }
    }

    #[test]
    fn test_unknown_setting_rejected() {
        let e = toml::from_str::<RawJudge>("orign_url = \"x\"").unwrap_err();
        assert!(e.to_string().contains("orign_url"));
    }

    #[test]
    fn test_docs_list_every_setting() {
        let err = toml::from_str::<RawJudge>("no_such_setting = 1").unwrap_err();
        let keys = crate::judge::problem::tests::accepted_keys(err.message());
        assert_eq!(keys.len(), 11, "{keys:?}");
        let doc = include_str!("../../../docs/judge.md");
        let section = &doc[doc.find("## Configuration").unwrap()..];
        for k in keys {
            assert!(
                section.contains(&format!("| `{k}` |")),
                "docs/judge.md lacks `{k}`"
            );
        }
    }

    #[test]
    fn test_documented_example_parses() {
        // The `[judge]` example in docs/judge.md is a valid section.
        let doc = include_str!("../../../docs/judge.md");
        let start = doc
            .find("```toml\n[judge]\n")
            .expect("docs/judge.md has a [judge] example");
        let body = &doc[start + "```toml\n[judge]\n".len()..];
        let example = &body[..body.find("```").expect("closed code block")];
        let c = parse(example, 8).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.origin.is_some());
    }
}
