//! Tier: http (docs/testing.md). Request robustness, unprivileged (issue 5, "Request robustness").
//!
//! `api::serve` on `127.0.0.1:0` with an executor that plans every job against the shipped
//! profiles (the same validation the real scheduler does before it takes a slot) and answers
//! without running anything. Hostile requests: every run_spec field with wrong types, huge,
//! negative and fractional values and NUL bytes; invalid UTF-8; raw bodies; path traversal in file
//! ids and names; malformed HTTP; slow headers and bodies; a client that never reads; thousands of
//! concurrent connections; the order of key, rate and body checks. Every answer must be a clear
//! 4xx (JSON message, no host path) or a success, never a crash, a hang or a leak. The cases that
//! need real jails are in tests/tests/robust_requests.rs. See docs/robustness.md.

#![allow(
    unused_crate_dependencies,
    reason = "integration test crate uses a subset"
)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use runner::api::{self, ApiConfig, AppState};
use runner::job::{Job, Outcome, RunResult, Usage};
use runner::profile::{PlanConfig, Profile, embedded_profiles};
use runner::sched::{BoxFuture, ExecError, Executor};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::{Resp, Served, parse_response};

const BASE: &str = "/jobe/index.php/restapi";
/// Substrings that would mean a host path or an error chain leaked into a response.
const LEAKS: [&str; 8] = [
    "/tmp",
    "/sys/",
    "/proc",
    "/var/",
    "/work",
    "/home/jobe/runs/",
    "os error",
    "panicked",
];

/// Plans each job against the shipped profile of its language, as `Scheduler` does before it
/// takes a slot, and answers outcome 15 without running anything. Source `big` answers with
/// 32 MiB of stdout (for the send timeout).
struct PlanningExecutor {
    profiles: Vec<Profile>,
    runs: AtomicUsize,
}

impl PlanningExecutor {
    fn new() -> Self {
        PlanningExecutor {
            profiles: embedded_profiles().expect("shipped profiles"),
            runs: AtomicUsize::new(0),
        }
    }
}

impl Executor for PlanningExecutor {
    fn languages(&self) -> Vec<(String, String)> {
        self.profiles
            .iter()
            .map(|p| (p.id.clone(), "1.0".to_owned()))
            .collect()
    }

    fn run(&self, job: Job) -> BoxFuture<'_, Result<RunResult, ExecError>> {
        Box::pin(async move {
            let profile = self
                .profiles
                .iter()
                .find(|p| p.id == job.language)
                .ok_or_else(|| ExecError::UnknownLanguage(job.language.clone()))?;
            let plan = profile
                .plan(&job, &PlanConfig::default(), "/home/jobe/runs/x")
                .map_err(|e| ExecError::BadRequest(e.to_string()))?;
            self.runs.fetch_add(1, Ordering::Relaxed);
            let stdout = if job.source == "big" {
                vec![b'A'; 32 << 20]
            } else {
                format!("{} files", plan.files.len()).into_bytes()
            };
            Ok(RunResult {
                outcome: Outcome::Success,
                cmpinfo: Vec::new(),
                stdout,
                stderr: Vec::new(),
                usage: Usage::default(),
            })
        })
    }
}

struct Server {
    addr: SocketAddr,
    exec: Arc<PlanningExecutor>,
    srv: Served,
    dir: tempfile::TempDir,
}

impl Server {
    async fn start(config: ApiConfig) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let exec = Arc::new(PlanningExecutor::new());
        let state = Arc::new(AppState::new(
            exec.clone(),
            common::cache(dir.path()),
            config,
        ));
        // The daemon's own bind (backlog 4096), as `runner serve` uses.
        let listener = api::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let srv = Served::start(listener, state);
        Server {
            addr: srv.addr,
            exec,
            srv,
            dir,
        }
    }

    /// Shuts down and checks that serving ended cleanly.
    async fn shutdown(self) {
        self.srv.shutdown().await;
    }
}

impl Resp {
    /// The JSON-string message of an error response.
    fn message(&self) -> String {
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::String(m)) => m,
            other => panic!("body is not a JSON string: {other:?} ({:?})", self.text()),
        }
    }
}

/// Writes `raw` on a new connection, then reads the answer to EOF (at most `within`). `None`:
/// the server closed the connection without an answer.
async fn exchange(addr: SocketAddr, raw: &[u8], within: Duration) -> Option<Resp> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before it has read everything: ignore write errors.
    let _ = s.write_all(raw).await;
    let mut out = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut out))
        .await
        .expect("the server answers or closes in time")
        .ok()?;
    parse_response(&out, false)
}

