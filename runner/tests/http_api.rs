//! Tier: http (docs/testing.md). HTTP end to end, unprivileged.
//!
//! `api::serve` on `127.0.0.1:0` with a fake `Executor`, driven with raw HTTP/1.1 over a new TCP
//! connection per request (`Connection: close`), with the exact headers Moodle CodeRunner sends
//! (docs/coderunner-client.md §1.5). Every test is bounded by a tokio timeout.

#![allow(
    unused_crate_dependencies,
    reason = "integration test crate uses a subset"
)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use runner::api::{ApiConfig, AppState};
use runner::job::{Job, Outcome, RunResult, Usage};
use runner::sched::{BoxFuture, ExecError, Executor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod common;
use common::{Resp, Served, parse_response};

const BASE: &str = "/jobe/index.php/restapi";
const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Echoes the source as stdout with outcome 15; magic sources trigger the other answers.
#[derive(Default)]
struct FakeExecutor {
    seen: Mutex<Vec<Job>>,
}

impl Executor for FakeExecutor {
    fn languages(&self) -> Vec<(String, String)> {
        vec![
            ("c".to_owned(), "12.2.0".to_owned()),
            ("python3".to_owned(), "3.11.2".to_owned()),
        ]
    }

    fn run(&self, job: Job) -> BoxFuture<'_, Result<RunResult, ExecError>> {
        self.seen.lock().unwrap().push(job.clone());
        Box::pin(async move {
            let ok = |stdout: Vec<u8>| RunResult {
                outcome: Outcome::Success,
                cmpinfo: Vec::new(),
                stdout,
                stderr: Vec::new(),
                usage: Usage::default(),
            };
            match job.source.as_str() {
                "overload" => Ok(RunResult::overload()),
                "badreq" => Err(ExecError::BadRequest("memorylimit too large".to_owned())),
                "nolang" => Err(ExecError::UnknownLanguage("c".to_owned())),
                "internal" => Err(ExecError::Internal(
                    "cgroup write failed at /sys/fs/cgroup/secret".to_owned(),
                )),
                "binary" => Ok(ok(b"A\x01\tB\r\n\xff\xc3(\n".to_vec())),
                "segv" => Ok(RunResult {
                    outcome: Outcome::RuntimeError,
                    cmpinfo: Vec::new(),
                    stdout: Vec::new(),
                    stderr: b"Segmentation fault\n".to_vec(),
                    usage: Usage {
                        cpu_secs: 0.25,
                        wall_secs: 0.5,
                        peak_memory_bytes: 3 << 20,
                        exit_code: None,
                        signal: Some(11),
                        killed_at_unix: None,
                    },
                }),
                "slow" => {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    Ok(ok(b"slow done".to_vec()))
                }
                src => Ok(ok(src.as_bytes().to_vec())),
            }
        })
    }
}

struct Server {
    addr: SocketAddr,
    fake: Arc<FakeExecutor>,
    state: Arc<AppState>,
    srv: Served,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(config: ApiConfig) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(FakeExecutor::default());
        let state = Arc::new(AppState::new(
            fake.clone(),
            common::cache(dir.path()),
            config,
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let srv = Served::start(listener, state.clone());
        Server {
            addr: srv.addr,
            fake,
            state,
            srv,
            _dir: dir,
        }
    }

    async fn shutdown(self) {
        self.srv.shutdown().await;
    }

    fn jobs(&self) -> Vec<Job> {
        self.fake.seen.lock().unwrap().clone()
    }
}

impl Resp {
    fn assert_json_headers(&self) {
        assert_eq!(
            self.header("content-type"),
            Some("application/json; charset=UTF-8")
        );
        assert_eq!(
            self.header("cache-control"),
            Some("no-store, max-age=0, no-cache")
        );
    }
}

/// CodeRunner's headers (docs/coderunner-client.md §1.5); the UA is what Moodle's curl
/// substitutes.
fn coderunner_headers(api_key: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![
        ("User-Agent".to_owned(), "MoodleBot/1.0".to_owned()),
        (
            "Content-Type".to_owned(),
            "application/json; charset=utf-8".to_owned(),
        ),
        ("Accept-Charset".to_owned(), "utf-8".to_owned()),
        ("Accept".to_owned(), "application/json".to_owned()),
        ("Accept-Encoding".to_owned(), "deflate, gzip".to_owned()),
    ];
    if let Some(k) = api_key {
        h.push(("X-API-KEY".to_owned(), k.to_owned()));
    }
    h.push(("X-CodeRunner-Job-Id".to_owned(), "1a2b3c4d".to_owned()));
    h
}

fn head_block(addr: SocketAddr, method: &str, path: &str, headers: &[(String, String)]) -> String {
    let mut s = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s
}

/// One request on a fresh connection; reads the response to EOF.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> Resp {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = head_block(addr, method, path, headers);
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    if let Some(b) = body {
        stream.write_all(b).await.unwrap();
    }
    read_response(&mut stream, method == "HEAD").await
}

