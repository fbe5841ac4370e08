//! What a `RunResult` looks like on Jobe's wire, for both sides of it: `api` encodes results for
//! its clients, `peer` decodes the results of runs it forwarded to a sibling runner. One type,
//! [`RunResponse`], serves both, so the encoder and the decoder cannot drift apart.
//!
//! Owns: the result object (docs/jobe-api.md §1.8) and its opt-in `details`, Jobe's string cleaning
//! (`clean`), the text of the unknown-language refusal (the one 400 a client can act on by
//! trying another runner), and Jobe's base path.
//!
//! Must not: parse run requests (that is `api::wire`, with PHP's coercion rules), or do I/O.

use serde::{Deserialize, Serialize};

use super::{Outcome, RunResult, Usage};

/// The path under which Jobe's REST API lives.
pub const BASE_PATH: &str = "/jobe/index.php/restapi";

/// The body of a 200 from `runs`: exactly these five keys, in this order (§1.8); a sixth,
/// `details`, only when the client opted in (`runner_details`, not Jobe).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResponse {
    /// Jobe: `null` normally, the string `"0"` for overload.
    pub run_id: Option<String>,
    pub outcome: Outcome,
    pub cmpinfo: String,
    pub stdout: String,
    pub stderr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<RunDetails>,
}

/// The opt-in rich result: what the measured step (the run step; the compile step for outcome
/// 11) used, as the kernel measured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetails {
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
    pub peak_memory_bytes: u64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// When the daemon killed the step for a limit (Unix seconds); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed_at_unix: Option<f64>,
}

impl RunResponse {
    /// `r` with the `details` key (the opt-in rich result).
    pub fn with_details(r: &RunResult) -> Self {
        let u = &r.usage;
        RunResponse {
            details: Some(RunDetails {
                cpu_seconds: u.cpu_secs,
                wall_seconds: u.wall_secs,
                peak_memory_bytes: u.peak_memory_bytes,
                exit_code: u.exit_code,
                signal: u.signal,
                killed_at_unix: u.killed_at_unix,
            }),
            ..RunResponse::from(r)
        }
    }

    /// Back into a `RunResult` (a peer's answer). The strings are already cleaned UTF-8, which
    /// `clean` leaves unchanged, so encoding the result again gives the same text. Without
    /// `details` the usage is unknown and left zero.
    pub fn into_result(self) -> RunResult {
        let usage = self.details.map_or_else(Usage::default, |d| Usage {
            cpu_secs: d.cpu_seconds,
            wall_secs: d.wall_seconds,
            peak_memory_bytes: d.peak_memory_bytes,
            exit_code: d.exit_code,
            signal: d.signal,
            killed_at_unix: d.killed_at_unix,
        });
        RunResult {
            outcome: self.outcome,
            cmpinfo: self.cmpinfo.into_bytes(),
            stdout: self.stdout.into_bytes(),
            stderr: self.stderr.into_bytes(),
            usage,
        }
    }
}

impl From<&RunResult> for RunResponse {
    fn from(r: &RunResult) -> Self {
        RunResponse {
            run_id: (r.outcome == Outcome::ServerOverload).then(|| "0".to_owned()),
            outcome: r.outcome,
            cmpinfo: clean(&r.cmpinfo),
            stdout: clean(&r.stdout),
            stderr: clean(&r.stderr),
            details: None,
        }
    }
}