fn http(method: &str, path: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json; charset=utf-8\r\n\
         Connection: close\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// A request head declaring a `len`-byte body, without the body: for bodies the server refuses
/// unread (closing a socket with unread data would reset it and could lose the answer).
fn http_declared(method: &str, path: &str, extra: &str, len: usize) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {len}\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// Bodies over this size are only declared, never sent (see [`http_declared`]).
const OVER_LIMIT: usize = (10 << 20) + 1;

async fn post_body(addr: SocketAddr, body: &[u8]) -> Resp {
    let runs = format!("{BASE}/runs");
    let raw = if body.len() >= OVER_LIMIT {
        http_declared("POST", &runs, "", body.len())
    } else {
        http("POST", &runs, "", body)
    };
    exchange(addr, &raw, Duration::from_secs(20))
        .await
        .expect("an answer")
}

/// Asserts the properties every answer must have; for a 4xx, a JSON content type and a JSON
/// string body naming the problem (empty only for Jobe's framework-style 404 and bad-URI 400).
fn assert_clean(r: &Resp, what: &str) {
    let text = r.text();
    for leak in LEAKS {
        assert!(
            !text.contains(leak),
            "{what}: response leaks {leak:?}: {text}"
        );
    }
    assert!(r.status < 500, "{what}: server error {}: {text}", r.status);
    if r.status >= 400 {
        assert_eq!(
            r.headers.get("content-type").map(String::as_str),
            Some("application/json; charset=UTF-8"),
            "{what}"
        );
        let _ = r.message();
    }
}

fn bounded<F: Future<Output = ()>>(secs: u64, f: F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(secs), f)
            .await
            .expect("test timed out");
    });
}

fn base() -> Value {
    json!({"language_id": "python3", "sourcecode": "print(1)"})
}

/// A field case: `run_spec` = base with `key` set to `value` (`parameters.<p>` sets a parameter),
/// the expected status, and a substring of the expected message ("" for a 200).
struct Case {
    key: String,
    value: Value,
    status: u16,
    needle: &'static str,
}

fn case(key: &str, value: Value, status: u16, needle: &'static str) -> Case {
    Case {
        key: key.to_owned(),
        value,
        status,
        needle,
    }
}

