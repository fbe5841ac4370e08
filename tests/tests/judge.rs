//! Tier: privileged + vm (docs/testing.md). Judge mode end to end through a real daemon (real
//! jails, real HTTP on 127.0.0.1): the archive validator, every verdict in every language that
//! can produce it, expected outputs invisible to the program, no residue between cases, a
//! read-only artifact, idempotent POST, SSE with `Last-Event-ID`, cancel, the origin (single
//! flight, down then up), and a daemon SIGKILLed mid-submission that finishes it after a restart.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use runner_tests::daemon::{
    self, BinDaemon, Daemon, Opts, Resp, request, request_with, run_dirs_left,
};
use runner_tests::{privileged, slowdown, tar_of};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const J: &str = "/judge/v1";

// ---------------------------------------------------------------------------------------------
// Archives and requests.

/// A tar with one special entry (link, device…) beside a valid case.
fn tar_special(name: &str, kind: tar::EntryType) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (n, d) in [("1.in", &b"1\n"[..]), ("1.out", b"1\n")] {
        let mut h = tar::Header::new_gnu();
        h.set_path(n).unwrap();
        h.set_size(d.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, d).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(kind);
    h.set_link_name("1.out").unwrap();
    h.set_size(0);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b""[..]).unwrap();
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    g.write_all(data).unwrap();
    g.finish().unwrap()
}

/// The sum problem: `a b` → `a+b`, cases 1, 2 and 10 (natural order), with `problem.toml`.
fn sum_archive(problem_toml: &str) -> Vec<u8> {
    gzip(&tar_of(&[
        ("1.in", b"1 2\n"),
        ("1.out", b"3\n"),
        ("2.in", b"5 5\n"),
        ("2.out", b"10\n"),
        ("10.in", b"-4 10\n"),
        ("10.out", b"6\n"),
        ("problem.toml", problem_toml.as_bytes()),
    ]))
}

async fn put_testset(addr: SocketAddr, problem: &str, version: &str, body: &[u8]) -> Resp {
    request(
        addr,
        "PUT",
        &format!("{J}/problems/{problem}/testsets/{version}"),
        Some(body),
    )
    .await
    .expect("PUT testset")
}

fn submission(problem: &str, lang: &str, src: &str) -> Value {
    json!({"problem": problem, "version": "v1", "language_id": lang, "sourcecode": src})
}

async fn post(addr: SocketAddr, body: &Value, wait: bool) -> Resp {
    let path = if wait {
        format!("{J}/submissions?wait=true")
    } else {
        format!("{J}/submissions")
    };
    request(addr, "POST", &path, Some(body.to_string().as_bytes()))
        .await
        .expect("POST submission")
}

async fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, None).await.expect("GET")
}