async fn read_response(stream: &mut TcpStream, head_only: bool) -> Resp {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    parse_response(&raw, head_only)
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)))
}

async fn post_run(s: &Server, spec: serde_json::Value, key: Option<&str>) -> Resp {
    let body = serde_json::json!({ "run_spec": spec }).to_string();
    request(
        s.addr,
        "POST",
        &format!("{BASE}/runs"),
        &coderunner_headers(key),
        Some(body.as_bytes()),
    )
    .await
}

async fn put_file(s: &Server, id: &str, contents: &[u8]) -> Resp {
    let body = format!(r#"{{"file_contents":"{}"}}"#, STANDARD.encode(contents));
    request(
        s.addr,
        "PUT",
        &format!("{BASE}/files/{id}"),
        &coderunner_headers(Some("anykey")),
        Some(body.as_bytes()),
    )
    .await
}

async fn put_raw(addr: SocketAddr, body: &[u8]) -> Resp {
    let path = format!("{BASE}/files/abcdefgh");
    request(addr, "PUT", &path, &[], Some(body)).await
}

fn bounded<F: Future<Output = ()>>(f: F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(TEST_TIMEOUT, f)
            .await
            .expect("test timed out");
    });
}

fn md5ish(n: u8) -> String {
    format!(
        "{:032x}",
        0x900150983cd24fb0d6963f7d28e17f00u128 + u128::from(n)
    )
}

#[test]
fn test_get_languages() {
    bounded(async {
        let s = Server::start(ApiConfig::default()).await;
        let mut h = coderunner_headers(None);
        h.retain(|(k, _)| k != "X-CodeRunner-Job-Id");
        let r = request(s.addr, "GET", &format!("{BASE}/languages"), &h, None).await;
        assert_eq!(r.status, 200);
        r.assert_json_headers();
        assert_eq!(r.text(), r#"[["c","12.2.0"],["python3","3.11.2"]]"#);
        let r = request(s.addr, "GET", &format!("{BASE}/languages/"), &h, None).await;
        assert_eq!(r.status, 200);
        s.shutdown().await;
    });
}

#[test]
fn test_coderunner_post_run_ok() {
    bounded(async {
        let s = Server::start(ApiConfig::default()).await;
        // The exact shape CodeRunner's json_encode produces: escaped slashes and \u escapes,
        // parameters as [], an extra jobeserver key; X-API-KEY is ignored when keys are off.
        let body = br#"{"run_spec":{"language_id":"python3","sourcecode":"print(\"h\u00e9llo\/w\u00f6rld\")","sourcefilename":"__tester__.python3","input":"","file_list":[],"parameters":[],"jobeserver":"jobe1;jobe2"}}"#;
        let r = request(
            s.addr,
            "POST",
            &format!("{BASE}/runs"),
            &coderunner_headers(Some("2AAA7A5415B4A9B394B54BF1D2E9D")),
            Some(body),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.assert_json_headers();
        // Exactly five keys in Jobe's order; no escaping of `/` or non-ASCII.
        assert_eq!(
            r.text(),
            r#"{"run_id":null,"outcome":15,"cmpinfo":"","stdout":"print(\"héllo/wörld\")","stderr":""}"#
        );
        let jobs = s.jobs();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].language, "python3");
        assert_eq!(jobs[0].source_name.as_deref(), Some("__tester__.python3"));
        assert_eq!(jobs[0].params, runner::job::Params::default());
        assert!(!jobs[0].debug);
        s.shutdown().await;
    });
}

