//! The wire form of judge mode's submissions: the request a client (HTTP) or a queue message sends,
//! the result it gets back, and the progress events in between (docs/judge.md, "Submissions").
//! The HTTP API (`POST /judge/v1/submissions`, its `GET` and SSE stream) and queue mode (message
//! bodies, results and events on RabbitMQ) use exactly these types, so the two cannot drift.
//!
//! Owns: parsing and validating a submission request (errors name the field), the result object,
//! the event kinds and their names. Must not: judge anything, know about HTTP or AMQP.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::testset::{TestsetId, is_valid_name};
use super::verdict::Verdict;

/// Longest accepted `id` (and `problem`/`version`, as `TestsetId` checks).
pub const MAX_ID_LEN: usize = 64;

/// A request field that is missing or wrong: the field's name and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

fn field_error(field: &'static str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field,
        reason: reason.into(),
    }
}

/// Limits a submission may ask for; each is clamped by the language profile like a Jobe run's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestedLimits {
    /// CPU seconds per case (fractional allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cputime: Option<f64>,
    /// Memory per case, MB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memorylimit: Option<f64>,
}

/// A submission as a client or a queue message sends it, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionRequest {
    pub testset: TestsetId,
    /// Lower-cased, as Jobe's `language_id`; whether it is served is checked by the caller.
    pub language_id: String,
    pub sourcecode: String,
    /// `None`: the profile's default name.
    pub sourcefilename: Option<String>,
    pub limits: RequestedLimits,
    pub stop_on_first_failure: bool,
    /// Given by the client: makes the submission idempotent (same id → the same submission).
    pub id: Option<String>,
}

/// Whether `id` is a valid submission id: 1–64 chars of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn is_valid_id(id: &str) -> bool {
    is_valid_name(id)
}

impl SubmissionRequest {
    /// Parses a request body. Unknown keys are ignored (clients and queue publishers of other
    /// versions may add some); every error names the field.
    pub fn from_json(body: &[u8]) -> Result<SubmissionRequest, FieldError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| field_error("body", format!("not valid JSON ({e})")))?;
        let Value::Object(obj) = value else {
            return Err(field_error("body", "must be a JSON object"));
        };
        SubmissionRequest::from_object(&obj)
    }

    /// As [`from_json`](Self::from_json), from an object already parsed.
    pub fn from_object(obj: &Map<String, Value>) -> Result<SubmissionRequest, FieldError> {
        let problem = required_str(obj, "problem")?;
        let version = required_str(obj, "version")?;
        let testset = TestsetId::new(problem, version).map_err(|_| {
            let field = if is_valid_name(problem) {
                "version"
            } else {
                "problem"
            };
            field_error(field, "must be 1-64 characters of [A-Za-z0-9._-]")
        })?;
        let language_id = required_str(obj, "language_id")?.to_lowercase();
        if language_id.is_empty() {
            return Err(field_error("language_id", "must not be empty"));
        }
        let sourcecode = required_str(obj, "sourcecode")?.to_owned();
        if sourcecode.contains('\0') {
            return Err(field_error("sourcecode", "must not contain NUL"));
        }
        let sourcefilename = match obj.get("sourcefilename") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(field_error("sourcefilename", "must be a string")),
        };
        let limits = match obj.get("limits") {
            None | Some(Value::Null) => RequestedLimits::default(),
            Some(Value::Object(l)) => RequestedLimits {
                cputime: positive_number(l, "cputime", "limits.cputime")?,
                memorylimit: positive_number(l, "memorylimit", "limits.memorylimit")?,
            },
            Some(_) => return Err(field_error("limits", "must be an object")),
        };
        let stop_on_first_failure = match obj.get("stop_on_first_failure") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(field_error(
                    "stop_on_first_failure",
                    "must be true or false",
                ));
            }
        };
        let id = match obj.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if is_valid_id(s) => Some(s.clone()),
            Some(_) => {
                return Err(field_error(
                    "id",
                    "must be 1-64 characters of [A-Za-z0-9._-]",
                ));
            }
        };
        Ok(SubmissionRequest {
            testset,
            language_id,
            sourcecode,
            sourcefilename,
            limits,
            stop_on_first_failure,
            id,
        })
    }
}

