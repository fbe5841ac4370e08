//! `problem.toml`, the optional settings file of a test-set archive (docs/judge.md, "problem.toml").
//!
//! Owns: its keys, their defaults and their checks; the `Limits` a test set sets.
//!
//! Must not: read files (it parses text handed to it) or apply the limits (the scheduler clamps
//! them to the language profile's maxima).
//!
//! Keys (all optional):
//! - `compare`: `"text"`, `"token"` (default) or `"float"`.
//! - `case_sensitive`: default `true`; `false` compares tokens ignoring ASCII case (token and
//!   float modes only).
//! - `float_abs_eps`: default `1e-6`; `float_rel_eps`: no default (off). Float mode only.
//! - `cputime`: seconds of CPU per case, fractional allowed; `memorylimit`: MB; `output_limit`:
//!   bytes of stdout per case. Unset: the submission's or the language's defaults apply.
//! - `hide_diff`: default `false`; `true` leaves the difference out of WA/PE messages.

use serde::{Deserialize, Serialize};

use super::compare::{CompareMode, CompareSpec, DEFAULT_FLOAT_ABS_EPS};

/// Largest `cputime`, in seconds.
pub const MAX_CPUTIME_SECS: f64 = 3600.0;
/// Largest `memorylimit`, in MB (1 TiB).
pub const MAX_MEMORYLIMIT_MB: u64 = 1 << 20;
/// Largest `output_limit`, in bytes (1 GiB).
pub const MAX_OUTPUT_LIMIT_BYTES: u64 = 1 << 30;

/// A `problem.toml` that cannot be used. The message names the key (or the line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProblemError {
    #[error("problem.toml line {line}: {message}")]
    Parse { line: usize, message: String },
    #[error("problem.toml: `{key}` {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ProblemError {
    ProblemError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// The limits a test set sets for each of its cases. `None`: not set by the test set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Seconds of CPU time per case.
    pub cputime: Option<f64>,
    /// MB of memory per case.
    pub memorylimit: Option<u64>,
    /// Bytes of stdout per case; more is OLE.
    pub output_limit: Option<u64>,
}

/// A parsed and checked `problem.toml` (all defaults when the archive has none).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Problem {
    pub compare: CompareSpec,
    pub limits: Limits,
}

/// `problem.toml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProblem {
    compare: Option<CompareMode>,
    case_sensitive: Option<bool>,
    float_abs_eps: Option<f64>,
    float_rel_eps: Option<f64>,
    cputime: Option<f64>,
    memorylimit: Option<u64>,
    output_limit: Option<u64>,
    hide_diff: Option<bool>,
}

impl Problem {
    /// Parses and checks the text of a `problem.toml`.
    pub fn parse(text: &str) -> Result<Problem, ProblemError> {
        let raw: RawProblem = toml::from_str(text).map_err(|e| ProblemError::Parse {
            line: e.span().map_or(1, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            }),
            message: e.message().to_owned(),
        })?;
        Problem::try_from(raw)
    }
}

fn non_negative(key: &'static str, v: Option<f64>) -> Result<Option<f64>, ProblemError> {
    match v {
        Some(x) if !(x.is_finite() && x >= 0.0) => {
            Err(invalid(key, "must be a finite number of at least 0"))
        }
        v => Ok(v),
    }
}

impl TryFrom<RawProblem> for Problem {
    type Error = ProblemError;

