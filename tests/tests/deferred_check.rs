//! Tier: privileged (docs/testing.md). The deferred syntax check (docs/profiles.md, "Deferred
//! check") answers exactly as the two-step order does. The corpus in `tests/equivalence/`
//! (python3 and php: syntax errors, runtime errors, runs ended by a limit or a signal, other
//! programs; support files, stdin and run_spec fields beside each case, and large generated
//! sources) goes through two real daemons: one with the shipped
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

const KINDS: [&str; 4] = ["syntax", "runtime", "killed", "other"];

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
    cases.extend(generated(lang));
    cases
}

/// Killed runs of sources too large to keep as files: main files over the profiles' 16 KiB
/// bound of `compiled_after_cpu`, some of which take longer to compile than the run's CPU
/// budget (the run dies compiling; the check decides), one longer than the check's own.
fn generated(lang: &str) -> Vec<Case> {
    let case = |name: &str, source: String, cputime: f64| Case {
        id: format!("{lang}/killed/{name} (generated)"),
        kind: "killed",
        source,
        files: Vec::new(),
        extra: json!({"parameters": {"cputime": cputime}})
            .as_object()
            .cloned()
            .expect("object"),
    };
    let filler = |line: &str| line.repeat(20 * 1024 / line.len() + 1);
    match lang {
        "python3" => {
            // Keyword arguments: the compiler checks them for duplicates pairwise. 6000 take
            // ~0.3 s to compile, 20000 ~4 s, past the check's 2 s minimum.
            let call = |n: usize| {
                let args: Vec<String> = (0..n).map(|i| format!("a{i}=1")).collect();
                format!("def g(**k):\n    pass\n\ng({})\n", args.join(","))
            };
            let busy = "while True:\n    pass\n";
            vec![
                case(
                    "large_source_busy_loop",
                    format!("{}{busy}", filler("# a comment line of a large source\n")),
                    0.2,
                ),
                case(
                    "large_source_warning_then_loop",
                    format!("{}x = 1\nif x is 1:\n    pass\n{busy}", filler("pass\n")),
                    0.2,
                ),
                case(
                    "killed_while_compiling",
                    format!("{}{busy}", call(6000)),
                    0.1,
                ),
                // The parser finds this one at once (it reads the whole file before the
                // compiler starts): an ordinary syntax error, not a killed run.
                case(
                    "large_source_syntax_error_at_end",
                    format!("{}{busy}x = (\n", call(6000)),
                    0.1,
                ),
                // The compiler reports this one after the slow call: killed first.
                case(
                    "killed_while_compiling_compile_error_at_end",
                    format!("{}{busy}return 1\n", call(6000)),
                    0.1,
                ),
                case("check_time_limit", format!("{}{busy}", call(20000)), 0.1),
            ]
        }
        "php" => {
            // ~4 MB of functions take ~0.2 s to compile: past a 0.1 s budget.
            let functions: String = (0..100_000)
                .map(|i| format!("function f{i}($a) {{ return $a + {i}; }}\n"))
                .collect();
            let busy = "while (true) {}\n";
            vec![
                case(
                    "large_source_busy_loop",
                    format!(
                        "<?php\n{}{busy}",
                        filler("// a comment line of a large source\n")
                    ),
                    0.2,
                ),
                case(
                    "large_source_output_then_loop",
                    format!("<?php\n{}echo \"started\\n\";\n{busy}", filler("$x = 1;\n")),
                    0.2,
                ),
                case(
                    "killed_while_compiling",
                    format!("<?php\nini_set('memory_limit', '-1');\n{functions}{busy}"),
                    0.1,
                ),
                case(
                    "killed_while_compiling_syntax_error_at_end",
                    format!("<?php\nini_set('memory_limit', '-1');\n{functions}{busy}$x = (;\n"),
                    0.1,
                ),
            ]
        }
        _ => Vec::new(),
    }
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
    answer_parts(&r.json(), normalise)
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
        count("syntax") >= 30 && count("runtime") >= 30 && count("killed") >= 10,
        "{lang}: the corpus needs at least 30 syntax errors, 30 runtime errors and 10 runs \
         ended by a limit or a signal"
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

/// CPU time (s) a program took: `argv` run by a python3 that reads its children's usage.
fn cpu_of(dir: &Path, argv: &[&str]) -> f64 {
    let mut cmd = vec![
        "/usr/bin/python3",
        "-c",
        "import resource, subprocess, sys\n\
         subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
         r = resource.getrusage(resource.RUSAGE_CHILDREN)\n\
         print(r.ru_utime + r.ru_stime)",
    ];
    cmd.extend(argv);
    let (out, err) = host(dir, &cmd);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{argv:?}: {out}{err}"))
}

/// `compiled_after_cpu` (docs/profiles.md, "Deferred check"): starting the interpreter as a
/// run does and compiling a main file of the largest size the bound covers takes less than the
/// bound, for the costliest sources we know (each exits as its first statement, so what is
/// measured is the start and the compile); and the interpreter prints nothing on stdout before
/// the program runs (`compiled_if_stdout`).
#[test]
fn compile_cpu_bound_holds_on_this_host() {
    if !privileged() {
        return;
    }
    let dir = tempfile_dir("cpu-bound");
    let fill = |head: &str, unit: &dyn Fn(usize) -> String| {
        let mut s = head.to_owned();
        let mut i = 0;
        while s.len() + unit(i).len() <= 16 * 1024 {
            s.push_str(&unit(i));
            i += 1;
        }
        s
    };
    let py_exit = "import os\nos._exit(0)\n";
    let php_exit = "<?php\nexit(0);\n";
    let cases: Vec<(&str, String)> = vec![
        // Keyword arguments are checked for duplicates pairwise (quadratic).
        ("python3", {
            let mut s = fill(&format!("{py_exit}g("), &|i| format!("a{i}=1,"));
            s.push_str(")\n");
            s
        }),
        (
            "python3",
            fill(py_exit, &|_| {
                "def f(x):\n    return x*2+1\nprint(f(3))\n".into()
            }),
        ),
        (
            "python3",
            fill(py_exit, &|i| format!("x = f'{{a}}{{b}}{i}'\n")),
        ),
        (
            "python3",
            fill(py_exit, &|i| format!("x = [i for i in r if i > {i}]\n")),
        ),
        ("python3", {
            let mut s = fill(&format!("{py_exit}x = "), &|i| format!("a{i} < "));
            s.push_str("b\n");
            s
        }),
        (
            "php",
            fill(php_exit, &|i| {
                format!("function f{i}($a) {{ return $a + {i}; }}\n")
            }),
        ),
        ("php", {
            let mut s = fill(&format!("{php_exit}$x = ["), &|i| format!("{i}=>{i},"));
            s.push_str("];\n");
            s
        }),
        (
            "php",
            fill(php_exit, &|i| format!("$x{i} = \"s{{$y}}{i}\" . $z;\n")),
        ),
    ];
    for (lang, source) in cases {
        let (name, argv): (&str, &[&str]) = if lang == "php" {
            ("prog.php", &["/usr/bin/php", "--no-php-ini", "prog.php"])
        } else {
            ("prog.py", &["/usr/bin/python3", "-BE", "prog.py"])
        };
        std::fs::write(dir.join(name), &source).expect("write");
        let (stdout, stderr) = host(&dir, argv);
        assert!(
            stdout.is_empty() && stderr.is_empty(),
            "{lang}: the program exits first and prints nothing: {stdout}{stderr}"
        );
        let bound = shipped(lang)
            .deferred
            .and_then(|d| d.compiled_after_cpu)
            .expect("a compiled_after_cpu bound")
            .for_run(source.len() as u64, u64::MAX)
            .expect("within the bound's size");
        let cpu = cpu_of(&dir, argv);
        assert!(
            cpu < bound.as_secs_f64(),
            "{lang}: starting and compiling a {} byte source took {cpu} s of CPU, the bound \
             is {bound:?}: profiles/{lang}.toml compiled_after_cpu is unsafe here",
            source.len()
        );
        eprintln!(
            "{lang}: {} bytes, {:.1} ms of CPU, bound {bound:?} ({:.1} x)",
            source.len(),
            cpu * 1e3,
            bound.as_secs_f64() / cpu
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A killed run that proved it compiled costs no check: the deferring daemon's counters,
/// run by run (the equivalence above runs cases two at a time, so it cannot tell).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_skip_the_check() {
    if !privileged() {
        return;
    }
    bounded(async {
        let d = Daemon::start(Opts::default()).await;
        // (language, source, cputime, whether the check runs)
        let cases = [
            ("python3", "while True:\n    pass\n", 1.0, false),
            (
                "python3",
                "print('x', flush=True)\nimport time\ntime.sleep(9)\n",
                0.5,
                false,
            ),
            (
                "python3",
                "import sys\nsys.stderr.write('w\\n')\nwhile True:\n    pass\n",
                1.0,
                true,
            ),
            ("php", "<?php\nwhile (true) {}\n", 1.0, false),
            ("php", "<?php\necho 'x';\nsleep(9);\n", 0.5, false),
            (
                "php",
                "<?php\nswitch (1) { case 1: continue; }\nwhile (true) {}\n",
                1.0,
                true,
            ),
        ];
        for (lang, source, cputime, checked) in cases {
            let before = (
                deferred_checks(d.addr, "skipped").await,
                deferred_checks(d.addr, "passed").await + deferred_checks(d.addr, "failed").await,
            );
            let name = if lang == "php" { "prog.php" } else { "prog.py" };
            let mut s = spec(lang, source, Some(name), json!([]));
            s["parameters"] = json!({ "cputime": cputime });
            let r = post_run(d.addr, s).await;
            assert_eq!(r.status, 200, "{}", r.text());
            let after = (
                deferred_checks(d.addr, "skipped").await,
                deferred_checks(d.addr, "passed").await + deferred_checks(d.addr, "failed").await,
            );
            let want = if checked {
                (before.0, before.1 + 1)
            } else {
                (before.0 + 1, before.1)
            };
            assert_eq!(after, want, "{lang} {source:?}: {}", r.text());
        }
        d.stop().await;
    })
    .await;
}