#[test]
fn test_coderunner_file_list_404_put_retry() {
    bounded(async {
        let s = Server::start(ApiConfig::default()).await;
        let (id1, id2) = (md5ish(1), "AbCdEfGh12".to_owned());
        let spec = serde_json::json!({
            "language_id": "c", "sourcecode": "int main(){}", "sourcefilename": "__tester__.c",
            "input": "5\n", "file_list": [[id1, "data.txt"], [id2, "other.bin", "x"]],
            "parameters": {"cputime": "3", "linkargs": ["-lm"]}, "debug": 1,
        });
        // (b) 1. POST → 404 with Jobe's message; the executor is not called.
        let r = post_run(&s, spec.clone(), None).await;
        assert_eq!(r.status, 404);
        r.assert_json_headers();
        assert_eq!(
            r.json(),
            "One or more of the specified files is missing/unavailable"
        );
        assert!(s.jobs().is_empty());
        // 2. HEAD says missing: 404, JSON content type, no body.
        let r = request(
            s.addr,
            "HEAD",
            &format!("{BASE}/files/{id1}"),
            &coderunner_headers(None),
            None,
        )
        .await;
        assert_eq!(r.status, 404);
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=UTF-8")
        );
        // 3. PUT each → exactly 204, no body, no content type.
        for (id, contents) in [(&id1, &b"1 2 3\n"[..]), (&id2, &b"\x00\xff\x01"[..])] {
            let r = put_file(&s, id, contents).await;
            assert_eq!(r.status, 204, "{}", r.text());
            assert!(r.body.is_empty());
            assert_eq!(r.header("content-type"), None);
        }
        let r = request(
            s.addr,
            "HEAD",
            &format!("{BASE}/files/{id1}"),
            &coderunner_headers(None),
            None,
        )
        .await;
        assert_eq!(r.status, 204);
        // 4. Re-POST → 200, and the executor saw the files.
        let r = post_run(&s, spec, None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["outcome"], 15);
        let jobs = s.jobs();
        assert_eq!(jobs.len(), 1);
        let files = &jobs[0].files;
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].name, "data.txt");
        assert_eq!(files[0].contents, b"1 2 3\n");
        assert_eq!(files[1].name, "other.bin");
        assert_eq!(files[1].contents, b"\x00\xff\x01");
        assert_eq!(jobs[0].input, "5\n");
        assert_eq!(jobs[0].params.cputime, Some(3.0));
        assert_eq!(jobs[0].params.linkargs, Some(vec!["-lm".to_owned()]));
        assert!(jobs[0].debug);
        s.shutdown().await;
    });
}

