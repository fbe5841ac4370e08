//! Tier: privileged (docs/testing.md). Request robustness with real jails (root). The hostile
//! request values of runner/tests/http_robust.rs that pass validation, taken to the end: through
//! a real daemon, they must end as a Jobe outcome (never a 500, never a daemon error) or a clear
//! 400, and leave nothing behind (`Daemon::stop` checks cgroups and jailed processes; run
//! directories are checked here). See docs/robustness.md.

#![allow(
    unused_crate_dependencies,
    reason = "integration test crate uses a subset"
)]

use std::time::Duration;

use runner_tests::daemon::*;
use runner_tests::privileged;
use serde_json::{Value, json};

/// What a case must give.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// HTTP 200 with one of these outcomes.
    Outcome(&'static [i64]),
    /// HTTP 400 whose message contains this.
    Bad(&'static str),
}

struct Case {
    name: &'static str,
    spec: Value,
    want: Want,
    /// If set, the stdout the run must produce.
    stdout: Option<&'static str>,
}

fn py(src: &str, params: Value) -> Value {
    json!({"language_id": "python3", "sourcecode": src, "parameters": params})
}

fn c(src: &str, params: Value) -> Value {
    json!({"language_id": "c", "sourcecode": src, "parameters": params})
}

const HELLO_PY: &str = "print('hello')\n";
const HELLO_C: &str = "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n";
const ECHO_PY: &str = "import sys\nsys.stdout.buffer.write(sys.stdin.buffer.read())\n";
const OK: Want = Want::Outcome(&[15]);

fn cases() -> Vec<Case> {
    let case = |name, spec, want| Case {
        name,
        spec,
        want,
        stdout: None,
    };
    let out = |name, spec, stdout| Case {
        name,
        spec,
        want: OK,
        stdout: Some(stdout),
    };
    let long_c_name = format!("{}.c", "a".repeat(198));
    let long_class = "C".repeat(300);
    let java_long = format!(
        "public class {long_class} {{ public static void main(String[] a) {{ System.out.println(1); }} }}\n"
    );
    let mut with_input = py(ECHO_PY, json!({}));
    with_input["input"] = json!("a\0b\n");
    let mut spaced = py(HELLO_PY, json!({}));
    spaced["sourcefilename"] = json!("my prög 1.py");
    let mut long_name = c(HELLO_C, json!({}));
    long_name["sourcefilename"] = json!(long_c_name);
    let mut too_long_name = c(HELLO_C, json!({}));
    too_long_name["sourcefilename"] = json!(format!("a{long_c_name}a"));
    vec![
        // Limits: tiny, huge, fractional, at the edges.
        case(
            "cputime 1e-300",
            py("while True: pass\n", json!({"cputime": 1e-300})),
            Want::Outcome(&[13]),
        ),
        case(
            "cputime 0.05",
            py("while True: pass\n", json!({"cputime": 0.05})),
            Want::Outcome(&[13]),
        ),
        case("cputime 120.9", py(HELLO_PY, json!({"cputime": 120.9})), OK),
        case(
            "cputime 121",
            py(HELLO_PY, json!({"cputime": 121})),
            Want::Bad("cputime exceeds maximum"),
        ),
        case(
            "memorylimit 1e-9 (1 MB floor)",
            py(HELLO_PY, json!({"memorylimit": 1e-9})),
            Want::Outcome(&[17]),
        ),
        case(
            "memorylimit 0.5 C",
            c(HELLO_C, json!({"memorylimit": 0.5})),
            // C runs under RLIMIT_AS = the memory limit (1 MB floor) as on Jobe, and under the
            // cgroup's 1 MB: the loader cannot map libc (12) or the cgroup kills it first (17),
            // whichever limit it meets first; never a daemon error.
            Want::Outcome(&[12, 17]),
        ),
        case(
            "memorylimit 1e308 (clamped)",
            py(HELLO_PY, json!({"memorylimit": 1e308})),
            OK,
        ),
        case(
            "memorylimit 0 (maximum)",
            py(HELLO_PY, json!({"memorylimit": 0})),
            OK,
        ),
        // 0 is not raised to the compile minimum (Jobe's rule): py_compile cannot write.
        case(
            "disklimit 0",
            py(HELLO_PY, json!({"disklimit": 0})),
            Want::Outcome(&[11]),
        ),
        case(
            "disklimit 1 KB and a bigger write",
            py(
                "open('f','w').write('x'*10000)\n",
                json!({"disklimit": 0.001}),
            ),
            Want::Outcome(&[12]),
        ),
        case(
            "disklimit 1e308",
            py(HELLO_PY, json!({"disklimit": 1e308})),
            OK,
        ),
        case(
            "streamsize 0",
            py(HELLO_PY, json!({"streamsize": 0})),
            Want::Outcome(&[12, 15]),
        ),
        case(
            "streamsize 1e308",
            py(HELLO_PY, json!({"streamsize": 1e308})),
            OK,
        ),
        case("numprocs 1", py(HELLO_PY, json!({"numprocs": 1})), OK),
        case("numprocs 1.5", c(HELLO_C, json!({"numprocs": 1.5})), OK),
        case(
            "numprocs 1e308",
            py(HELLO_PY, json!({"numprocs": 1e308})),
            OK,
        ),
        case(
            "numprocs 0.5",
            py(HELLO_PY, json!({"numprocs": 0.5})),
            Want::Bad("numprocs"),
        ),
        case(
            "every limit non-numeric",
            py(
                HELLO_PY,
                json!({"cputime": "x", "memorylimit": [], "disklimit": {}, "streamsize": true, "numprocs": null}),
            ),
            OK,
        ),
        // NUL bytes and odd encodings.
        case(
            "NUL in C source",
            c("int main(void) { return 0; }\0\n", json!({})),
            Want::Outcome(&[11, 15]),
        ),
        case(
            "NUL in python source",
            py("print(1)\0\n", json!({})),
            Want::Outcome(&[11]),
        ),
        out("NUL in input", with_input, "a\u{0}b\n"),
        out(
            "invalid UTF-8 output",
            py(
                "import sys\nsys.stdout.buffer.write(b'\\xff\\n')\n",
                json!({}),
            ),
            "\\xff\n",
        ),
        case(
            "NUL in runargs",
            py(HELLO_PY, json!({"runargs": ["a\0"]})),
            Want::Bad("must not contain NUL"),
        ),
        case(
            "NUL in main_class",
            json!({"language_id": "java", "sourcecode": "x", "parameters": {"main_class": "M\0"}}),
            Want::Bad("must not contain NUL"),
        ),
        // Huge arguments: the kernel refuses one over 128 KiB (E2BIG): the program's failure.
        case(
            "one 200 KiB runarg",
            py(HELLO_PY, json!({"runargs": ["x".repeat(200 << 10)]})),
            Want::Outcome(&[12]),
        ),
        out(
            "10 000 runargs",
            py(
                "import sys\nprint(len(sys.argv))\n",
                json!({"runargs": vec!["-x"; 10_000]}),
            ),
            "10001\n",
        ),
        case(
            "compileargs with shell syntax",
            c(
                HELLO_C,
                json!({"compileargs": ["-DX=$(touch /tmp/pwned)", "`id`", ";", "|"]}),
            ),
            Want::Outcome(&[11]),
        ),
        // Names.
        out("sourcefilename with spaces and UTF-8", spaced, "hello\n"),
        out("sourcefilename of 200 bytes", long_name, "hello\n"),
        case(
            "sourcefilename of 202 bytes",
            too_long_name,
            Want::Bad("longer than 200 bytes"),
        ),
        case(
            "Java class name of 300 bytes",
            json!({"language_id": "java", "sourcecode": java_long}),
            Want::Outcome(&[11]),
        ),
        case(
            "Java main_class of 100 000 bytes",
            json!({"language_id": "java", "sourcecode": "public class M { public static void main(String[] a) {} }\n", "sourcefilename": "M.java", "parameters": {"main_class": "M".repeat(100_000)}}),
            Want::Outcome(&[12]),
        ),
        // A large source.
        out(
            "1 MiB of comments",
            py(
                &format!("{}print('hello')\n", "# x\n".repeat(1 << 18)),
                json!({}),
            ),
            "hello\n",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_hostile_values_end_as_outcomes() {
    if !privileged() {
        return;
    }
    tokio::time::timeout(Duration::from_secs(600), async {
        let d = Daemon::start(Opts::default()).await;
        let cases = cases();
        let mut failures = Vec::new();
        // Four at a time on two slots: the queue is exercised too.
        for chunk in cases.chunks(4) {
            let answers =
                futures_join(chunk.iter().map(|c| post_run(d.addr, c.spec.clone()))).await;
            for (c, r) in chunk.iter().zip(answers) {
                if let Err(e) = check(c, &r) {
                    failures.push(format!("{}: {e}", c.name));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        eprintln!("{} cases", cases.len());
        // Nothing left in the run directories, and no file written outside them.
        let left = run_dirs_left(&d.data_dir.join("runs"), Duration::from_secs(5));
        assert!(left.is_empty(), "run directories left: {left:?}");
        assert!(!std::path::Path::new("/tmp/pwned").exists());
        d.stop().await;
    })
    .await
    .expect("bounded");
}

fn check(c: &Case, r: &Resp) -> Result<(), String> {
    match c.want {
        Want::Outcome(outcomes) => {
            if r.status != 200 {
                return Err(format!("HTTP {} {}", r.status, r.text()));
            }
            let v = r.json();
            let got = v["outcome"].as_i64().unwrap_or(-1);
            if !outcomes.contains(&got) {
                return Err(format!("outcome {got}, want one of {outcomes:?}: {v}"));
            }
            if let Some(want) = c.stdout
                && v["stdout"] != want
            {
                return Err(format!("stdout {}, want {want:?}", v["stdout"]));
            }
            Ok(())
        }
        Want::Bad(needle) => {
            let m = r.json();
            if r.status != 400 || !m.as_str().is_some_and(|m| m.contains(needle)) {
                return Err(format!("HTTP {} {m}, want 400 with {needle:?}", r.status));
            }
            Ok(())
        }
    }
}

/// Runs the futures concurrently (tokio tasks), answers in order.
async fn futures_join<F>(futs: impl Iterator<Item = F>) -> Vec<Resp>
where
    F: std::future::Future<Output = Resp> + Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("request task"));
    }
    out
}