/// Jobe's `ResultObject::clean`: valid UTF-8 unchanged; otherwise every byte < 0x20 except
/// `\n` `\r` `\t`, and every byte > 0x7E, becomes the four characters `\xhh` (lower-case hex).
pub fn clean(bytes: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
    for &b in bytes {
        if (b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t')) || b > 0x7E {
            out.push_str(&format!("\\x{b:02x}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

const UNKNOWN_LANGUAGE_PREFIX: &str = "Language '";
const UNKNOWN_LANGUAGE_SUFFIX: &str = "' is not known";

/// The 400 message of a run whose language is not served (Jobe's text).
pub fn unknown_language(id: &str) -> String {
    format!("{UNKNOWN_LANGUAGE_PREFIX}{id}{UNKNOWN_LANGUAGE_SUFFIX}")
}

/// The language id of an [`unknown_language`] message; `None` for any other 400 message.
pub fn unknown_language_in(message: &str) -> Option<&str> {
    message
        .strip_prefix(UNKNOWN_LANGUAGE_PREFIX)?
        .strip_suffix(UNKNOWN_LANGUAGE_SUFFIX)
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The result object's exact text, and encode → decode over every
    //! outcome.
    use super::*;

    fn result(outcome: Outcome) -> RunResult {
        RunResult {
            outcome,
            cmpinfo: b"warn\n".to_vec(),
            stdout: "é/ü\n".as_bytes().to_vec(),
            stderr: b"\xffx".to_vec(),
            usage: Usage {
                cpu_secs: 0.25,
                wall_secs: 0.5,
                peak_memory_bytes: 4096,
                exit_code: Some(1),
                signal: None,
                killed_at_unix: Some(1.5e9),
            },
        }
    }

    #[test]
    fn test_clean_encoding() {
        assert_eq!(clean(b"Hello\n"), "Hello\n");
        assert_eq!(clean("héllo\u{1}".as_bytes()), "héllo\u{1}");
        // §1.8 observed example.
        assert_eq!(
            clean(b"A\x01\tB\r\n\xff\xc3(\n"),
            "A\\x01\tB\r\n\\xff\\xc3(\n"
        );
        assert_eq!(clean(b"\x7f\x80"), "\\x7f\\x80");
        assert_eq!(clean(b""), "");
    }

    #[test]
    fn test_result_json_shape() {
        let mut r = RunResult::overload();
        let j = serde_json::to_string(&RunResponse::from(&r)).unwrap();
        assert_eq!(
            j,
            r#"{"run_id":"0","outcome":21,"cmpinfo":"","stdout":"","stderr":""}"#
        );
        r.outcome = Outcome::Success;
        r.stdout = "é/ü\n".as_bytes().to_vec();
        let j = serde_json::to_string(&RunResponse::from(&r)).unwrap();
        assert_eq!(
            j,
            "{\"run_id\":null,\"outcome\":15,\"cmpinfo\":\"\",\"stdout\":\"é/ü\\n\",\"stderr\":\"\"}"
        );
        r.outcome = Outcome::RuntimeError;
        r.stdout.clear();
        r.usage = Usage {
            cpu_secs: 0.25,
            wall_secs: 0.5,
            peak_memory_bytes: 4096,
            exit_code: None,
            signal: Some(11),
            killed_at_unix: None,
        };
        let j = serde_json::to_string(&RunResponse::with_details(&r)).unwrap();
        assert_eq!(
            j,
            r#"{"run_id":null,"outcome":12,"cmpinfo":"","stdout":"","stderr":"","details":{"cpu_seconds":0.25,"wall_seconds":0.5,"peak_memory_bytes":4096,"exit_code":null,"signal":11}}"#
        );
    }

    /// What one runner encodes, another decodes to the same result (with `details`), and
    /// encoding that again gives the same bytes (without: the same five keys).
    #[test]
    fn test_result_round_trip_every_outcome() {
        for o in Outcome::ALL {
            let r = result(o);
            let text = serde_json::to_vec(&RunResponse::with_details(&r)).unwrap();
            let back = serde_json::from_slice::<RunResponse>(&text)
                .unwrap()
                .into_result();
            let mut want = r.clone();
            want.stderr = b"\\xffx".to_vec(); // not UTF-8: cleaned once, by the first encoding
            assert_eq!(back, want, "{o}");
            let again = serde_json::to_vec(&RunResponse::with_details(&back)).unwrap();
            assert_eq!(again, text, "{o}");

            let plain = serde_json::to_vec(&RunResponse::from(&r)).unwrap();
            let back = serde_json::from_slice::<RunResponse>(&plain)
                .unwrap()
                .into_result();
            assert_eq!((back.outcome, back.usage), (o, Usage::default()));
            assert_eq!(
                serde_json::to_vec(&RunResponse::from(&back)).unwrap(),
                plain
            );
        }
    }

    #[test]
    fn test_decode_refuses_what_no_runner_sends() {
        for body in [
            &br#"{"run_id":null,"outcome":99,"cmpinfo":"","stdout":"","stderr":""}"#[..],
            br#"{"outcome":21}"#,
            b"nope",
            br#""Language 'x' is not known""#,
        ] {
            assert!(serde_json::from_slice::<RunResponse>(body).is_err());
        }
    }

    #[test]
    fn test_unknown_language_round_trip() {
        for id in ["cobol", "", "a'b", "' is not known"] {
            let m = unknown_language(id);
            assert_eq!(unknown_language_in(&m), Some(id), "{m}");
        }
        assert_eq!(unknown_language("cobol"), "Language 'cobol' is not known");
        for other in [
            "Language 'x' is not supported",
            "run_spec is missing the required attribute 'language_id'",
            "",
        ] {
            assert_eq!(unknown_language_in(other), None, "{other}");
        }
    }
}