fn field_cases() -> Vec<Case> {
    let huge = "x".repeat(1 << 20);
    let long_name = format!("{}.py", "a".repeat(250));
    let mut c = vec![
        // sourcecode
        case(
            "sourcecode",
            json!(["x"]),
            400,
            "'sourcecode' must be a string",
        ),
        case(
            "sourcecode",
            json!({"a": 1}),
            400,
            "'sourcecode' must be a string",
        ),
        case(
            "sourcecode",
            Value::Null,
            400,
            "missing the required attribute 'sourcecode'",
        ),
        case("sourcecode", json!(true), 200, ""),
        case("sourcecode", json!(-1), 200, ""),
        case("sourcecode", json!(1.5), 200, ""),
        case("sourcecode", json!(1e308), 200, ""),
        case("sourcecode", json!("a\0b\0"), 200, ""),
        case("sourcecode", json!(huge.clone()), 200, ""),
        case("sourcecode", json!("\u{feff}\u{202e}é"), 200, ""),
        // language_id
        case(
            "language_id",
            json!(["python3"]),
            400,
            "'language_id' must be a string",
        ),
        case(
            "language_id",
            json!({}),
            400,
            "'language_id' must be a string",
        ),
        case(
            "language_id",
            Value::Null,
            400,
            "missing the required attribute 'language_id'",
        ),
        case("language_id", json!(""), 400, "is not known"),
        case("language_id", json!(3), 400, "Language '3' is not known"),
        case("language_id", json!(-1.5), 400, "is not known"),
        case("language_id", json!("python3\0"), 400, "is not known"),
        case("language_id", json!("../python3"), 400, "is not known"),
        case("language_id", json!("PYTHON3"), 200, ""),
        case(
            "language_id",
            json!("x".repeat(10_000)),
            400,
            "is not known",
        ),
        // input
        case("input", json!(["a"]), 400, "'input' must be a string"),
        case("input", json!({"a": 1}), 400, "'input' must be a string"),
        case("input", Value::Null, 200, ""),
        case("input", json!(-7), 200, ""),
        case("input", json!(0.25), 200, ""),
        case("input", json!("\0\0\0"), 200, ""),
        case("input", json!(huge), 200, ""),
        // sourcefilename
        case(
            "sourcefilename",
            json!(["a.py"]),
            400,
            "sourcefilename for the run_spec is illegal",
        ),
        case(
            "sourcefilename",
            json!({}),
            400,
            "sourcefilename for the run_spec is illegal",
        ),
        case(
            "sourcefilename",
            json!("a\0b.py"),
            400,
            "sourcefilename for the run_spec is illegal",
        ),
        case(
            "sourcefilename",
            json!(long_name),
            400,
            "longer than 200 bytes",
        ),
        case("sourcefilename", json!(12), 200, ""),
        case(
            "sourcefilename",
            json!(-1),
            400,
            "sourcefilename for the run_spec is illegal",
        ),
        case("sourcefilename", json!(1.5), 200, ""),
        case("sourcefilename", json!("x y é.py"), 200, ""),
        // debug / runner_details: any value is truthy or not
        case("debug", json!({"a": [1]}), 200, ""),
        case("debug", json!(-1e308), 200, ""),
        case("runner_details", json!("\0"), 200, ""),
        case("runner_details", json!([[]]), 200, ""),
        // parameters as a whole: only an object has keys
        case("parameters", json!("cputime=1"), 200, ""),
        case("parameters", json!([1, 2]), 200, ""),
        case("parameters", json!(-1), 200, ""),
        case("parameters", Value::Null, 200, ""),
        // file_list as a whole
        case(
            "file_list",
            json!("abcdefgh"),
            400,
            "'file_list' must be a list",
        ),
        case(
            "file_list",
            json!({"abcdefgh": "f"}),
            400,
            "'file_list' must be a list",
        ),
        case("file_list", json!(5), 400, "'file_list' must be a list"),
        case("file_list", json!([null]), 400, "Invalid file specifier"),
        case("file_list", json!([[]]), 400, "Invalid file specifier"),
        case(
            "file_list",
            json!([[1e308, -1]]),
            400,
            "Invalid file specifier",
        ),
        case(
            "file_list",
            json!([["abcdefgh", "f", "x", "y"]]),
            400,
            "Invalid file specifier",
        ),
    ];
    // Numeric parameters. Jobe's rule: a non-numeric value means "absent" (the default).
    let absent = [
        json!("abc"),
        json!([]),
        json!({}),
        json!(true),
        Value::Null,
        json!("0x10"),
    ];
    for p in [
        "cputime",
        "memorylimit",
        "disklimit",
        "streamsize",
        "numprocs",
    ] {
        let k = format!("parameters.{p}");
        for v in &absent {
            c.push(case(&k, v.clone(), 200, ""));
        }
        c.push(case(&k, json!(-1e308), 400, p));
        c.push(case(&k, json!("1e400"), 400, "must be a finite number"));
    }
    c.extend([
        case(
            "parameters.cputime",
            json!(-1),
            400,
            "cputime parameter: must be greater than 0",
        ),
        case(
            "parameters.cputime",
            json!(0),
            400,
            "cputime parameter: must be greater than 0",
        ),
        case("parameters.cputime", json!(1e-300), 200, ""),
        case("parameters.cputime", json!(0.5), 200, ""),
        case("parameters.cputime", json!(" 2.5 "), 200, ""),
        case(
            "parameters.cputime",
            json!(1e308),
            400,
            "cputime exceeds maximum",
        ),
        case(
            "parameters.cputime",
            json!(u64::MAX),
            400,
            "cputime exceeds maximum",
        ),
        case(
            "parameters.cputime",
            json!("121abc"),
            400,
            "cputime exceeds maximum",
        ),
        case(
            "parameters.memorylimit",
            json!(-1),
            400,
            "memorylimit parameter: must be >= 0",
        ),
        case("parameters.memorylimit", json!(0), 200, ""),
        case("parameters.memorylimit", json!(1e-9), 200, ""),
        case("parameters.memorylimit", json!(1e308), 200, ""),
        case("parameters.memorylimit", json!(i64::MAX), 200, ""),
        case("parameters.disklimit", json!(-1), 200, ""),
        case(
            "parameters.disklimit",
            json!(-2),
            400,
            "disklimit parameter: must be >= 0",
        ),
        case(
            "parameters.disklimit",
            json!(-0.5),
            400,
            "disklimit parameter: must be >= 0",
        ),
        case("parameters.disklimit", json!(1e308), 200, ""),
        case(
            "parameters.streamsize",
            json!(-1),
            400,
            "streamsize parameter: must be >= 0",
        ),
        case("parameters.streamsize", json!(0), 200, ""),
        case("parameters.streamsize", json!(1e308), 200, ""),
        case(
            "parameters.numprocs",
            json!(0),
            400,
            "numprocs parameter: must be at least 1",
        ),
        case(
            "parameters.numprocs",
            json!(0.5),
            400,
            "numprocs parameter: must be at least 1",
        ),
        case(
            "parameters.numprocs",
            json!(-1),
            400,
            "numprocs parameter: must be at least 1",
        ),
        case("parameters.numprocs", json!(1.5), 200, ""),
        case("parameters.numprocs", json!(1e308), 200, ""),
    ]);
    for p in ["compileargs", "linkargs", "interpreterargs", "runargs"] {
        let k = format!("parameters.{p}");
        let msg: &'static str = "must be a list of strings";
        c.extend([
            case(&k, json!("-O2"), 400, msg),
            case(&k, json!({"a": "b"}), 400, msg),
            case(&k, json!([["-O2"]]), 400, msg),
            case(&k, json!([{}]), 400, msg),
            case(&k, json!(["a\0b"]), 400, "must not contain NUL bytes"),
            case(&k, json!(["'unbalanced"]), 400, "unbalanced quote"),
            case(&k, json!([1, 2.5, true, null]), 200, ""),
            case(&k, json!(vec!["-x"; 10_000]), 200, ""),
        ]);
    }
    c.extend([
        case(
            "parameters.main_class",
            json!(["Main"]),
            400,
            "main_class must be a string",
        ),
        case(
            "parameters.main_class",
            json!("Ma\0in"),
            400,
            "main_class must not contain NUL",
        ),
        case("parameters.main_class", json!(5), 200, ""),
        case("parameters.main_class", json!("M".repeat(100_000)), 200, ""),
    ]);
    c
}