impl SubmissionRequest {
    /// The request as a JSON object that [`from_object`](Self::from_object) reads back to the
    /// same request (the journal keeps it; queue mode may publish it).
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("problem".into(), self.testset.problem().into());
        obj.insert("version".into(), self.testset.version().into());
        obj.insert("language_id".into(), self.language_id.clone().into());
        obj.insert("sourcecode".into(), self.sourcecode.clone().into());
        if let Some(name) = &self.sourcefilename {
            obj.insert("sourcefilename".into(), name.clone().into());
        }
        let limits = serde_json::to_value(self.limits).expect("plain data serialises");
        obj.insert("limits".into(), limits);
        obj.insert(
            "stop_on_first_failure".into(),
            self.stop_on_first_failure.into(),
        );
        if let Some(id) = &self.id {
            obj.insert("id".into(), id.clone().into());
        }
        Value::Object(obj)
    }
}

fn required_str<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, FieldError> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(field_error(field, "is required")),
        Some(_) => Err(field_error(field, "must be a string")),
    }
}

fn positive_number(
    obj: &Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<Option<f64>, FieldError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
            _ => Err(field_error(field, "must be a positive number")),
        },
        Some(_) => Err(field_error(field, "must be a number")),
    }
}

/// Where a submission is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Compiling,
    Running,
    Done,
    Cancelled,
}

impl Status {
    /// Whether the submission will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Done | Status::Cancelled)
    }
}

/// The compile step of a submission (interpreted languages without a check step: AC, no output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompileResult {
    /// AC, CE, or IE (the compile step could not run).
    pub verdict: Verdict,
    /// What the compiler said (Jobe's `cmpinfo`), empty when it said nothing.
    pub output: String,
}

/// One test case's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// 0-based position in the test set's case order.
    pub index: usize,
    pub name: String,
    pub verdict: Verdict,
    pub cpu_ms: u64,
    pub wall_ms: u64,
    pub memory_kb: u64,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Why, for every verdict but AC and SK: the first difference (WA/PE, unless the test set
    /// hides it), the exit code or signal (RE), the syscall (SV), which limit (TLE), the fault (IE).
    pub message: Option<String>,
}

/// Totals over the cases that ran: maxima, not averages (a judge's limits bind the worst case).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub passed: usize,
    pub total: usize,
    pub max_cpu_ms: u64,
    pub max_wall_ms: u64,
    pub max_memory_kb: u64,
}

impl Summary {
    /// The summary of `cases` out of `total` (cases not yet reported count in `total` only).
    pub fn of(cases: &[CaseResult], total: usize) -> Summary {
        let ran = cases.iter().filter(|c| c.verdict != Verdict::Sk);
        Summary {
            passed: cases.iter().filter(|c| c.verdict.is_accepted()).count(),
            total,
            max_cpu_ms: ran.clone().map(|c| c.cpu_ms).max().unwrap_or(0),
            max_wall_ms: ran.clone().map(|c| c.wall_ms).max().unwrap_or(0),
            max_memory_kb: ran.map(|c| c.memory_kb).max().unwrap_or(0),
        }
    }
}

/// A submission as `GET /judge/v1/submissions/{id}` shows it, and the final result queue mode
/// publishes. While it runs, `verdict` is `None` and `cases` holds what finished, in case order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmissionResult {
    pub id: String,
    pub problem: String,
    pub version: String,
    /// The manifest digest of the test set judged against (`None` until it is known).
    pub testset_sha256: Option<String>,
    pub language_id: String,
    pub status: Status,
    /// The overall verdict: CE if compilation failed, else the first non-AC case in case order,
    /// else AC. `None` until done (a cancelled submission keeps what it had, or `None`).
    pub verdict: Option<Verdict>,
    pub compile: Option<CompileResult>,
    pub cases: Vec<CaseResult>,
    pub summary: Summary,
}