    fn try_from(raw: RawProblem) -> Result<Problem, ProblemError> {
        let mode = raw.compare.unwrap_or_default();
        let case_sensitive = raw.case_sensitive.unwrap_or(true);
        if !case_sensitive && mode == CompareMode::Text {
            return Err(invalid(
                "case_sensitive",
                "must not be false with compare = \"text\" (text is byte-exact)",
            ));
        }
        let float_abs_eps = non_negative("float_abs_eps", raw.float_abs_eps)?;
        let float_rel_eps = non_negative("float_rel_eps", raw.float_rel_eps)?;
        if mode != CompareMode::Float {
            for (key, set) in [
                ("float_abs_eps", float_abs_eps.is_some()),
                ("float_rel_eps", float_rel_eps.is_some()),
            ] {
                if set {
                    return Err(invalid(key, "applies only to compare = \"float\""));
                }
            }
        }
        if let Some(t) = raw.cputime
            && !(t.is_finite() && t > 0.0 && t <= MAX_CPUTIME_SECS)
        {
            return Err(invalid(
                "cputime",
                format!("must be more than 0 and at most {MAX_CPUTIME_SECS} seconds"),
            ));
        }
        if let Some(m) = raw.memorylimit
            && !(1..=MAX_MEMORYLIMIT_MB).contains(&m)
        {
            return Err(invalid(
                "memorylimit",
                format!("must be between 1 and {MAX_MEMORYLIMIT_MB} MB"),
            ));
        }
        if let Some(o) = raw.output_limit
            && !(1..=MAX_OUTPUT_LIMIT_BYTES).contains(&o)
        {
            return Err(invalid(
                "output_limit",
                format!("must be between 1 and {MAX_OUTPUT_LIMIT_BYTES} bytes"),
            ));
        }
        Ok(Problem {
            compare: CompareSpec {
                mode,
                case_sensitive,
                float_abs_eps: float_abs_eps.unwrap_or(DEFAULT_FLOAT_ABS_EPS),
                float_rel_eps,
                hide_diff: raw.hide_diff.unwrap_or(false),
            },
            limits: Limits {
                cputime: raw.cputime,
                memorylimit: raw.memorylimit,
                output_limit: raw.output_limit,
            },
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Tier: unit (docs/testing.md). Defaults, every key, and errors that name the key.
    use super::*;

    #[test]
    fn test_empty_file_is_all_defaults() {
        let p = Problem::parse("").unwrap();
        assert_eq!(p, Problem::default());
        assert_eq!(p.compare, CompareSpec::default());
        assert_eq!(p.compare.mode, CompareMode::Token);
        assert!(p.compare.case_sensitive);
        assert_eq!(p.compare.float_abs_eps, 1e-6);
        assert_eq!(p.limits, Limits::default());
    }

    #[test]
    fn test_every_key() {
        let p = Problem::parse(
            "compare = \"float\"\ncase_sensitive = false\nfloat_abs_eps = 1e-4\n\
             float_rel_eps = 1e-9\ncputime = 0.5\nmemorylimit = 256\noutput_limit = 65536\n\
             hide_diff = true\n",
        )
        .unwrap();
        assert_eq!(
            p,
            Problem {
                compare: CompareSpec {
                    mode: CompareMode::Float,
                    case_sensitive: false,
                    float_abs_eps: 1e-4,
                    float_rel_eps: Some(1e-9),
                    hide_diff: true,
                },
                limits: Limits {
                    cputime: Some(0.5),
                    memorylimit: Some(256),
                    output_limit: Some(65536),
                },
            }
        );
        assert_eq!(
            Problem::parse("compare = \"text\"").unwrap().compare.mode,
            CompareMode::Text
        );
        // Whole seconds may be written as an integer.
        assert_eq!(
            Problem::parse("cputime = 2").unwrap().limits.cputime,
            Some(2.0)
        );
    }

    #[test]
    fn test_invalid_values_name_the_key() {
        for (text, key) in [
            (
                "compare = \"text\"\ncase_sensitive = false",
                "case_sensitive",
            ),
            ("float_abs_eps = 0.1", "float_abs_eps"),
            ("compare = \"text\"\nfloat_rel_eps = 0.1", "float_rel_eps"),
            ("compare = \"float\"\nfloat_abs_eps = -1.0", "float_abs_eps"),
            ("compare = \"float\"\nfloat_rel_eps = nan", "float_rel_eps"),
            ("compare = \"float\"\nfloat_abs_eps = inf", "float_abs_eps"),
            ("cputime = 0", "cputime"),
            ("cputime = -1.5", "cputime"),
            ("cputime = 3601", "cputime"),
            ("memorylimit = 0", "memorylimit"),
            ("memorylimit = 2000000", "memorylimit"),
            ("output_limit = 0", "output_limit"),
            ("output_limit = 2000000000", "output_limit"),
        ] {
            match Problem::parse(text) {
                Err(e @ ProblemError::Invalid { key: k, .. }) => {
                    assert_eq!(k, key, "{text}");
                    assert!(e.to_string().contains(&format!("`{key}`")), "{e}");
                }
                other => panic!("{text}: expected invalid {key}, got {other:?}"),
            }
        }
    }

    /// The keys serde accepts, from its "expected one of" message (so no list is kept by hand).
    pub(crate) fn accepted_keys(err: &str) -> Vec<String> {
        let list = &err[err.find("expected one of").expect("serde lists the fields")..];
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn test_docs_list_every_key() {
        let err = Problem::parse("no_such_key = 1").unwrap_err().to_string();
        let keys = accepted_keys(&err);
        assert_eq!(keys.len(), 8, "{keys:?}");
        let doc = include_str!("../../../docs/judge.md");
        let section =
            &doc[doc.find("## problem.toml").unwrap()..doc.find("## Compare modes").unwrap()];
        for k in keys {
            assert!(
                section.contains(&format!("| `{k}` |")),
                "docs/judge.md lacks `{k}`"
            );
        }
        // The example in the section is valid.
        let example = &section[section.find("```toml\n").unwrap() + 8..];
        let example = &example[..example.find("```").unwrap()];
        assert_eq!(
            Problem::parse(example).unwrap().compare.mode,
            CompareMode::Float
        );
    }

    #[test]
    fn test_parse_errors_name_the_key_or_line() {
        for (text, needle) in [
            ("comapre = \"float\"", "comapre"),
            ("compare = \"exact\"", "exact"),
            ("\n\ncase_sensitive = \"no\"", "line 3"),
            ("memorylimit = 1.5", "line 1"),
            ("memorylimit = -5", "line 1"),
            ("[limits]\ncputime = 1", "limits"),
            ("compare = ", "line 1"),
        ] {
            let e = Problem::parse(text).unwrap_err();
            assert!(matches!(e, ProblemError::Parse { .. }), "{text}: {e:?}");
            let msg = e.to_string();
            assert!(msg.contains(needle), "{text}: {msg}");
            assert!(!msg.contains('\n'), "one line: {msg:?}");
        }
    }
}