/// Submits and waits for the final result (polling after `?wait=true` gave up).
async fn judge(addr: SocketAddr, body: &Value) -> Value {
    let r = post(addr, body, true).await;
    assert!(
        r.status == 200 || r.status == 202,
        "{} {}",
        r.status,
        r.text()
    );
    let v = r.json();
    if r.status == 200 {
        return v;
    }
    let id = v["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120).mul_f64(slowdown());
    loop {
        let v = get(addr, &format!("{J}/submissions/{id}")).await.json();
        if v["status"] == "done" || v["status"] == "cancelled" {
            return v;
        }
        assert!(Instant::now() < deadline, "not finished: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn verdicts(v: &Value) -> Vec<String> {
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["verdict"].as_str().unwrap().to_owned())
        .collect()
}

/// A started daemon with the sum problem (token mode, 1 s CPU) uploaded as `sum/v1`.
async fn daemon_with_sum(opts: Opts) -> Daemon {
    let d = Daemon::start(opts).await;
    let r = put_testset(d.addr, "sum", "v1", &sum_archive("cputime = 1\n")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    d
}

// ---------------------------------------------------------------------------------------------
// Test sets.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_testset_upload_validation() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts {
        judge: runner::judge::RawJudge {
            max_cases: Some(3),
            max_testset_bytes: Some(64 << 10),
            ..Default::default()
        },
        ..Opts::default()
    })
    .await;
    let a = d.addr;
    // Created, the same again, other content under the same version.
    let good = sum_archive("");
    let r = put_testset(a, "sum", "v1", &good).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let m = r.json();
    assert_eq!(m["problem"], "sum");
    let names: Vec<&str> = m["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["1", "2", "10"]);
    assert_eq!(put_testset(a, "sum", "v1", &good).await.status, 200);
    let other = sum_archive("compare = \"text\"\n");
    let r = put_testset(a, "sum", "v1", &other).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        get(a, &format!("{J}/problems/sum/testsets/v1"))
            .await
            .json(),
        m
    );
    // Every bad archive: 400 naming the problem, nothing stored.
    let six: Vec<(String, Vec<u8>)> = (1..=4)
        .flat_map(|i| {
            [
                (format!("{i}.in"), b"x".to_vec()),
                (format!("{i}.out"), b"x".to_vec()),
            ]
        })
        .collect();
    let too_many: Vec<(&str, &[u8])> = six.iter().map(|(n, d)| (n.as_str(), &d[..])).collect();
    let bomb = gzip(&tar_of(&[
        ("1.in", &vec![b'0'; 200 << 10]),
        ("1.out", b"0"),
    ]));
    let bad: Vec<(&str, Vec<u8>)> = vec![
        (
            "an .in without .out",
            tar_of(&[("1.in", b"1"), ("2.in", b"2"), ("2.out", b"2")]),
        ),
        (
            "path traversal",
            tar_of(&[("../1.in", b"1"), ("../1.out", b"1")]),
        ),
        (
            "absolute name",
            tar_of(&[("/1.in", b"1"), ("/1.out", b"1")]),
        ),
        ("symlink", tar_special("2.out", tar::EntryType::Symlink)),
        ("hard link", tar_special("2.out", tar::EntryType::Link)),
        ("device", tar_special("2.in", tar::EntryType::Char)),
        ("fifo", tar_special("2.in", tar::EntryType::Fifo)),
        ("more than max_cases", tar_of(&too_many)),
        ("over max_testset_bytes uncompressed", bomb),
        ("not a tar", b"<html>hello</html>".to_vec()),
        ("empty", Vec::new()),
    ];
    for (why, body) in &bad {
        let r = put_testset(a, "bad", "v1", body).await;
        assert_eq!(r.status, 400, "{why}: {}", r.text());
        let msg = r.json()["error"].as_str().unwrap().to_owned();
        assert!(
            msg.contains("bad/v1"),
            "{why}: the message names the problem: {msg}"
        );
        assert!(!msg.contains(d.data_dir.to_str().unwrap()), "{why}: {msg}");
        let g = get(a, &format!("{J}/problems/bad/testsets/v1")).await;
        assert_eq!(g.status, 404, "{why}: nothing stored");
    }
    // A body over the cap: 413.
    let r = put_testset(a, "big", "v1", &vec![0u8; 100 << 10]).await;
    assert_eq!(r.status, 413, "{}", r.text());
    // Bad names: 400 naming the field.
    let r = request(
        a,
        "PUT",
        &format!("{J}/problems/a..b.c~/testsets/v1"),
        Some(&good),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "problem");
    let r = request(
        a,
        "PUT",
        &format!("{J}/problems/ok/testsets/.."),
        Some(&good),
    )
    .await
    .unwrap();
    assert!(r.status == 400 || r.status == 404, "{}", r.text());
    // Delete, then gone, then it may be put again.
    let r = request(a, "DELETE", &format!("{J}/problems/sum/testsets/v1"), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        get(a, &format!("{J}/problems/sum/testsets/v1"))
            .await
            .status,
        404
    );
    assert_eq!(put_testset(a, "sum", "v1", &other).await.status, 201);
    d.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Verdicts in every language.

/// Programs by language: AC, WA, RE, TLE, CE (where a compile step exists), OLE; MLE and SV
/// where the language can reach them. `sum` reads `a b` and prints `a+b`.
struct Lang {
    id: &'static str,
    ac: &'static str,
    wa: &'static str,
    re: &'static str,
    tle: &'static str,
    ce: Option<&'static str>,
    ole: &'static str,
    mle: Option<&'static str>,
    sv: Option<&'static str>,
}

const LANGS: &[Lang] = &[
    Lang {
        id: "c",
        ac: "#include <stdio.h>\nint main(void){long a,b;scanf(\"%ld %ld\",&a,&b);printf(\"%ld\\n\",a+b);return 0;}\n",
        wa: "#include <stdio.h>\nint main(void){puts(\"42\");return 0;}\n",
        re: "#include <stdlib.h>\nint main(void){exit(3);}\n",
        tle: "int main(void){volatile unsigned long x=0;for(;;)x++;}\n",
        ce: Some("int main(void){return nope;}\n"),
        ole: "#include <stdio.h>\nint main(void){for(;;)puts(\"spam spam spam spam\");}\n",
        mle: Some(
            "#include <stdlib.h>\n#include <string.h>\nint main(void){for(;;){char*p=malloc(1<<20);if(!p)return 1;memset(p,1,1<<20);}}\n",
        ),
        sv: Some(
            "#include <sys/ptrace.h>\nint main(void){ptrace(PTRACE_TRACEME,0,0,0);return 0;}\n",
        ),
    },
    Lang {
        id: "cpp",
        ac: "#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a+b<<\"\\n\";}\n",
        wa: "#include <iostream>\nint main(){std::cout<<42<<\"\\n\";}\n",
        re: "#include <cstdlib>\nint main(){std::abort();}\n",
        tle: "int main(){volatile unsigned long x=0;for(;;)x++;}\n",
        ce: Some("int main(){return nope;}\n"),
        ole: "#include <cstdio>\nint main(){for(;;)std::puts(\"spam spam spam spam\");}\n",
        mle: Some(
            "#include <vector>\n#include <cstring>\nint main(){std::vector<char*> v;for(;;){char*p=new char[1<<20];std::memset(p,1,1<<20);v.push_back(p);}}\n",
        ),
        sv: None,
    },
    Lang {
        id: "java",
        ac: "import java.util.*;\npublic class Main{public static void main(String[] a){Scanner s=new Scanner(System.in);long x=s.nextLong(),y=s.nextLong();System.out.println(x+y);}}\n",
        wa: "public class Main{public static void main(String[] a){System.out.println(42);}}\n",
        re: "public class Main{public static void main(String[] a){throw new RuntimeException(\"boom\");}}\n",
        tle: "public class Main{public static void main(String[] a){long x=0;while(true){x++;}}}\n",
        ce: Some("public class Main{public static void main(String[] a){nope();}}\n"),
        ole: "public class Main{public static void main(String[] a){while(true)System.out.println(\"spam spam spam spam\");}}\n",
        mle: None,
        sv: None,
    },
    Lang {
        id: "nodejs",
        ac: "const [a,b]=require('fs').readFileSync(0,'utf8').trim().split(/\\s+/).map(Number);console.log(a+b);\n",
        wa: "console.log(42);\n",
        re: "process.exit(2);\n",
        tle: "let x=0;for(;;){x++;}\n",
        ce: None,
        // One large write (a synchronous loop of writes never yields to node's event loop, so
        // nothing would reach the pipe: that program is MLE, not OLE).
        ole: "process.stdout.write('spam spam spam spam\\n'.repeat(20000));\n",
        mle: None,
        sv: None,
    },
    Lang {
        id: "octave",
        ac: "x = fscanf(stdin, '%d'); printf('%d\\n', x(1) + x(2));\n",
        wa: "printf('42\\n');\n",
        re: "error('boom');\n",
        tle: "x = 0; while true; x = x + 1; end\n",
        ce: None,
        ole: "while true; printf('spam spam spam spam\\n'); end\n",
        mle: None,
        sv: None,
    },
    Lang {
        id: "pascal",
        ac: "program p; var a, b: int64; begin readln(a, b); writeln(a + b); end.\n",
        wa: "program p; begin writeln(42); end.\n",
        re: "program p; begin halt(3); end.\n",
        tle: "program p; var x: int64; begin x := 0; while true do x := x + 1; end.\n",
        ce: Some("program p; begin nope; end.\n"),
        ole: "program p; begin while true do writeln('spam spam spam spam'); end.\n",
        mle: None,
        sv: None,
    },
    Lang {
        id: "php",
        ac: "<?php $x = array_map('intval', preg_split('/\\s+/', trim(stream_get_contents(STDIN)))); echo $x[0] + $x[1], \"\\n\";\n",
        wa: "<?php echo \"42\\n\";\n",
        re: "<?php exit(4);\n",
        tle: "<?php $x = 0; while (true) { $x++; }\n",
        ce: Some("<?php echo ;\n"),
        ole: "<?php while (true) { echo \"spam spam spam spam\\n\"; }\n",
        mle: None,
        sv: None,
    },
    Lang {
        id: "python3",
        ac: "a, b = map(int, input().split())\nprint(a + b)\n",
        wa: "print(42)\n",
        re: "raise SystemExit(5)\n",
        tle: "x = 0\nwhile True:\n    x += 1\n",
        ce: Some("def f(:\n    pass\n"),
        ole: "while True:\n    print('spam spam spam spam')\n",
        mle: Some("a = []\nwhile True:\n    a.append(bytearray(1 << 20))\n"),
        sv: Some("import ctypes\nctypes.CDLL(None).syscall(101, 0, 0, 0, 0)\n"),
    },
];

/// Every verdict each language can produce, end to end. One test per language keeps a failure
/// readable; the languages run in sequence within it.
async fn every_verdict(lang: &Lang) {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default()).await;
    // 2 s of CPU (the JVM needs time to start), 64 KiB of output.
    let toml = "cputime = 2\noutput_limit = 65536\nmemorylimit = 64\n";
    let r = put_testset(d.addr, "sum", "v1", &sum_archive(toml)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let a = d.addr;
    let mut cases: Vec<(&str, &str)> = vec![
        ("AC", lang.ac),
        ("WA", lang.wa),
        ("RE", lang.re),
        ("TLE", lang.tle),
        ("OLE", lang.ole),
    ];
    cases.extend(lang.ce.map(|s| ("CE", s)));
    cases.extend(lang.mle.map(|s| ("MLE", s)));
    cases.extend(lang.sv.map(|s| ("SV", s)));
    for (want, src) in cases {
        let mut body = submission("sum", lang.id, src);
        if lang.id == "java" {
            body["sourcefilename"] = "Main.java".into();
        }
        let v = judge(a, &body).await;
        assert_eq!(v["verdict"], want, "{} {want}: {v:#}", lang.id);
        assert_eq!(v["status"], "done");
        let first = &v["cases"][0];
        match want {
            "AC" => assert_eq!(verdicts(&v), ["AC", "AC", "AC"], "{v:#}"),
            "CE" => {
                assert_eq!(v["compile"]["verdict"], "CE");
                assert!(!v["compile"]["output"].as_str().unwrap().is_empty());
                assert_eq!(verdicts(&v), ["SK", "SK", "SK"]);
            }
            "RE" => {
                let msg = first["message"].as_str().unwrap_or_default();
                assert!(
                    msg.starts_with("exit code") || msg.starts_with("killed by signal"),
                    "{} RE message: {msg}",
                    lang.id
                );
            }
            "TLE" => {
                let msg = first["message"].as_str().unwrap_or_default();
                assert!(msg.contains("time limit exceeded"), "{msg}");
            }
            "SV" => {
                let msg = first["message"].as_str().unwrap_or_default();
                assert_eq!(msg, "illegal system call: ptrace");
            }
            "OLE" => {
                let msg = first["message"].as_str().unwrap_or_default();
                assert!(msg.contains("65536"), "{msg}");
            }
            _ => {}
        }
        if want != "CE" {
            assert!(v["summary"]["max_wall_ms"].as_u64().unwrap() > 0, "{v:#}");
        }
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_verdicts_c() {
    every_verdict(&LANGS[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_verdicts_cpp() {
    every_verdict(&LANGS[1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_verdicts_java() {
    every_verdict(&LANGS[2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_verdicts_nodejs() {
    every_verdict(&LANGS[3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_verdicts_octave() {
    every_verdict(&LANGS[4]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_verdicts_pascal() {
    every_verdict(&LANGS[5]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_verdicts_php() {
    every_verdict(&LANGS[6]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_verdicts_python3() {
    every_verdict(&LANGS[7]).await;
}

/// python3 and php have no compile step but a syntax check (docs/judge.md, "Deferred check"):
/// the first case runs alone and, when its run proves the source compiled without a word, no
/// check runs at all; otherwise the check runs once and decides CE exactly as a check before
/// the runs would have (a SyntaxWarning is CE too, as Jobe's outcome 11).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_deferred_check_python3_php() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default()).await;
    let r = put_testset(d.addr, "sum", "v1", &sum_archive("")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let a = d.addr;
    let checks = |m: &str, result: &str| -> u64 {
        let line = format!("runner_deferred_checks_total{{result=\"{result}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line} in {m}"))
    };
    let counts = || async move {
        let m = get(a, "/metrics").await.text();
        ["skipped", "passed", "failed"].map(|r| checks(&m, r))
    };
    // AC: the first run vouches, no check.
    let v = judge(a, &submission("sum", "python3", LANGS[7].ac)).await;
    assert_eq!(v["verdict"], "AC", "{v:#}");
    assert_eq!(counts().await, [1, 0, 0]);
    let v = judge(a, &submission("sum", "php", LANGS[6].ac)).await;
    assert_eq!(v["verdict"], "AC", "{v:#}");
    assert_eq!(counts().await, [2, 0, 0]);
    // A silent exit 5 vouches for nothing: the check runs, passes, and the cases say RE.
    let v = judge(a, &submission("sum", "python3", "raise SystemExit(5)\n")).await;
    assert_eq!(v["verdict"], "RE", "{v:#}");
    assert_eq!(v["compile"]["verdict"], "AC");
    assert_eq!(counts().await, [2, 1, 0]);
    // A syntax error: CE with the check's output, every case SK (the one that ran too).
    let v = judge(a, &submission("sum", "python3", LANGS[7].ce.unwrap())).await;
    assert_eq!(v["verdict"], "CE", "{v:#}");
    let out = v["compile"]["output"].as_str().unwrap();
    assert!(out.contains("SyntaxError"), "{out}");
    assert_eq!(verdicts(&v), ["SK", "SK", "SK"]);
    assert_eq!(counts().await, [2, 1, 1]);
    // A right answer with a SyntaxWarning: the check speaks, so CE (Jobe's outcome 11).
    let src = format!("{}x = 1\nassert x is 1\n", LANGS[7].ac);
    let v = judge(a, &submission("sum", "python3", &src)).await;
    assert_eq!(v["verdict"], "CE", "{v:#}");
    let out = v["compile"]["output"].as_str().unwrap();
    assert!(out.contains("SyntaxWarning"), "{out}");
    let v = judge(a, &submission("sum", "php", LANGS[6].ce.unwrap())).await;
    assert_eq!(v["verdict"], "CE", "{v:#}");
    assert!(
        v["compile"]["output"]
            .as_str()
            .unwrap()
            .contains("syntax error"),
        "{v:#}"
    );
    assert_eq!(counts().await, [2, 1, 3]);
    d.stop().await;
}

/// PE exists in text mode only; `stop_on_first_failure` skips the later cases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_text_mode_pe_and_stop_on_first_failure() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default()).await;
    let r = put_testset(d.addr, "sum", "v1", &sum_archive("compare = \"text\"\n")).await;
    assert_eq!(r.status, 201);
    // Right numbers, a trailing space: PE.
    let src = "a, b = map(int, input().split())\nprint(a + b, end=' \\n')\n";
    let v = judge(d.addr, &submission("sum", "python3", src)).await;
    assert_eq!(v["verdict"], "PE", "{v:#}");
    // Wrong on case 2 only (5 5): later cases SK and not run.
    let src = "a, b = map(int, input().split())\nprint(a + b if a != 5 else 0)\n";
    let mut body = submission("sum", "python3", src);
    body["stop_on_first_failure"] = true.into();
    let v = judge(d.addr, &body).await;
    assert_eq!(verdicts(&v), ["AC", "WA", "SK"], "{v:#}");
    assert_eq!(v["verdict"], "WA");
    assert_eq!(v["summary"]["passed"], 1);
    d.stop().await;
}

// ---------------------------------------------------------------------------------------------
// What a program can see.

/// A program that reads every file it can reach, searching for the expected output's marker,
/// finds nothing: the expected outputs never enter the jail (and its input holds no marker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_expected_outputs_are_invisible() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default()).await;
    // The marker is in the expected outputs only. A program that finds it prints it: AC.
    let marker = format!(
        "Zq7XK-expected-{}-{}",
        std::process::id(),
        daemon::free_port()
    );
    let archive = gzip(&tar_of(&[
        ("1.in", b"find\n"),
        ("1.out", marker.as_bytes()),
        ("2.in", b"find again\n"),
        ("2.out", marker.as_bytes()),
    ]));
    assert_eq!(
        put_testset(d.addr, "hide", "v1", &archive).await.status,
        201
    );
    let src = r#"
import os, sys
# Built at run time, so that the program's own compiled form does not hold the needle.
needle = bytes([90, 113, 55, 88, 75]) + b"-expected-"
found = []
# A planted copy proves the search works: it must find this one.
with open("/tmp/planted", "wb") as f:
    f.write(needle + b"planted\n")
def scan(path):
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 22)
    except OSError:
        return
    i = data.find(needle)
    if i >= 0:
        found.append(data[i:i + 80].split()[0].decode(errors="replace"))
for root, dirs, files in os.walk("/", followlinks=False):
    if root in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    for name in files:
        scan(os.path.join(root, name))
# Also through the open stdin descriptor: re-opening its path is refused.
try:
    with open("/proc/self/fd/0", "rb") as f:
        found.append("reopened stdin: " + f.read(20).decode(errors="replace"))
except OSError:
    pass
real = [x for x in found if not x.endswith("planted")]
planted = any(x.endswith("planted") for x in found)
print(real[0] if real else ("nothing found" if planted else "search broken"))
"#;
    let mut body = submission("hide", "python3", src);
    body["limits"] = json!({"cputime": 20});
    let v = judge(d.addr, &body).await;
    assert_eq!(verdicts(&v), ["WA", "WA"], "{v:#}");
    let msg = v["cases"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("got \"nothing\""),
        "the program found something: {msg}"
    );
    d.stop().await;
}

/// A file written in case 1 (in the run directory, /tmp, /dev/shm, $HOME) is gone in case 2,
/// and the compiled program cannot be changed, moved or removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_no_residue_and_read_only_artifact() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default()).await;
    let expected = b"clean protected\n";
    let archive = gzip(&tar_of(&[
        ("1.in", b""),
        ("1.out", expected),
        ("2.in", b""),
        ("2.out", expected),
        ("3.in", b""),
        ("3.out", expected),
    ]));
    assert_eq!(
        put_testset(d.addr, "residue", "v1", &archive).await.status,
        201
    );
    let src = r#"
import os
paths = ["left.txt", "/tmp/left.txt", "/dev/shm/left.txt", os.path.expanduser("~/left2.txt")]
clean = not any(os.path.exists(p) for p in paths)
for p in paths:
    with open(p, "w") as f:
        f.write("residue")
me = os.path.abspath(__file__)
protected = True
for attempt in (lambda: open(me, "a").write("x"), lambda: os.remove(me),
                lambda: os.rename(me, me + ".moved"), lambda: os.chmod(me, 0o777)):
    try:
        attempt()
        protected = False
    except OSError:
        pass
print("clean" if clean else "dirty", "protected" if protected else "writable")
"#;
    let mut body = submission("residue", "python3", src);
    body["sourcefilename"] = "prog.py".into();
    let v = judge(d.addr, &body).await;
    assert_eq!(verdicts(&v), ["AC", "AC", "AC"], "{v:#}");
    // Nothing of the cases is left on the host either.
    let left = run_dirs_left(&d.data_dir.join("runs"), Duration::from_secs(5));
    assert!(left.is_empty(), "run directories left: {left:?}");
    let artifacts = d.data_dir.join("artifacts");
    let left: Vec<_> = std::fs::read_dir(&artifacts)
        .map(|r| r.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "artifacts left: {left:?}");
    d.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The API: idempotency, events, cancel, errors.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_idempotent_post_sse_resume_and_errors() {
    if !privileged() {
        return;
    }
    let d = daemon_with_sum(Opts::default()).await;
    let a = d.addr;
    let mut body = submission("sum", "python3", LANGS[7].ac);
    body["id"] = "client-42".into();
    let first = post(a, &body, false).await;
    assert_eq!(first.status, 202, "{}", first.text());
    let f = first.json();
    assert_eq!(f["id"], "client-42");
    assert_eq!(
        f["links"]["events"],
        format!("{J}/submissions/client-42/events")
    );
    // The same id again: the same submission, not a second one.
    body["sourcecode"] = LANGS[7].wa.into();
    let again = post(a, &body, false).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.json()["id"], "client-42");
    // The events, to the end (a finished or finishing submission's stream closes after done).
    let r = get(a, &format!("{J}/submissions/client-42/events")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "text/event-stream");
    let events = parse_sse(&r.text());
    let names: Vec<&str> = events.iter().map(|(_, n, _)| n.as_str()).collect();
    // python3's syntax check is deferred (docs/judge.md, "Deferred check"): `running` while
    // the first case runs alone, then `compile`, then the cases.
    assert_eq!(
        names,
        [
            "status", "status", "status", "compile", "case", "case", "case", "status", "done"
        ]
    );
    let done: Value = serde_json::from_str(&events.last().unwrap().2).unwrap();
    assert_eq!(
        done["verdict"], "AC",
        "the first request was judged: {done:#}"
    );
    // Resume after the fourth event.
    let r = request_with(
        a,
        "GET",
        &format!("{J}/submissions/client-42/events"),
        &[("Last-Event-ID", &events[3].0)],
        None,
    )
    .await
    .unwrap();
    let rest = parse_sse(&r.text());
    assert_eq!(rest.len(), 5);
    assert_eq!(rest[0].0, events[4].0);
    assert_eq!(rest, events[4..]);
    // GET is the done event's result.
    assert_eq!(
        get(a, &format!("{J}/submissions/client-42")).await.json(),
        done
    );
    // Errors: 400 naming the field, unknown language (Jobe's text), unknown test set, unknown id.
    for (patch, field) in [
        (json!({"problem": 7}), "problem"),
        (json!({"version": "a/b"}), "version"),
        (json!({"sourcecode": null}), "sourcecode"),
        (json!({"limits": {"cputime": -1}}), "limits.cputime"),
        (
            json!({"stop_on_first_failure": "yes"}),
            "stop_on_first_failure",
        ),
        (json!({"sourcefilename": "../x.py"}), "sourcefilename"),
    ] {
        let mut b = submission("sum", "python3", "print(1)");
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        let r = post(a, &b, false).await;
        assert_eq!(r.status, 400, "{patch}: {}", r.text());
        assert_eq!(r.json()["field"], field, "{patch}: {}", r.text());
    }
    let r = post(a, &submission("sum", "cobol", "x"), false).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "Language 'cobol' is not known");
    let r = post(a, &submission("nosuch", "python3", "x"), false).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"], "unknown test set nosuch/v1");
    assert_eq!(get(a, &format!("{J}/submissions/nope")).await.status, 404);
    // A path or method this API does not serve: still a JSON object with `error`.
    for (method, path) in [
        ("GET", format!("{J}/nothing")),
        ("POST", format!("{J}/problems/sum/testsets/v1")),
        ("PUT", format!("{J}/submissions/x")),
    ] {
        let r = request(a, method, &path, None).await.unwrap();
        assert_eq!(r.status, 404, "{method} {path}");
        assert!(
            r.json()["error"].is_string(),
            "{method} {path}: {}",
            r.text()
        );
    }
    let r = request(a, "POST", &format!("{J}/submissions"), Some(b"{nope"))
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["field"], "body");
    // The judge's metrics are served.
    let m = get(a, "/metrics").await.text();
    assert!(
        m.contains("runner_judge_submissions_total{lang=\"python3\",verdict=\"AC\"} 1"),
        "{m}"
    );
    assert!(m.contains("runner_judge_testset_hits_total"));
    d.stop().await;
}

/// With `[api.keys]`, every judge request needs a listed key (403 otherwise), and a submission
/// spends one run of the key's hourly budget (401 once spent), as a Jobe run does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_api_keys_apply() {
    if !privileged() {
        return;
    }
    // The test client always sends `daemon::API_KEY`: first a daemon that does not list it.
    let other = Daemon::start(Opts {
        api_keys: Some([("some-other-key".to_owned(), 0)].into()),
        ..Opts::default()
    })
    .await;
    let r = put_testset(other.addr, "sum", "v1", &sum_archive("")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"], "Unknown API key");
    let r = post(other.addr, &submission("sum", "c", "x"), false).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        get(other.addr, &format!("{J}/submissions/x")).await.status,
        403
    );
    other.stop().await;
    // Listed with a budget of one run per hour: uploads and reads are free, one submission is
    // accepted, the next is refused.
    let d = Daemon::start(Opts {
        api_keys: Some([(daemon::API_KEY.to_owned(), 1)].into()),
        ..Opts::default()
    })
    .await;
    assert_eq!(
        put_testset(d.addr, "sum", "v1", &sum_archive(""))
            .await
            .status,
        201
    );
    assert_eq!(
        get(d.addr, &format!("{J}/problems/sum/testsets/v1"))
            .await
            .status,
        200
    );
    let first = post(d.addr, &submission("sum", "python3", LANGS[7].ac), false).await;
    assert_eq!(first.status, 202, "{}", first.text());
    let second = post(d.addr, &submission("sum", "python3", LANGS[7].ac), false).await;
    assert_eq!(second.status, 401, "{}", second.text());
    let id = first.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(judge_final(d.addr, &id).await["verdict"], "AC");
    d.stop().await;
}

/// `(id, event, data)` of an SSE text.
fn parse_sse(text: &str) -> Vec<(String, String, String)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut id = None;
            let mut ev = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    ev = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(v.to_owned());
                }
            }
            Some((id?, ev?, data?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_cancel_kills_running_cases() {
    if !privileged() {
        return;
    }
    let d = daemon_with_sum(Opts::default()).await;
    let a = d.addr;
    let mut body = submission("sum", "c", LANGS[0].tle);
    body["limits"] = json!({"cputime": 30});
    body["id"] = "to-cancel".into();
    assert_eq!(post(a, &body, false).await.status, 202);
    // Until a case runs.
    let deadline = Instant::now() + Duration::from_secs(60).mul_f64(slowdown());
    while get(a, &format!("{J}/submissions/to-cancel")).await.json()["status"] != "running" {
        assert!(Instant::now() < deadline, "never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let r = request(a, "DELETE", &format!("{J}/submissions/to-cancel"), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v = judge_final(a, "to-cancel").await;
    assert!(
        t.elapsed() < Duration::from_secs(10).mul_f64(slowdown()),
        "cancel took {:?}",
        t.elapsed()
    );
    assert_eq!(v["status"], "cancelled");
    assert_eq!(v["verdict"], Value::Null);
    assert_eq!(verdicts(&v), ["SK", "SK", "SK"], "{v:#}");
    daemon::assert_no_jailed(d.uids.clone(), Duration::from_secs(5));
    let r = request(a, "DELETE", &format!("{J}/submissions/to-cancel"), None)
        .await
        .unwrap();
    assert_eq!(r.status, 409);
    // Cancelled while compiling: the compiler is killed at once (this one would run into the
    // compile step's CPU limit, seconds later), and the slot is free again.
    let slow_compile = "constexpr long f(long k){long s=0;for(long i=0;i<200000;i++)s+=i^k;return s;}\n\
        template<int K> struct R { static constexpr long v = f(K) + R<K-1>::v; };\n\
        template<> struct R<0> { static constexpr long v = 0; };\n\
        static_assert(R<800>::v != 0, \"x\");\nint main(){}\n";
    let mut body = submission("sum", "cpp", slow_compile);
    body["id"] = "cancel-compiling".into();
    assert_eq!(post(a, &body, false).await.status, 202);
    let deadline = Instant::now() + Duration::from_secs(60).mul_f64(slowdown());
    while daemon::jailed_pids(d.uids.clone()).is_empty() {
        assert!(Instant::now() < deadline, "the compiler never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v = get(a, &format!("{J}/submissions/cancel-compiling"))
        .await
        .json();
    assert_eq!(v["status"], "compiling", "{v:#}");
    let r = request(
        a,
        "DELETE",
        &format!("{J}/submissions/cancel-compiling"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    daemon::assert_no_jailed(
        d.uids.clone(),
        Duration::from_millis(1500).mul_f64(slowdown()),
    );
    let v = judge_final(a, "cancel-compiling").await;
    assert_eq!(v["status"], "cancelled", "{v:#}");
    assert_eq!(verdicts(&v), ["SK", "SK", "SK"], "{v:#}");
    // Draining: new submissions get 503 with Retry-After; reads still work.
    d.judge().begin_drain();
    let r = post(a, &submission("sum", "c", LANGS[0].ac), false).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
    assert_eq!(
        get(a, &format!("{J}/submissions/to-cancel")).await.status,
        200
    );
    d.stop().await;
}

async fn judge_final(a: SocketAddr, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60).mul_f64(slowdown());
    loop {
        let v = get(a, &format!("{J}/submissions/{id}")).await.json();
        if v["status"] == "done" || v["status"] == "cancelled" {
            return v;
        }
        assert!(Instant::now() < deadline, "not finished: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The origin.

/// A tiny HTTP origin on 127.0.0.1 that answers every request with `body` after `delay`, and
/// counts the requests.
struct TestOrigin {
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TestOrigin {
    async fn start(addr: &str, body: Vec<u8>, delay: Duration) -> TestOrigin {
        let l = tokio::net::TcpListener::bind(addr).await.unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let n = requests.clone();
        let body = Arc::new(body);
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let (n, body) = (n.clone(), body.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => head.extend_from_slice(&b[..k]),
                        }
                    }
                    n.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.write_all(&body).await;
                });
            }
        });
        TestOrigin { requests, task }
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn with_origin(addr: SocketAddr) -> Opts {
    Opts {
        judge: runner::judge::RawJudge {
            origin_url: Some(format!(
                "http://{addr}/testsets/{{problem}}/{{version}}.tgz"
            )),
            origin_token: Some("origin-secret".into()),
            origin_timeout_secs: Some(10.0),
            ..Default::default()
        },
        ..Opts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_origin_single_flight_down_then_up() {
    if !privileged() {
        return;
    }
    // Down: a port with nothing listening.
    let port = daemon::free_port();
    let down: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let d = Daemon::start(with_origin(down)).await;
    let a = d.addr;
    let v = judge(a, &submission("sum", "python3", LANGS[7].ac)).await;
    assert_eq!(v["verdict"], "IE", "{v:#}");
    assert_eq!(v["compile"]["verdict"], "IE");
    let msg = v["compile"]["output"].as_str().unwrap();
    assert!(msg.contains("sum/v1") && msg.contains("origin"), "{msg}");
    assert!(!msg.contains("origin-secret"), "{msg}");
    // Up (slow, so that all 20 arrive during one fetch): 20 at once, one fetch.
    let origin = TestOrigin::start(
        &down.to_string(),
        sum_archive("cputime = 1\n"),
        Duration::from_millis(1500),
    )
    .await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(async move { judge(a, &submission("sum", "python3", LANGS[7].ac)).await })
        })
        .collect();
    for t in tasks {
        let v = t.await.unwrap();
        assert_eq!(v["verdict"], "AC", "{v:#}");
    }
    assert_eq!(origin.requests.load(Ordering::SeqCst), 1, "single flight");
    let m = get(a, "/metrics").await.text();
    assert!(m.contains("runner_judge_testset_fetches_total 2"), "{m}");
    assert!(
        m.contains("runner_judge_testset_fetch_failures_total 1"),
        "{m}"
    );
    drop(origin);
    d.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Durability.

/// SIGKILL the daemon while a submission runs, start it again on the same data directory: the
/// submission is judged again and its result arrives (attempt 2); a finished one stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_restart_after_sigkill_finishes_the_submission() {
    if !privileged() {
        return;
    }
    let (dir, uid_base) = daemon::unique();
    let mut first = BinDaemon::start(&dir, uid_base, 2).await;
    first.keep_data_dir = true;
    let a = first.addr;
    let r = put_testset(a, "sum", "v1", &sum_archive("cputime = 1\n")).await;
    assert_eq!(r.status, 201);
    // Finished before the crash.
    let mut done = submission("sum", "python3", LANGS[7].ac);
    done["id"] = "finished-before".into();
    assert_eq!(judge(a, &done).await["verdict"], "AC");
    // Slow enough to be killed mid-way: each case sleeps.
    let slow = "import time\ntime.sleep(1.5)\na, b = map(int, input().split())\nprint(a + b)\n";
    let mut body = submission("sum", "python3", slow);
    body["id"] = "survivor".into();
    assert_eq!(post(a, &body, false).await.status, 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(a, &format!("{J}/submissions/survivor")).await.json()["status"] != "running" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.signal("-KILL");
    first.wait(Duration::from_secs(10)).await;
    drop(first);
    let second = BinDaemon::start(&dir, uid_base, 2).await;
    let v = judge_final(second.addr, "survivor").await;
    assert_eq!(v["verdict"], "AC", "{v:#}");
    let r = get(second.addr, &format!("{J}/submissions/survivor/events")).await;
    let events = parse_sse(&r.text());
    assert!(
        events[0].0.starts_with("2-"),
        "a second attempt: {:?}",
        events[0]
    );
    let before = get(second.addr, &format!("{J}/submissions/finished-before")).await;
    assert_eq!(before.json()["verdict"], "AC");
    // The same id after the restart is still the same submission.
    let again = post(second.addr, &done, false).await;
    assert_eq!(again.json()["status"], "done");
    drop(second);
}

/// SIGTERM while a submission runs: the daemon lets it finish (within `shutdown_grace_secs`)
/// before it exits, so after a restart it is done in its first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_sigterm_lets_running_submissions_finish() {
    if !privileged() {
        return;
    }
    let (dir, uid_base) = daemon::unique();
    let mut first = BinDaemon::start(&dir, uid_base, 2).await;
    first.keep_data_dir = true;
    let a = first.addr;
    assert_eq!(
        put_testset(a, "sum", "v1", &sum_archive("cputime = 1\n"))
            .await
            .status,
        201
    );
    let slow = "import time\ntime.sleep(1)\na, b = map(int, input().split())\nprint(a + b)\n";
    let mut body = submission("sum", "python3", slow);
    body["id"] = "drained".into();
    assert_eq!(post(a, &body, false).await.status, 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(a, &format!("{J}/submissions/drained")).await.json()["status"] != "running" {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.signal("-TERM");
    let st = first.wait(Duration::from_secs(30)).await;
    assert!(st.success(), "{st}:\n{}", first.log_text());
    assert!(
        first
            .log_text()
            .contains("submission finished submission=drained")
    );
    drop(first);
    let second = BinDaemon::start(&dir, uid_base, 2).await;
    let v = get(second.addr, &format!("{J}/submissions/drained"))
        .await
        .json();
    assert_eq!(v["status"], "done", "{v:#}");
    assert_eq!(v["verdict"], "AC");
    let events = parse_sse(
        &get(second.addr, &format!("{J}/submissions/drained/events"))
            .await
            .text(),
    );
    assert!(events[0].0.starts_with("1-"), "{:?}", events[0]);
    drop(second);
}

// ---------------------------------------------------------------------------------------------
// Local use: `runner judge`.

/// `runner judge` as a problem setter runs it: `args` after `--config <cfg> judge`. Returns the
/// exit code, stdout and stderr, after checking that its private data directory is gone.
fn runner_judge(config: &std::path::Path, args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let child = std::process::Command::new(daemon::runner_binary())
        .arg("--config")
        .arg(config)
        .arg("judge")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run runner judge");
    let private = std::env::temp_dir().join(format!("runner-cli-{}", child.id()));
    let out = child.wait_with_output().expect("runner judge output");
    assert!(
        !private.exists(),
        "{} left behind:\n{}",
        private.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The verdict column of `runner judge`'s table, by case name in the printed order.
fn table_rows(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("verdict:"))
        .map(|l| {
            let mut f = l.split_whitespace();
            (f.next().unwrap().to_owned(), f.next().unwrap().to_owned())
        })
        .collect()
}

/// `runner judge --testset` on a problem folder and on a tar.gz of it: the table in natural case
/// order, one progress mark per case on stderr, exit 0 for AC and 1 otherwise, `--compare`
/// overriding `problem.toml`, `--stop-on-first-failure`, Ctrl-C, and nothing left behind
/// (private data directory, cgroups, mounts, jailed processes).
#[test]
fn judge_cli_on_a_problem_folder() {
    if !privileged() {
        return;
    }
    let (dir, uid_base) = daemon::unique();
    let folder = dir.join("sum");
    std::fs::create_dir_all(&folder).unwrap();
    for (name, data) in [
        ("1.in", "1 2\n"),
        ("1.out", "3\n"),
        ("2.in", "5 5\n"),
        ("2.ans", "10\n"),
        ("10.in", "-4 10\n"),
        ("10.out", "6\n"),
        ("problem.toml", "cputime = 2\n"),
    ] {
        std::fs::write(folder.join(name), data).unwrap();
    }
    let config = dir.join("runner.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\nslots = 2\n[jail]\nuid_base = {uid_base}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let src = |name: &str, code: &str| {
        let p = dir.join(name);
        std::fs::write(&p, code).unwrap();
        p
    };
    let ac = src("ac.py", LANGS[7].ac);
    // Right within 1e-6 but not token-equal: WA by default, AC with --compare float.
    let close = src(
        "close.py",
        "a, b = map(int, input().split())\nprint(f\"{a + b + 1e-7:.7f}\")\n",
    );
    let wa = src("wa.py", LANGS[7].wa);
    let tgz = dir.join("sum.tgz");
    let st = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(&dir)
        .arg("sum")
        .status()
        .expect("tar");
    assert!(st.success());
    let os = |p: &std::path::Path| p.as_os_str().to_owned();
    let py = std::ffi::OsString::from("python3");
    let (flag_testset, flag_lang) = (
        std::ffi::OsString::from("--testset"),
        std::ffi::OsString::from("--lang"),
    );
    let judge_args = |testset: &std::path::Path, prog: &std::path::Path, extra: &[&str]| {
        let mut v: Vec<std::ffi::OsString> = vec![
            flag_testset.clone(),
            os(testset),
            flag_lang.clone(),
            py.clone(),
            os(prog),
        ];
        v.extend(extra.iter().map(std::ffi::OsString::from));
        v
    };
    let run = |args: Vec<std::ffi::OsString>| {
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsString::as_os_str).collect();
        runner_judge(&config, &refs)
    };
    let cases = |v: &[&str]| -> Vec<(String, String)> {
        ["1", "2", "10"]
            .iter()
            .zip(v)
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    };

    // AC on the folder: exit 0, cases in natural order, three marks on stderr.
    let (code, out, err) = run(judge_args(&folder, &ac, &[]));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.starts_with("case "), "{out}");
    assert_eq!(table_rows(&out), cases(&["AC", "AC", "AC"]), "{out}");
    assert!(out.contains("verdict: AC (3/3 passed;"), "{out}");
    assert!(err.contains("..."), "one mark per case: {err:?}");
    // The same on the archive of the folder.
    let (code, out, err) = run(judge_args(&tgz, &ac, &[]));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(table_rows(&out), cases(&["AC", "AC", "AC"]), "{out}");

    // WA: exit 1, the difference in the message column.
    let (code, out, err) = run(judge_args(&folder, &wa, &[]));
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(table_rows(&out), cases(&["WA", "WA", "WA"]), "{out}");
    assert!(out.contains(r#"expected "3", got "42""#), "{out}");
    assert!(err.contains("WWW"), "{err:?}");
    // --stop-on-first-failure: the later cases are SK.
    let (code, out, _) = run(judge_args(&folder, &wa, &["--stop-on-first-failure"]));
    assert_eq!(code, 1);
    assert_eq!(table_rows(&out), cases(&["WA", "SK", "SK"]), "{out}");

    // --compare overrides the test set's mode, on the folder and on the archive.
    let (code, out, _) = run(judge_args(&folder, &close, &[]));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("verdict: WA"), "{out}");
    for testset in [&folder, &tgz] {
        let (code, out, err) = run(judge_args(testset, &close, &["--compare", "float"]));
        assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
        assert_eq!(table_rows(&out), cases(&["AC", "AC", "AC"]), "{out}");
    }
    let (code, _, err) = run(judge_args(&folder, &close, &["--compare", "floaty"]));
    assert_ne!(code, 0);
    assert!(err.contains("one of: text, token, float"), "{err}");

    // Ctrl-C mid-case: the submission is cancelled, and its jails, cgroups, mounts and private
    // data directory are gone when the command exits (1, "interrupted").
    let slow = src("slow.py", "import time\ntime.sleep(60)\n");
    let err_path = dir.join("interrupted.err");
    let mut child = std::process::Command::new(daemon::runner_binary())
        .arg("--config")
        .arg(&config)
        .arg("judge")
        .args(judge_args(&folder, &slow, &[]))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("run runner judge");
    let pid = child.id();
    let uids = uid_base..uid_base + 2;
    let deadline = Instant::now() + Duration::from_secs(60).mul_f64(slowdown());
    while daemon::jailed_pids(uids.clone()).is_empty() {
        assert!(Instant::now() < deadline, "no case started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited before a case ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("runner judge did not exit within 20 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("runner: interrupted"), "{err}");
    let private = std::env::temp_dir().join(format!("runner-cli-{pid}"));
    assert!(!private.exists(), "{} left behind", private.display());
    assert_eq!(daemon::own_cgroups(pid), Vec::<std::path::PathBuf>::new());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(&format!("runner-cli-{pid}/")),
        "mounts left:\n{mounts}"
    );
    daemon::assert_no_jailed(uids, Duration::from_secs(5));

    // A bad folder is refused with the store's message, and exit 1.
    std::fs::remove_file(folder.join("10.out")).unwrap();
    let (code, out, err) = run(judge_args(&folder, &ac, &[]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("10.in"), "names the unpaired case: {err}");

    // Nothing left: no jailed process of its uids (each run's private data directory is
    // checked in `runner_judge`).
    daemon::assert_no_jailed(uid_base..uid_base + 2, Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pure cgroup v2 VM: one end-to-end judge run (C, AC and TLE) with its jails there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_judge_end_to_end_c() {
    if !privileged() {
        return;
    }
    let d = daemon_with_sum(Opts::default()).await;
    let v = judge(d.addr, &submission("sum", "c", LANGS[0].ac)).await;
    assert_eq!(v["verdict"], "AC", "{v:#}");
    assert_eq!(verdicts(&v), ["AC", "AC", "AC"]);
    let mut body = submission("sum", "c", LANGS[0].tle);
    body["limits"] = json!({"cputime": 0.5});
    let v = judge(d.addr, &body).await;
    assert_eq!(v["verdict"], "TLE", "{v:#}");
    d.stop().await;
}