fn spec_with(key: &str, value: &Value) -> Value {
    let mut spec = base();
    match key.strip_prefix("parameters.") {
        Some(p) => spec["parameters"] = json!({ p: value }),
        None => spec[key] = value.clone(),
    }
    spec
}

#[test]
fn test_every_field_hostile_values() {
    bounded(120, async {
        let s = Server::start(ApiConfig::default()).await;
        let cases = field_cases();
        assert!(cases.len() >= 100, "{} cases", cases.len());
        for c in &cases {
            let body = json!({ "run_spec": spec_with(&c.key, &c.value) }).to_string();
            let r = post_body(s.addr, body.as_bytes()).await;
            let shown: String = c.value.to_string().chars().take(60).collect();
            let what = format!("{} = {shown}", c.key);
            assert_clean(&r, &what);
            assert_eq!(r.status, c.status, "{what}: {}", r.text());
            if c.status != 200 {
                let m = r.message();
                assert!(m.contains(c.needle), "{what}: message {m:?}");
            }
        }
        eprintln!("{} field cases", cases.len());
        s.shutdown().await;
    });
}

#[test]
fn test_raw_bodies() {
    bounded(120, async {
        let s = Server::start(ApiConfig::default()).await;
        let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let deep_obj = format!(
            "{{\"run_spec\":{}1{}}}",
            "{\"a\":".repeat(5000),
            "}".repeat(5000)
        );
        let mut bom = b"\xef\xbb\xbf".to_vec();
        bom.extend_from_slice(br#"{"run_spec":{"language_id":"c","sourcecode":"x"}}"#);
        let utf16: Vec<u8> =
            r#"{"run_spec":{}}"#.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
            ("empty", b"".to_vec(), 400, "Non-JSON post data received"),
            ("whitespace", b" \r\n\t ".to_vec(), 400, "Non-JSON post data received"),
            ("null", b"null".to_vec(), 400, "Non-JSON post data received"),
            ("array", b"[]".to_vec(), 400, "Non-JSON post data received"),
            ("truncated", br#"{"run_spec":{"lang"#.to_vec(), 400, "Failed to parse JSON"),
            ("trailing garbage", br#"{"run_spec":{}} x"#.to_vec(), 400, "Failed to parse JSON"),
            ("invalid UTF-8 in sourcecode", b"{\"run_spec\":{\"language_id\":\"c\",\"sourcecode\":\"\xff\xfe\"}}".to_vec(), 400, "Failed to parse JSON"),
            ("invalid UTF-8 in input", b"{\"run_spec\":{\"language_id\":\"c\",\"sourcecode\":\"x\",\"input\":\"\xc3\x28\"}}".to_vec(), 400, "Failed to parse JSON"),
            ("lone surrogate", br#"{"run_spec":{"language_id":"c","sourcecode":"\ud800"}}"#.to_vec(), 400, "Failed to parse JSON"),
            ("raw NUL byte", b"{\"run_spec\":{\"language_id\":\"c\",\"sourcecode\":\"a\0\"}}".to_vec(), 400, "Failed to parse JSON"),
            ("number out of range", br#"{"run_spec":{"language_id":"c","sourcecode":1e999}}"#.to_vec(), 400, "Failed to parse JSON"),
            ("deep arrays", nested.into_bytes(), 400, "Failed to parse JSON"),
            ("deep objects", deep_obj.into_bytes(), 400, "Failed to parse JSON"),
            ("BOM", bom, 400, "Failed to parse JSON"),
            ("UTF-16", utf16, 400, "Failed to parse JSON"),
            ("duplicate keys", br#"{"run_spec":{"language_id":"c","language_id":"python3","sourcecode":"x"}}"#.to_vec(), 200, ""),
            ("over the limit", vec![b' '; OVER_LIMIT], 413, "Request body too large"),
        ];
        for (what, body, status, needle) in &cases {
            let r = post_body(s.addr, body).await;
            assert_clean(&r, what);
            assert_eq!(r.status, *status, "{what}: {}", r.text());
            if *status != 200 {
                assert!(r.message().contains(needle), "{what}: {}", r.text());
            }
        }
        eprintln!("{} raw bodies", cases.len());
        s.shutdown().await;
    });
}

#[test]
fn test_path_traversal_in_file_ids_and_names() {
    bounded(120, async {
        let s = Server::start(ApiConfig::default()).await;
        let put = |id: &str| {
            http(
                "PUT",
                &format!("{BASE}/files/{id}"),
                "",
                br#"{"file_contents":"cHduZWQ="}"#,
            )
        };
        // File ids in the URL: never a route, never a write.
        let long_id = "a".repeat(201);
        let ids = [
            "..",
            "../../../../tmp/pwned",
            "..%2f..%2ftmp%2fpwned",
            "%2e%2e",
            "abc/../../pwned",
            "/etc/passwd",
            "abc%00def",
            "abc\\..\\pwned",
            "~root",
            "abc.def",
            "abc-def",
            "abc_def",
            long_id.as_str(),
        ];
        for id in ids {
            let r = exchange(s.addr, &put(id), Duration::from_secs(10))
                .await
                .expect("an answer");
            assert_clean(&r, id);
            assert!(matches!(r.status, 400 | 404), "PUT {id}: {}", r.status);
            let head =
                format!("HEAD {BASE}/files/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let r = exchange(s.addr, head.as_bytes(), Duration::from_secs(10))
                .await
                .expect("an answer");
            assert!(matches!(r.status, 400 | 404), "HEAD {id}: {}", r.status);
        }
        // A valid file, then hostile names for it in file_list.
        let r = exchange(s.addr, &put("abcdefgh12345678"), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(r.status, 204);
        let names = [
            "../x",
            "../../../../etc/passwd",
            "/etc/passwd",
            "a/b",
            "a\\b",
            ".",
            "..",
            "...",
            "a\0b",
            "a b",
            "",
            "~",
            &"f".repeat(201),
        ];
        for name in names {
            let spec = json!({"language_id": "python3", "sourcecode": "x",
                              "file_list": [["abcdefgh12345678", name]]});
            let r = post_body(s.addr, json!({ "run_spec": spec }).to_string().as_bytes()).await;
            assert_clean(&r, name);
            assert_eq!(r.status, 400, "file name {name:?}: {}", r.text());
            assert!(
                r.message().starts_with("Invalid file specifier"),
                "{name:?}"
            );
            // The same names as sourcefilename.
            let spec = json!({"language_id": "python3", "sourcecode": "x", "sourcefilename": name});
            let r = post_body(s.addr, json!({ "run_spec": spec }).to_string().as_bytes()).await;
            assert_clean(&r, name);
            if !name.is_empty() && name != "a b" && name != "..." {
                assert_eq!(r.status, 400, "sourcefilename {name:?}: {}", r.text());
            }
        }
        // A file named like the program: the client's error, not a silent overwrite.
        let spec = json!({"language_id": "python3", "sourcecode": "x", "sourcefilename": "m.py",
                          "file_list": [["abcdefgh12345678", "m.py"]]});
        let r = post_body(s.addr, json!({ "run_spec": spec }).to_string().as_bytes()).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.message().contains("same name as the program"));
        // Nothing but the one valid file was written, anywhere under the server's directory.
        let mut files = Vec::new();
        let mut stack = vec![s.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    files.push(e.path());
                }
            }
        }
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].ends_with("files/abcdefgh12345678"), "{files:?}");
        assert!(!std::path::Path::new("/tmp/pwned").exists());
        s.shutdown().await;
    });
}

#[test]
fn test_malformed_http() {
    bounded(120, async {
        let s = Server::start(ApiConfig::default()).await;
        let runs = format!("{BASE}/runs");
        let ok_body = br#"{"run_spec":{"language_id":"c","sourcecode":"x"}}"#;
        let big_header = format!("X-Big: {}\r\n", "a".repeat(200_000));
        let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec()),
            ("no version", b"GET /\r\n\r\n".to_vec()),
            ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
            ("bad method", format!("G\0T {runs} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()),
            ("header without colon", format!("GET {runs} HTTP/1.1\r\nHost x\r\n\r\n").into_bytes()),
            ("NUL in header", format!("GET {runs} HTTP/1.1\r\nHost: x\0y\r\n\r\n").into_bytes()),
            ("huge header", format!("GET {runs} HTTP/1.1\r\nHost: x\r\n{big_header}\r\n").into_bytes()),
            ("200 headers", format!("GET {runs} HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes()),
            ("huge URI", format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200_000)).into_bytes()),
            ("bad content-length", format!("POST {runs} HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n").into_bytes()),
            ("negative content-length", format!("POST {runs} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n").into_bytes()),
            ("two content-lengths", format!("POST {runs} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab").into_bytes()),
            ("content-length and chunked", format!("POST {runs} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").into_bytes()),
            ("bad chunk size", format!("POST {runs} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n").into_bytes()),
            ("chunk size overflow", format!("POST {runs} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nab\r\n").into_bytes()),
            ("unknown transfer-encoding", format!("POST {runs} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nab").into_bytes()),
            ("obs-fold", format!("POST {runs} HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n").into_bytes()),
            ("oversized declared body with Expect", format!("POST {runs} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 999999999999\r\n\r\n").into_bytes()),
            ("oversized chunked body", {
                let mut v = format!("POST {runs} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").into_bytes();
                for _ in 0..11 {
                    v.extend_from_slice(b"100000\r\n");
                    v.extend_from_slice(&[b' '; 0x100000]);
                    v.extend_from_slice(b"\r\n");
                }
                v
            }),
        ];
        for (what, raw) in &cases {
            // Either a 4xx (hyper's for framing errors, ours otherwise) or a closed connection.
            if let Some(r) = exchange(s.addr, raw, Duration::from_secs(20)).await {
                assert!(
                    (400..500).contains(&r.status),
                    "{what}: status {} {}",
                    r.status,
                    r.text()
                );
                for leak in LEAKS {
                    assert!(!r.text().contains(leak), "{what}: {}", r.text());
                }
            }
        }
        // Framings that are odd but valid are served.
        let chunked = format!(
            "POST {runs} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
            ok_body.len(),
            std::str::from_utf8(ok_body).unwrap()
        );
        let r = exchange(s.addr, chunked.as_bytes(), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "chunked: {}", r.text());
        let http10 = format!(
            "POST {runs} HTTP/1.0\r\nContent-Length: {}\r\n\r\n{}",
            ok_body.len(),
            std::str::from_utf8(ok_body).unwrap()
        );
        let r = exchange(s.addr, http10.as_bytes(), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "HTTP/1.0: {}", r.text());
        // Two pipelined requests on one connection: two answers.
        let mut two = format!("GET {BASE}/languages HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes();
        two.extend_from_slice(&http("POST", &runs, "", ok_body));
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(&two).await.unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out)
                .matches("HTTP/1.1 200")
                .count(),
            2
        );
        eprintln!("{} malformed requests", cases.len() + 3);
        // Still serving.
        let r = post_body(s.addr, ok_body).await;
        assert_eq!(r.status, 200);
        s.shutdown().await;
    });
}

fn short_timeouts() -> ApiConfig {
    ApiConfig {
        header_read_timeout: Duration::from_secs(1),
        body_read_timeout: Duration::from_secs(1),
        send_timeout: Duration::from_secs(1),
        ..ApiConfig::default()
    }
}

#[test]
fn test_slow_headers_time_out() {
    bounded(60, async {
        let s = Server::start(short_timeouts()).await;
        for partial in [
            &b""[..],
            b"POST ",
            b"POST /jobe/index.php/restapi/runs HTTP/1.1\r\nHost: x\r\n",
        ] {
            let mut c = TcpStream::connect(s.addr).await.unwrap();
            c.write_all(partial).await.unwrap();
            let t = Instant::now();
            let mut out = Vec::new();
            tokio::time::timeout(Duration::from_secs(15), c.read_to_end(&mut out))
                .await
                .expect("the server gives up on slow headers")
                .unwrap();
            // A bounded wait, then the connection is closed without an answer: hyper's
            // header_read_timeout sends nothing (there is no request to answer).
            let waited = t.elapsed();
            assert!(
                waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
                "{waited:?}"
            );
            assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
        }
        s.shutdown().await;
    });
}

#[test]
fn test_slow_body_times_out_with_408() {
    bounded(60, async {
        let s = Server::start(short_timeouts()).await;
        let head = format!(
            "POST {BASE}/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"
        );
        // Part of the body, then silence.
        let t = Instant::now();
        let r = exchange(
            s.addr,
            format!("{head}{{\"run_spec\"").as_bytes(),
            Duration::from_secs(15),
        )
        .await
        .expect("an answer");
        assert_eq!(r.status, 408, "{}", r.text());
        assert_eq!(r.message(), "Request body not received in time");
        assert!(t.elapsed() >= Duration::from_millis(900));
        // A body dripped one byte every 200 ms: the timeout is for the whole body.
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(head.as_bytes()).await.unwrap();
        let drip = async {
            for _ in 0..100 {
                if c.write_all(b" ").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), drip).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out)).await;
        assert_eq!(parse_response(&out, false).expect("an answer").status, 408);
        // The same on PUT /files.
        let put = format!(
            "PUT {BASE}/files/abcdefgh HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{{"
        );
        let r = exchange(s.addr, put.as_bytes(), Duration::from_secs(15))
            .await
            .unwrap();
        assert_eq!(r.status, 408);
        s.shutdown().await;
    });
}

