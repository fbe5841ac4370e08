//! Tier: privileged (docs/testing.md). The deferred syntax check (docs/profiles.md, "Deferred
//! check") answers exactly as the two-step order does. The corpus in `tests/equivalence/`
//! (python3 and php: syntax errors, runtime errors, other programs; support files, stdin and
//! run_spec fields beside each case) goes through two real daemons: one with the shipped
//! profiles (run first, check when needed) and one whose python3 and php profiles are the
//! shipped ones without `[compile.deferred]` (check first, as Jobe). Outcome, cmpinfo, stdout
//! and stderr must be equal byte for byte, the random run directory name aside.
//!
//! The profiles' lists rest on facts about the installed interpreters (what `python3 -m
//! py_compile` imports, what the CLI's php.ini loads, where php displays errors without one);
//! the other tests here check those facts on this host, so that a new interpreter version fails
//! a test instead of answering differently.

#![allow(
    unused_crate_dependencies,
    reason = "integration test crate uses a subset"
)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use runner::profile::Profile;
use runner_tests::daemon::*;
use runner_tests::privileged;
use serde_json::{Value, json};

/// The whole corpus of one language through two daemons, under load from other suites.
const TEST_TIMEOUT: Duration = Duration::from_secs(900);

const KINDS: [&str; 3] = ["syntax", "runtime", "other"];

/// One program of the corpus.
struct Case {
    /// `<lang>/<kind>/<name>`, for messages.
    id: String,
    kind: &'static str,
    source: String,
    /// `<name>.files/`: support files (Jobe's file_list), by name.
    files: Vec<(String, Vec<u8>)>,
    /// `<name>.json`: run_spec fields to add or replace (`sourcefilename`, `input`, `parameters`).
    extra: serde_json::Map<String, Value>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("equivalence")
}

/// The cases of `lang` (extension `ext`), in name order.
fn corpus(lang: &str, ext: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for kind in KINDS {
        let dir = corpus_dir().join(lang).join(kind);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(&format!(".{ext}")).map(str::to_owned)
            })
            .collect();
        names.sort();
        for name in names {
            let source = std::fs::read(dir.join(format!("{name}.{ext}"))).expect("source");
            let source = String::from_utf8(source)
                .unwrap_or_else(|_| panic!("{lang}/{kind}/{name}: a source travels as JSON text"));
            let mut files = Vec::new();
            if let Ok(entries) = std::fs::read_dir(dir.join(format!("{name}.files"))) {
                for e in entries.flatten() {
                    let data = std::fs::read(e.path()).expect("support file");
                    files.push((e.file_name().to_string_lossy().into_owned(), data));
                }
            }
            files.sort();
            let extra = match std::fs::read(dir.join(format!("{name}.json"))) {
                Ok(text) => serde_json::from_slice::<Value>(&text)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_else(|| panic!("{lang}/{kind}/{name}.json: not a JSON object")),
                Err(_) => serde_json::Map::new(),
            };
            cases.push(Case {
                id: format!("{lang}/{kind}/{name}"),
                kind,
                source,
                files,
                extra,
            });
        }
    }
    cases
}

/// The shipped profile of `lang`, as TOML text, without its `[compile.deferred]` table: the
/// two-step order.
fn two_step_profile(lang: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../profiles")
        .join(format!("{lang}.toml"));
    let text = std::fs::read_to_string(&path).expect("shipped profile");
    let mut v: toml::Table = toml::from_str(&text).expect("profile TOML");
    let compile = v
        .get_mut("compile")
        .and_then(toml::Value::as_table_mut)
        .expect("a [compile] table");
    assert!(
        compile.remove("deferred").is_some(),
        "{lang}: the shipped profile defers its check"
    );
    toml::to_string(&v).expect("TOML")
}

/// What differs from run to run whichever the order: the run directory's random name (`jobe_`
/// and six letters or digits, as `jobe_XXXXXX`) and the digits of the temporary file
/// `py_compile` writes its bytecode to (`….pyc.<digits>`, as `.pyc.N`).
fn normalise(s: &str) -> String {
    let s = replace_after(s, "jobe_", |rest| {
        let n = rest
            .bytes()
            .take(6)
            .filter(u8::is_ascii_alphanumeric)
            .count();
        (n == 6).then_some((6, "XXXXXX"))
    });
    replace_after(&s, ".pyc.", |rest| {
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        (n > 0).then_some((n, "N"))
    })
}