#[test]
fn test_expect_100_continue_large_put() {
    bounded(async {
        let s = Server::start(ApiConfig::default()).await;
        let contents: Vec<u8> = (0..1_200_000u32).map(|i| (i % 251) as u8).collect();
        let id = md5ish(7);
        let body = format!(r#"{{"file_contents":"{}"}}"#, STANDARD.encode(&contents));
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        let mut head = head_block(
            s.addr,
            "PUT",
            &format!("{BASE}/files/{id}"),
            &coderunner_headers(None),
        );
        head.push_str(&format!(
            "Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            body.len()
        ));
        stream.write_all(head.as_bytes()).await.unwrap();
        // curl waits for the interim response before sending the body.
        let mut interim = [0u8; 25];
        stream.read_exact(&mut interim).await.unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        stream.write_all(body.as_bytes()).await.unwrap();
        let r = read_response(&mut stream, false).await;
        assert_eq!(r.status, 204, "{}", r.text());
        // The file is usable by a run.
        let spec = serde_json::json!({"language_id": "c", "sourcecode": "x",
            "file_list": [[id, "big.dat"]]});
        let r = post_run(&s, spec, None).await;
        assert_eq!(r.status, 200);
        assert_eq!(s.jobs()[0].files[0].contents, contents);
        s.shutdown().await;
    });
}

#[test]
fn test_body_over_limit_is_413() {
    bounded(async {
        let cfg = ApiConfig {
            max_body_bytes: 1024,
            ..ApiConfig::default()
        };
        let s = Server::start(cfg).await;
        // Declared too large with Expect: refused before the body is sent (no 100 Continue).
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        let mut head = head_block(
            s.addr,
            "POST",
            &format!("{BASE}/runs"),
            &coderunner_headers(None),
        );
        head.push_str("Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let r = read_response(&mut stream, false).await;
        assert_eq!(r.status, 413);
        r.assert_json_headers();
        assert!(r.json().as_str().unwrap().contains("1024"), "{}", r.text());
        // Chunked (no Content-Length): cut off while reading.
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        let mut head = head_block(
            s.addr,
            "PUT",
            &format!("{BASE}/files/abcdefgh"),
            &coderunner_headers(None),
        );
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        let chunk = "a".repeat(2000);
        head.push_str(&format!("{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len()));
        stream.write_all(head.as_bytes()).await.unwrap();
        let r = read_response(&mut stream, false).await;
        assert_eq!(r.status, 413);
        assert!(r.json().is_string());
        s.shutdown().await;
    });
}

#[test]
fn test_options_and_unknown_routes() {
    bounded(async {
        let s = Server::start(ApiConfig::default()).await;
        let h = coderunner_headers(None);
        let mut pre = h.clone();
        pre.push((
            "Access-Control-Request-Method".to_owned(),
            "POST".to_owned(),
        ));
        let r = request(s.addr, "OPTIONS", &format!("{BASE}/runs"), &pre, None).await;
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty());
        let r = request(s.addr, "OPTIONS", &format!("{BASE}/runs"), &h, None).await;
        assert_eq!(r.status, 404);
        assert_eq!(r.text(), r#""""#);
        for (m, p) in [
            ("GET", format!("{BASE}/runs/1")),
            ("GET", format!("{BASE}/runresults/1")),
            ("POST", format!("{BASE}/files")),
            ("GET", format!("{BASE}/files/abcdefgh")),
            ("DELETE", format!("{BASE}/files/abcdefgh")),
            ("PUT", format!("{BASE}/languages")),
            ("PUT", format!("{BASE}/files/abc-def")),
            ("GET", "/jobe/index.php".to_owned()),
            ("GET", "/jobe/restapi/languages".to_owned()),
        ] {
            let r = request(s.addr, m, &p, &h, None).await;
            assert_eq!(r.status, 404, "{m} {p}");
            r.assert_json_headers();
            assert_eq!(r.text(), r#""""#, "{m} {p}");
        }
        let r = request(s.addr, "GET", &format!("{BASE}/languages!"), &h, None).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.text(), r#""""#);
        // Double slash (jobe_host with a trailing slash) is tolerated.
        let r = request(s.addr, "GET", &format!("/{BASE}/languages"), &h, None).await;
        assert_eq!(r.status, 200);
        s.shutdown().await;
    });
}

#[test]
fn test_run_errors_and_results() {
    bounded(async {
        let s = Server::start(ApiConfig::default()).await;
        let r = post_run(
            &s,
            serde_json::json!({"language_id": "cobol", "sourcecode": "x"}),
            None,
        )
        .await;
        assert_eq!(r.status, 400);
        r.assert_json_headers();
        assert_eq!(r.json(), "Language 'cobol' is not known");
        let r = post_run(
            &s,
            serde_json::json!({"language_id": "c", "sourcecode": "x", "parameters": {"cputime": 121}}),
            None,
        )
        .await;
        assert_eq!(r.status, 400);
        assert_eq!(
            r.json(),
            "cputime exceeds maximum allowed on this Jobe server (120 secs)"
        );
        // Malformed JSON: 400 (Jobe: 500).
        let r = request(
            s.addr,
            "POST",
            &format!("{BASE}/runs"),
            &coderunner_headers(None),
            Some(b"{oops"),
        )
        .await;
        assert_eq!(r.status, 400);
        assert!(r.json().as_str().unwrap().contains("JSON"));
        // Overload: 200, run_id "0".
        let r = post_run(
            &s,
            serde_json::json!({"language_id": "c", "sourcecode": "overload"}),
            None,
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.text(),
            r#"{"run_id":"0","outcome":21,"cmpinfo":"","stdout":"","stderr":""}"#
        );
        // Jobe's overload test hook, without calling the executor.
        let n = s.jobs().len();
        let r = post_run(
            &s,
            serde_json::json!({"language_id": "c", "sourcecode": "!** TESTING OVERLOAD EXCEPTION **!"}),
            None,
        )
        .await;
        assert_eq!(r.json()["outcome"], 21);
        assert_eq!(s.jobs().len(), n);
        // Invalid UTF-8 output: Jobe's \xhh escaping.
        let r = post_run(
            &s,
            serde_json::json!({"language_id": "c", "sourcecode": "binary"}),
            None,
        )
        .await;
        assert_eq!(r.json()["stdout"], "A\\x01\tB\r\n\\xff\\xc3(\n");
        // Executor errors.
        let r = post_run(
            &s,
            serde_json::json!({"language_id": "c", "sourcecode": "badreq"}),
            None,
        )
        .await;
        assert_eq!((r.status, r.json()), (400, "memorylimit too large".into()));
        let r = post_run(
            &s,
            serde_json::json!({"language_id": "c", "sourcecode": "nolang"}),
            None,
        )
        .await;
        assert_eq!(
            (r.status, r.json()),
            (400, "Language 'c' is not known".into())
        );
        let r = post_run(
            &s,
            serde_json::json!({"language_id": "c", "sourcecode": "internal"}),
            None,
        )
        .await;
        assert_eq!(r.status, 500);
        r.assert_json_headers();
        let msg = r.json().as_str().unwrap().to_owned();
        assert!(!msg.contains("/sys") && !msg.contains("cgroup"), "{msg}");
        // PUT errors with Jobe's messages.
        let put = |body: &'static [u8]| put_raw(s.addr, body);
        let r = put(b"{}").await;
        assert_eq!(
            (r.status, r.json()),
            (400, "put: missing file_contents parameter".into())
        );
        let r = put(br#"{"file_contents":"@@@"}"#).await;
        assert_eq!(
            (r.status, r.json()),
            (
                400,
                "put: contents of file abcdefgh are not valid base-64".into()
            )
        );
        let r = put(b"nope").await;
        assert_eq!(r.status, 400);
        // PUT accepts short ids.
        assert_eq!(put_file(&s, "ab", b"x").await.status, 204);
        s.shutdown().await;
    });
}

#[test]
fn test_api_keys() {
    bounded(async {
        let cfg = ApiConfig {
            api_keys: Some(HashMap::from([
                ("goodkey".to_owned(), 2),
                ("freekey".to_owned(), 0),
            ])),
            ..ApiConfig::default()
        };
        let s = Server::start(cfg).await;
        let spec = serde_json::json!({"language_id": "c", "sourcecode": "x"});
        let r = post_run(&s, spec.clone(), None).await;
        assert_eq!((r.status, r.json()), (403, "Missing API key".into()));
        r.assert_json_headers();
        let r = post_run(&s, spec.clone(), Some("badkey")).await;
        assert_eq!((r.status, r.json()), (403, "Unknown API key".into()));
        assert_eq!(
            post_run(&s, spec.clone(), Some("goodkey")).await.status,
            200
        );
        assert_eq!(
            post_run(&s, spec.clone(), Some("goodkey")).await.status,
            200
        );
        let r = post_run(&s, spec.clone(), Some("goodkey")).await;
        assert_eq!(
            (r.status, r.json()),
            (401, "Max RUN rate for this server exceeded".into())
        );
        for _ in 0..5 {
            assert_eq!(
                post_run(&s, spec.clone(), Some("freekey")).await.status,
                200
            );
        }
        // Keys apply to POST runs only.
        let r = request(s.addr, "GET", &format!("{BASE}/languages"), &[], None).await;
        assert_eq!(r.status, 200);
        let r = request(
            s.addr,
            "PUT",
            &format!("{BASE}/files/abcdefgh"),
            &[],
            Some(br#"{"file_contents":"eA=="}"#),
        )
        .await;
        assert_eq!(r.status, 204);
        s.shutdown().await;
    });
}

#[test]
fn test_graceful_shutdown_finishes_in_flight() {
    bounded(async {
        let s = Server::start(ApiConfig::default()).await;
        let addr = s.addr;
        let slow = tokio::spawn(async move {
            let body = br#"{"run_spec":{"language_id":"c","sourcecode":"slow"}}"#;
            request(addr, "POST", &format!("{BASE}/runs"), &[], Some(body)).await
        });
        // Let the request reach the executor, then shut down.
        while s.jobs().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        s.shutdown().await;
        let r = slow.await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["stdout"], "slow done");
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    });
}

#[test]
fn test_max_connections_waits_instead_of_failing() {
    bounded(async {
        let cfg = ApiConfig {
            max_connections: 1,
            ..ApiConfig::default()
        };
        let s = Server::start(cfg).await;
        let addr = s.addr;
        let slow = tokio::spawn(async move {
            let body = br#"{"run_spec":{"language_id":"c","sourcecode":"slow"}}"#;
            request(addr, "POST", &format!("{BASE}/runs"), &[], Some(body)).await
        });
        while s.jobs().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The second connection waits (in the backlog) until the first is done, then succeeds.
        let started = std::time::Instant::now();
        let r = request(addr, "GET", &format!("{BASE}/languages"), &[], None).await;
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "second connection served while the first held the only slot"
        );
        assert_eq!(slow.await.unwrap().status, 200);
        s.shutdown().await;
    });
}

#[test]
fn test_header_read_timeout_closes_slow_clients() {
    bounded(async {
        let cfg = ApiConfig {
            header_read_timeout: Duration::from_millis(200),
            ..ApiConfig::default()
        };
        let s = Server::start(cfg).await;
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        stream
            .write_all(b"GET /jobe/index.php/restapi/lang")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let started = std::time::Instant::now();
        // The server gives up on us: EOF (possibly after a 408) well before the test timeout.
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
            .await
            .expect("connection not closed by header timeout");
        assert!(started.elapsed() < Duration::from_secs(5));
        // And the server still works.
        let r = request(s.addr, "GET", &format!("{BASE}/languages"), &[], None).await;
        assert_eq!(r.status, 200);
        s.shutdown().await;
    });
}

async fn get(s: &Server, method: &str, path: &str) -> Resp {
    request(s.addr, method, path, &[], None).await
}

/// The value of the sample line `name` (exact name and labels) in a metrics body.
fn sample(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .map(str::to_owned)
}

#[test]
fn test_metrics_count_runs_and_requests() {
    bounded(async {
        let s = Server::start(ApiConfig::default()).await;
        let r = get(&s, "GET", "/metrics").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert_eq!(
            sample(&r.text(), "runner_ebpf_active").as_deref(),
            Some("0")
        );
        assert!(!r.text().contains("runner_runs_total{"), "{}", r.text());

        let r = post_run(
            &s,
            serde_json::json!({"language_id": "python3", "sourcecode": "x"}),
            None,
        )
        .await;
        assert_eq!(r.status, 200);
        // Unknown language: a 400, never a label.
        let r = post_run(
            &s,
            serde_json::json!({"language_id": "cobol\"}", "sourcecode": "x"}),
            None,
        )
        .await;
        assert_eq!(r.status, 400);
        let r = post_run(
            &s,
            serde_json::json!({"language_id": "c", "sourcecode": "overload"}),
            None,
        )
        .await;
        assert_eq!(r.json()["outcome"], 21);
        // File cache: one miss (HEAD), one PUT, one hit (HEAD).
        let id = md5ish(7);
        assert_eq!(
            get(&s, "HEAD", &format!("{BASE}/files/{id}")).await.status,
            404
        );
        assert_eq!(put_file(&s, &id, b"data").await.status, 204);
        assert_eq!(
            get(&s, "HEAD", &format!("{BASE}/files/{id}")).await.status,
            204
        );
        assert_eq!(get(&s, "GET", "/nowhere").await.status, 404);
        assert_eq!(get(&s, "HEAD", "/metrics").await.status, 200);

        let t = get(&s, "GET", "/metrics").await.text();
        for (k, v) in [
            (
                "runner_runs_total{lang=\"python3\",outcome=\"success\"}",
                "1",
            ),
            (
                "runner_runs_total{lang=\"c\",outcome=\"server_overload\"}",
                "1",
            ),
            ("runner_overload_total", "1"),
            // Usage is observed by the scheduler for the runs that ran on this runner; the
            // fake executor records none.
            ("runner_run_cpu_seconds_count", "0"),
            (
                "runner_http_requests_total{route=\"runs\",status=\"200\"}",
                "2",
            ),
            (
                "runner_http_requests_total{route=\"runs\",status=\"400\"}",
                "1",
            ),
            (
                "runner_http_requests_total{route=\"metrics\",status=\"200\"}",
                "2",
            ),
            (
                "runner_http_requests_total{route=\"head_file\",status=\"404\"}",
                "1",
            ),
            (
                "runner_http_requests_total{route=\"head_file\",status=\"204\"}",
                "1",
            ),
            (
                "runner_http_requests_total{route=\"put_file\",status=\"204\"}",
                "1",
            ),
            (
                "runner_http_requests_total{route=\"unrouted\",status=\"404\"}",
                "1",
            ),
            ("runner_file_cache_hits_total", "1"),
            ("runner_file_cache_misses_total", "1"),
            ("runner_file_cache_bytes", "4"),
            ("runner_draining", "0"),
        ] {
            assert_eq!(sample(&t, k).as_deref(), Some(v), "{k} in\n{t}");
        }
        assert!(!t.contains("cobol"), "client input became a label");
        s.shutdown().await;
    });
}

#[test]
fn test_every_metric_family_has_a_sample() {
    bounded(async {
        let s = Server::start(ApiConfig::default()).await;
        // The scheduler's gauges (queue, slots) are set by `sched`; with the fake executor the
        // test drives them through the shared registry as the scheduler does.
        let m = s.state.metrics.clone();
        m.set_slots_total(2);
        m.queue_enter();
        m.queue_leave(Duration::from_millis(3));
        m.slot_taken();
        m.slot_released();
        // And the compile cache's (`sched::compile_cache`), which the fake executor has not.
        m.compile_cache_lookup("c", true);
        m.compile_cache_lookup("c", false);
        let r = post_run(
            &s,
            serde_json::json!({"language_id": "python3", "sourcecode": "x"}),
            None,
        )
        .await;
        assert_eq!(r.status, 200);
        let t = get(&s, "GET", "/metrics").await.text();
        for family in runner::metrics::FAMILIES {
            assert!(
                t.contains(&format!("# TYPE {family} ")),
                "{family} not declared"
            );
            let has_sample = t.lines().any(|l| {
                !l.starts_with('#')
                    && l.strip_prefix(family)
                        .is_some_and(|rest| rest.starts_with([' ', '{', '_']))
            });
            assert!(has_sample, "{family} has no sample in\n{t}");
        }
        assert_eq!(sample(&t, "runner_slots").as_deref(), Some("2"));
        assert_eq!(
            sample(&t, "runner_queue_wait_seconds_count").as_deref(),
            Some("1")
        );
        s.shutdown().await;
    });
}

#[test]
fn test_health_ready_then_draining() {
    bounded(async {
        let s = Server::start(ApiConfig::default()).await;
        let r = get(&s, "GET", "/health").await;
        assert_eq!(r.status, 200);
        r.assert_json_headers();
        let v = r.json();
        assert_eq!(v["status"], "ready");
        // With the build, as `GET /version` answers it.
        let version = get(&s, "GET", "/version").await.json();
        assert_eq!(v["commit"], version["commit"]);
        assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(
            version["ebpf"], "inactive",
            "no monitor behind a fake executor"
        );
        assert_eq!(get(&s, "HEAD", "/health/").await.status, 200);
        assert_eq!(get(&s, "POST", "/health").await.status, 404);
        // What `serve` does when shutdown begins (the listener closes right after, so a load
        // balancer sees 503 on connections still open, then refused connections).
        s.state.begin_drain();
        let r = get(&s, "GET", "/health").await;
        assert_eq!(r.status, 503);
        assert_eq!(r.json()["status"], "draining");
        let t = get(&s, "GET", "/metrics").await.text();
        assert_eq!(sample(&t, "runner_draining").as_deref(), Some("1"));
        s.shutdown().await;

        // And `serve` sets the flag itself when its shutdown future resolves.
        let s = Server::start(ApiConfig::default()).await;
        let state = s.state.clone();
        assert!(!state.is_draining());
        s.shutdown().await;
        assert!(state.is_draining());
    });
}

#[test]
fn test_details_only_when_asked() {
    bounded(async {
        let s = Server::start(ApiConfig::default()).await;
        let r = post_run(
            &s,
            serde_json::json!({"language_id": "c", "sourcecode": "segv"}),
            None,
        )
        .await;
        assert_eq!(
            r.text(),
            r#"{"run_id":null,"outcome":12,"cmpinfo":"","stdout":"","stderr":"Segmentation fault\n"}"#
        );
        for off in [
            serde_json::json!(false),
            serde_json::json!(0),
            serde_json::json!(""),
        ] {
            let r = post_run(&s, serde_json::json!({"language_id": "c", "sourcecode": "segv", "runner_details": off}), None).await;
            assert_eq!(r.json().as_object().unwrap().len(), 5, "{}", r.text());
        }
        let r = post_run(
            &s,
            serde_json::json!({"language_id": "c", "sourcecode": "segv", "runner_details": true}),
            None,
        )
        .await;
        assert_eq!(
            r.text(),
            r#"{"run_id":null,"outcome":12,"cmpinfo":"","stdout":"","stderr":"Segmentation fault\n","details":{"cpu_seconds":0.25,"wall_seconds":0.5,"peak_memory_bytes":3145728,"exit_code":null,"signal":11}}"#
        );
        assert!(s.jobs().last().unwrap().details);
        let r = post_run(
            &s,
            serde_json::json!({"language_id": "c", "sourcecode": "x", "runner_details": 1}),
            None,
        )
        .await;
        let d = &r.json()["details"];
        assert_eq!(d["exit_code"], serde_json::Value::Null);
        assert_eq!(d["peak_memory_bytes"], 0);
        s.shutdown().await;
    });
}