#[test]
fn test_client_that_never_reads_is_dropped() {
    bounded(90, async {
        // One connection at a time: the non-reader must give its slot back.
        let s = Server::start(ApiConfig {
            max_connections: 1,
            ..short_timeouts()
        })
        .await;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut lazy = socket.connect(s.addr).await.unwrap();
        let body = br#"{"run_spec":{"language_id":"python3","sourcecode":"big"}}"#;
        lazy.write_all(&http("POST", &format!("{BASE}/runs"), "", body))
            .await
            .unwrap();
        // Never read `lazy`. The next client is served once the send timeout frees the slot.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        let r = exchange(
            s.addr,
            &http("GET", &format!("{BASE}/languages"), "", b""),
            Duration::from_secs(30),
        )
        .await
        .expect("an answer");
        assert_eq!(r.status, 200);
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        drop(lazy);
        s.shutdown().await;
    });
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn test_3000_concurrent_connections() {
    // Client and server sockets both live in this process.
    let limit = runner::sys::raise_fd_limit(16_384).unwrap();
    // Two descriptors per connection plus a reserve; a host with a low hard limit gets fewer.
    let clients = 3000.min(
        usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(512)
            / 2,
    );
    if clients < 3000 {
        eprintln!("RLIMIT_NOFILE hard limit {limit}: {clients} connections instead of 3000");
    }
    assert!(
        clients >= 500,
        "RLIMIT_NOFILE hard limit too low here: {limit}"
    );
    bounded(300, async {
        let s = Server::start(ApiConfig {
            max_connections: 256,
            ..ApiConfig::default()
        })
        .await;
        let before = open_fds();
        let t = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..clients {
            let addr = s.addr;
            tasks.spawn(async move {
                let req = if i % 3 == 0 {
                    http(
                        "POST",
                        &format!("{BASE}/runs"),
                        "",
                        br#"{"run_spec":{"language_id":"c","sourcecode":"x"}}"#,
                    )
                } else {
                    http("GET", &format!("{BASE}/languages"), "", b"")
                };
                exchange(addr, &req, Duration::from_secs(240))
                    .await
                    .map(|r| r.status)
            });
        }
        let mut ok = 0;
        while let Some(r) = tasks.join_next().await {
            assert_eq!(r.unwrap(), Some(200));
            ok += 1;
        }
        assert_eq!(ok, clients);
        assert_eq!(s.exec.runs.load(Ordering::Relaxed), clients.div_ceil(3));
        eprintln!("{clients} connections (256 at a time) in {:?}", t.elapsed());
        // Every descriptor comes back once the connections are closed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while open_fds() > before + 4 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            open_fds() <= before + 4,
            "{} fds, {before} before",
            open_fds()
        );
        s.shutdown().await;
    });
}