/// Replaces, after each `marker`, the bytes `what` measures (a length and the replacement).
fn replace_after(s: &str, marker: &str, what: impl Fn(&str) -> Option<(usize, &str)>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(marker) {
        out.push_str(&rest[..i + marker.len()]);
        rest = &rest[i + marker.len()..];
        if let Some((len, with)) = what(rest) {
            out.push_str(with);
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    out
}

/// PUTs the case's support files into `addr`'s file cache; the run_spec's `file_list`.
async fn put_files(addr: SocketAddr, case: &Case) -> Value {
    let mut list = Vec::new();
    for (name, data) in &case.files {
        let id = md5_hex(data);
        let body = json!({"file_contents": STANDARD.encode(data)}).to_string();
        let r = request(
            addr,
            "PUT",
            &format!("{BASE}/files/{id}"),
            Some(body.as_bytes()),
        )
        .await
        .expect("PUT files");
        assert_eq!(r.status, 204, "{}: PUT {name}: {}", case.id, r.text());
        list.push(json!([id, name]));
    }
    Value::Array(list)
}

/// Runs `case` on `addr`; the result object with the run directory's name normalised.
async fn run_case(addr: SocketAddr, lang: &str, default_name: &str, case: &Case) -> Value {
    let mut s = spec(lang, &case.source, Some(default_name), json!([]));
    s["file_list"] = put_files(addr, case).await;
    for (k, v) in &case.extra {
        s[k] = v.clone();
    }
    let r = post_run(addr, s).await;
    assert_eq!(r.status, 200, "{}: {}", case.id, r.text());
    let v = r.json();
    let text = |k: &str| normalise(v[k].as_str().unwrap_or_default());
    json!({
        "outcome": v["outcome"],
        "cmpinfo": text("cmpinfo"),
        "stdout": text("stdout"),
        "stderr": text("stderr"),
    })
}

/// `runner_deferred_checks_total{result}` of a daemon.
async fn deferred_checks(addr: SocketAddr, result: &str) -> u64 {
    let r = request(addr, "GET", "/metrics", None)
        .await
        .expect("GET metrics");
    let prefix = format!("runner_deferred_checks_total{{result=\"{result}\"}} ");
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix}in /metrics"))
}

/// The corpus of `lang` through a deferring and a two-step daemon, case by case.
async fn equivalence(lang: &'static str, ext: &str, default_name: &'static str) {
    let cases = corpus(lang, ext);
    let count = |kind: &str| cases.iter().filter(|c| c.kind == kind).count();
    assert!(
        count("syntax") >= 30 && count("runtime") >= 30,
        "{lang}: the corpus needs at least 30 syntax and 30 runtime errors"
    );
    let profiles = tempfile_dir(lang);
    std::fs::write(
        profiles.join(format!("{lang}.toml")),
        two_step_profile(lang),
    )
    .expect("write profile");
    let deferring = Daemon::start(Opts::default()).await;
    let two_step = Daemon::start(Opts {
        profiles_dir: Some(profiles.clone()),
        ..Opts::default()
    })
    .await;
    let (a, b) = (deferring.addr, two_step.addr);
    let cases = Arc::new(cases);
    // Two cases at a time, each on both daemons at once (two slots each).
    let mut tasks = tokio::task::JoinSet::new();
    for half in 0..2 {
        let cases = cases.clone();
        tasks.spawn(async move {
            let mut mismatches = Vec::new();
            for case in cases.iter().skip(half).step_by(2) {
                let (got, want) = tokio::join!(
                    run_case(a, lang, default_name, case),
                    run_case(b, lang, default_name, case)
                );
                let outcome = want["outcome"].as_i64().unwrap_or(-1);
                let as_filed = match case.kind {
                    "syntax" => outcome == 11,
                    // PHP without a php.ini displays runtime errors on stdout: Jobe's outcome
                    // is 15 unless the program wrote to stderr.
                    "runtime" if lang == "php" => outcome != 11,
                    "runtime" => outcome == 12,
                    _ => true,
                };
                if !as_filed {
                    mismatches.push(format!(
                        "{}: filed under {} but the two-step order answers {want}",
                        case.id, case.kind
                    ));
                }
                if got != want {
                    mismatches.push(format!(
                        "{}:\n  deferred: {got}\n  two-step: {want}",
                        case.id
                    ));
                }
            }
            mismatches
        });
    }
    let mut mismatches = Vec::new();
    while let Some(r) = tasks.join_next().await {
        mismatches.extend(r.expect("corpus task"));
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} cases answer differently:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
    // The deferring daemon deferred: clean runs alone, checks that failed and that passed.
    for result in ["skipped", "passed", "failed"] {
        assert!(
            deferred_checks(a, result).await > 0,
            "{lang}: no deferred check {result}"
        );
        assert_eq!(deferred_checks(b, result).await, 0, "two-step daemon");
    }
    deferring.stop().await;
    two_step.stop().await;
    let _ = std::fs::remove_dir_all(&profiles);
}

/// A fresh directory for a profiles_dir, removed by the test.
fn tempfile_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("runner-deferred-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("profiles dir");
    dir
}

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test took longer than its bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_check_python3_equals_two_steps() {
    if !privileged() {
        return;
    }
    bounded(equivalence("python3", "py", "__tester__.python3")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_check_php_equals_two_steps() {
    if !privileged() {
        return;
    }
    bounded(equivalence("php", "php", "__tester__.php")).await;
}

// ---------------------------------------------------------------------------------------------
// The facts the shipped rules rest on, on this host.

fn shipped(lang: &str) -> Profile {
    runner::profile::embedded_profiles()
        .expect("shipped profiles")
        .into_iter()
        .find(|p| p.id == lang)
        .expect("shipped profile")
}

/// Runs `argv` in `dir` with a job's small environment; (stdout, stderr).
fn host(dir: &Path, argv: &[&str]) -> (String, String) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("HOME", dir)
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Top-level modules named by `python3 -X importtime` on stderr.
fn imported(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("import time:"))
        .filter_map(|l| l.rsplit('|').next())
        .map(|m| m.trim().split('.').next().unwrap_or_default().to_owned())
        .filter(|m| !m.is_empty() && m != "package")
        .collect()
}

#[test]
fn python_check_imports_are_in_the_profile() {
    if !privileged() {
        return;
    }
    let dir = tempfile_dir("py-imports");
    std::fs::write(dir.join("prog.py"), "print(1)\n").expect("write");
    let (_, check) = host(
        &dir,
        &[
            "/usr/bin/python3",
            "-X",
            "importtime",
            "-m",
            "py_compile",
            "prog.py",
        ],
    );
    let (_, run) = host(
        &dir,
        &["/usr/bin/python3", "-X", "importtime", "-BE", "prog.py"],
    );
    // Built-in and frozen modules are found before the run directory is searched.
    let (fixed, _) = host(
        &dir,
        &[
            "/usr/bin/python3",
            "-c",
            "import sys, _imp; print(*sys.builtin_module_names, *_imp._frozen_module_names())",
        ],
    );
    let fixed: BTreeSet<&str> = fixed.split_whitespace().collect();
    let mut only_check: BTreeSet<String> = imported(&check)
        .difference(&imported(&run))
        .filter(|m| !fixed.contains(m.as_str()))
        .cloned()
        .collect();
    assert!(
        only_check.contains("argparse"),
        "python3 -X importtime output changed: {check}"
    );
    // `-m py_compile` itself is found on sys.path too.
    only_check.insert("py_compile".into());
    let rule = shipped("python3")
        .deferred
        .and_then(|d| d.eager_if_file_name_matches)
        .expect("python3 names the files the check imports");
    for m in &only_check {
        for name in [
            format!("{m}.py"),
            format!("{m}.pyc"),
            format!("{m}.cpython-311-x86_64-linux-gnu.so"),
        ] {
            assert!(
                rule.is_match(&name),
                "the check imports {m} from the run directory; profiles/python3.toml must send \
                 a request with a file {name} down the two-step order"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `php -r CODE` with the CLI's php.ini (`ini`) or without one (Jobe's run).
fn php(dir: &Path, ini: bool, code: &str) -> String {
    let mut argv = vec!["/usr/bin/php"];
    if !ini {
        argv.push("--no-php-ini");
    }
    argv.extend(["-r", code]);
    host(dir, &argv).0
}

#[test]
fn php_ini_differences_are_in_the_profile() {
    if !privileged() {
        return;
    }
    let dir = tempfile_dir("php-ini");
    // The run displays compile diagnostics on stdout (check_if_stdout_matches relies on it).
    assert_eq!(
        php(
            &dir,
            false,
            "echo ini_get('display_errors'), '|', ini_get('html_errors');"
        ),
        "1|0"
    );
    let names = |ini: bool, what: &str| -> BTreeSet<String> {
        php(&dir, ini, &format!("echo implode(\"\\n\", {what});"))
            .lines()
            .map(str::to_lowercase)
            .collect()
    };
    let functions = r#"get_defined_functions()["internal"]"#;
    let ini_only: Vec<String> = names(true, functions)
        .difference(&names(false, functions))
        .cloned()
        .collect();
    assert!(!ini_only.is_empty(), "php.ini loads no extension any more?");
    let rule = shipped("php")
        .deferred
        .and_then(|d| d.eager_if_source_matches)
        .expect("php names the sources the check reads differently");
    for f in &ini_only {
        let src = format!("<?php\nfunction {f}($x) {{ return $x; }}\n");
        assert!(
            rule.is_match(&src),
            "{f} exists only with php.ini: redeclaring it fails the check alone, so \
             profiles/php.toml must send such a source down the two-step order"
        );
    }
    // Classes of those extensions: a declaration of the same name is bound at run time, so
    // the check passes (no rule needed). Checked, not assumed.
    let classes = "get_declared_classes()";
    for class in names(true, classes).difference(&names(false, classes)) {
        if class.contains('\\') {
            continue; // namespaced: a top-level declaration cannot clash
        }
        std::fs::write(dir.join("prog.php"), format!("<?php\nclass {class} {{}}\n"))
            .expect("write");
        let (out, err) = host(&dir, &["/usr/bin/php", "-l", "prog.php"]);
        assert!(
            err.is_empty() && out.starts_with("No syntax errors"),
            "class {class}: the check fails ({out}{err}); profiles/php.toml needs a rule for it"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