/// What `POST /judge/v1/submissions` answers with 202.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accepted {
    pub id: String,
    pub status: Status,
    pub links: Links,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Links {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
}

/// A progress event: an SSE event of the HTTP API, a message on `runner.events` in queue mode.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The status changed (queued → compiling → running → done/cancelled).
    Status(Status),
    /// The compile step finished.
    Compile(CompileResult),
    /// A case finished (released in case order).
    Case(CaseResult),
    /// The submission ended: the full result. Always the last event.
    Done(Box<SubmissionResult>),
}

impl Event {
    /// Every event name, in the order a submission's events can come.
    pub const NAMES: [&'static str; 4] = ["status", "compile", "case", "done"];

    /// The event's name: the SSE `event:` field and the last part of its queue routing key.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Status(_) => Event::NAMES[0],
            Event::Compile(_) => Event::NAMES[1],
            Event::Case(_) => Event::NAMES[2],
            Event::Done(_) => Event::NAMES[3],
        }
    }

    /// The event's data as one line of JSON (the SSE `data:` field, the queue message body).
    pub fn data(&self) -> String {
        let v = match self {
            Event::Status(s) => serde_json::json!({ "status": s }),
            Event::Compile(c) => serde_json::to_value(c).expect("a compile result serialises"),
            Event::Case(c) => serde_json::to_value(c).expect("a case result serialises"),
            Event::Done(r) => serde_json::to_value(r).expect("a result serialises"),
        };
        v.to_string()
    }

    /// Reads an event back from its name and data (clients, tests, the journal).
    pub fn parse(name: &str, data: &str) -> Option<Event> {
        Some(match name {
            "status" => {
                #[derive(Deserialize)]
                struct S {
                    status: Status,
                }
                Event::Status(serde_json::from_str::<S>(data).ok()?.status)
            }
            "compile" => Event::Compile(serde_json::from_str(data).ok()?),
            "case" => Event::Case(serde_json::from_str(data).ok()?),
            "done" => Event::Done(Box::new(serde_json::from_str(data).ok()?)),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Request parsing with errors that name the field, and the
    //! event round trip.
    use super::*;

    fn parse(v: Value) -> Result<SubmissionRequest, FieldError> {
        SubmissionRequest::from_json(v.to_string().as_bytes())
    }

    fn minimal() -> Value {
        serde_json::json!({
            "problem": "sum", "version": "v1", "language_id": "C", "sourcecode": "int main(){}"
        })
    }

    #[test]
    fn test_minimal_request_and_defaults() {
        let r = parse(minimal()).unwrap();
        assert_eq!(r.testset.problem(), "sum");
        assert_eq!(r.testset.version(), "v1");
        assert_eq!(r.language_id, "c");
        assert_eq!(r.sourcefilename, None);
        assert_eq!(r.limits, RequestedLimits::default());
        assert!(!r.stop_on_first_failure);
        assert_eq!(r.id, None);
    }

    #[test]
    fn test_every_field() {
        let mut v = minimal();
        v["sourcefilename"] = "main.c".into();
        v["limits"] = serde_json::json!({"cputime": 0.5, "memorylimit": 64});
        v["stop_on_first_failure"] = true.into();
        v["id"] = "sub-1".into();
        v["unknown_future_key"] = 1.into();
        let r = parse(v).unwrap();
        assert_eq!(r.sourcefilename.as_deref(), Some("main.c"));
        assert_eq!(r.limits.cputime, Some(0.5));
        assert_eq!(r.limits.memorylimit, Some(64.0));
        assert!(r.stop_on_first_failure);
        assert_eq!(r.id.as_deref(), Some("sub-1"));
    }

    #[test]
    fn test_to_json_round_trips() {
        let mut v = minimal();
        v["sourcefilename"] = "main.c".into();
        v["limits"] = serde_json::json!({"cputime": 0.5});
        v["stop_on_first_failure"] = true.into();
        v["id"] = "sub-1".into();
        for req in [parse(minimal()).unwrap(), parse(v).unwrap()] {
            let Value::Object(obj) = req.to_json() else {
                panic!("an object")
            };
            assert_eq!(SubmissionRequest::from_object(&obj).unwrap(), req);
        }
    }

    #[test]
    fn test_errors_name_the_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("problem", Value::Null, "problem"),
            ("problem", "../x".into(), "problem"),
            ("version", "".into(), "version"),
            ("version", 3.into(), "version"),
            ("language_id", Value::Null, "language_id"),
            ("sourcecode", serde_json::json!([]), "sourcecode"),
            ("sourcecode", "a\0b".into(), "sourcecode"),
            ("sourcefilename", 1.into(), "sourcefilename"),
            ("limits", "x".into(), "limits"),
            (
                "limits",
                serde_json::json!({"cputime": -1}),
                "limits.cputime",
            ),
            (
                "limits",
                serde_json::json!({"memorylimit": "9"}),
                "limits.memorylimit",
            ),
            (
                "stop_on_first_failure",
                "yes".into(),
                "stop_on_first_failure",
            ),
            ("id", "a/b".into(), "id"),
            ("id", "x".repeat(65).into(), "id"),
        ];
        for (key, value, field) in cases {
            let mut v = minimal();
            v[key] = value.clone();
            let err = parse(v).unwrap_err();
            assert_eq!(err.field, field, "{key} = {value}: {err}");
        }
        for body in [&b"not json"[..], b"[1]", b"\"s\""] {
            assert_eq!(
                SubmissionRequest::from_json(body).unwrap_err().field,
                "body"
            );
        }
    }

    #[test]
    fn test_summary_reports_maxima_of_cases_that_ran() {
        let case = |index, verdict, cpu_ms, memory_kb| CaseResult {
            index,
            name: format!("{index}"),
            verdict,
            cpu_ms,
            wall_ms: cpu_ms + 1,
            memory_kb,
            exit_code: Some(0),
            signal: None,
            message: None,
        };
        let cases = [
            case(0, Verdict::Ac, 10, 500),
            case(1, Verdict::Wa, 30, 200),
            case(2, Verdict::Sk, 0, 0),
        ];
        let s = Summary::of(&cases, 4);
        assert_eq!(
            s,
            Summary {
                passed: 1,
                total: 4,
                max_cpu_ms: 30,
                max_wall_ms: 31,
                max_memory_kb: 500
            }
        );
    }

    #[test]
    fn test_events_round_trip_by_name() {
        let result = SubmissionResult {
            id: "s".into(),
            problem: "p".into(),
            version: "v".into(),
            testset_sha256: Some("ab".into()),
            language_id: "c".into(),
            status: Status::Done,
            verdict: Some(Verdict::Ac),
            compile: Some(CompileResult {
                verdict: Verdict::Ac,
                output: String::new(),
            }),
            cases: vec![],
            summary: Summary::default(),
        };
        let events = [
            Event::Status(Status::Running),
            Event::Compile(CompileResult {
                verdict: Verdict::Ce,
                output: "prog.c:1: error".into(),
            }),
            Event::Case(CaseResult {
                index: 0,
                name: "1".into(),
                verdict: Verdict::Tle,
                cpu_ms: 1000,
                wall_ms: 1002,
                memory_kb: 3000,
                exit_code: None,
                signal: Some(9),
                message: Some("CPU time limit".into()),
            }),
            Event::Done(Box::new(result)),
        ];
        for (e, name) in events.iter().zip(Event::NAMES) {
            assert_eq!(e.name(), name);
            assert!(!e.data().contains('\n'), "one SSE data line");
            assert_eq!(Event::parse(e.name(), &e.data()).as_ref(), Some(e));
        }
        assert_eq!(Event::parse("nope", "{}"), None);
    }
}