#[test]
fn test_idle_connections_cannot_starve_the_server() {
    bounded(60, async {
        let s = Server::start(ApiConfig {
            max_connections: 32,
            ..short_timeouts()
        })
        .await;
        // More idle connections than the server serves at once (slowloris).
        let mut idle = Vec::new();
        for _ in 0..200 {
            idle.push(TcpStream::connect(s.addr).await.unwrap());
        }
        let t = Instant::now();
        let r = exchange(
            s.addr,
            &http("GET", &format!("{BASE}/languages"), "", b""),
            Duration::from_secs(30),
        )
        .await
        .expect("an answer");
        assert_eq!(r.status, 200);
        // Each batch of 32 idle connections is dropped after the 1 s header timeout.
        assert!(t.elapsed() < Duration::from_secs(25), "{:?}", t.elapsed());
        drop(idle);
        s.shutdown().await;
    });
}

#[test]
fn test_key_and_rate_checks_come_before_the_body() {
    bounded(60, async {
        let s = Server::start(ApiConfig {
            api_keys: Some(HashMap::from([("k1".to_owned(), 2), ("k0".to_owned(), 0)])),
            ..ApiConfig::default()
        })
        .await;
        let runs = format!("{BASE}/runs");
        let valid = br#"{"run_spec":{"language_id":"c","sourcecode":"x"}}"#;
        let send = |key: &str, body: &[u8]| {
            let extra = if key.is_empty() {
                String::new()
            } else {
                format!("X-API-KEY: {key}\r\n")
            };
            let raw = if body.len() >= OVER_LIMIT {
                http_declared("POST", &runs, &extra, body.len())
            } else {
                http("POST", &runs, &extra, body)
            };
            let addr = s.addr;
            async move { exchange(addr, &raw, Duration::from_secs(20)).await }
        };
        // 1. The key, before anything about the body (even a 413-sized one).
        let huge = vec![b'{'; OVER_LIMIT];
        for (key, body, status) in [
            ("", &huge[..], 403),
            ("nope", &huge[..], 403),
            ("", b"{nope", 403),
            // A NUL byte in a header: hyper refuses the header itself (400).
            ("k1\0", valid, 400),
        ] {
            let r = send(key, body).await.expect("an answer");
            assert_eq!(r.status, status, "key {key:?}");
            if status == 403 {
                assert_clean(&r, key);
            }
        }
        // 2. The budget is spent by every request with a valid key, even a malformed one
        //    (as in Jobe: the throttle runs before the body is read).
        let r = send("k1", b"{nope").await.unwrap();
        assert_eq!(r.status, 400);
        let r = send("k1", valid).await.unwrap();
        assert_eq!(r.status, 200);
        // 3. Spent: 401 before the body, whatever it is.
        for body in [&valid[..], b"{nope", &huge[..]] {
            let r = send("k1", body).await.unwrap();
            assert_eq!(r.status, 401);
            assert_eq!(r.message(), "Max RUN rate for this server exceeded");
        }
        // 4. An unlimited key is never throttled; body checks apply as usual.
        for _ in 0..20 {
            assert_eq!(send("k0", valid).await.unwrap().status, 200);
        }
        assert_eq!(send("k0", &huge).await.unwrap().status, 413);
        s.shutdown().await;
    });
}
