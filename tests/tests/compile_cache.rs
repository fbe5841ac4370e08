//! Tier: privileged (docs/testing.md). The compile cache (docs/performance.md, "Compile cache")
//! through real daemons: a hit answers exactly as the compile did (c, cpp, java, pascal, a C
//! compile error, python3's and php's syntax errors), a program that overwrites its own binary
//! or class file cannot change what the next identical submission runs, concurrent identical
//! submissions compile once, judge mode rejudges without compiling, the cache survives a
//! restart, and a daemon with the cache off never hits. Nothing is left behind.

#![allow(
    unused_crate_dependencies,
    reason = "integration test crate uses a subset"
)]

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use runner_tests::daemon::{self, BinDaemon, Daemon, Opts, answer_parts, post_run, request, spec};
use runner_tests::privileged;
use serde_json::{Value, json};

/// A value of `/metrics` (0 when the line is absent).
async fn metric(addr: SocketAddr, line_prefix: &str) -> u64 {
    let r = request(addr, "GET", "/metrics", None)
        .await
        .expect("GET metrics");
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
        .unwrap_or(0)
}

async fn hits(addr: SocketAddr, lang: &str) -> u64 {
    metric(
        addr,
        &format!("runner_compile_cache_hits_total{{lang=\"{lang}\"}}"),
    )
    .await
}

async fn misses(addr: SocketAddr, lang: &str) -> u64 {
    metric(
        addr,
        &format!("runner_compile_cache_misses_total{{lang=\"{lang}\"}}"),
    )
    .await
}

/// The Jobe answer's outcome, cmpinfo, stdout and stderr, the random run directory name
/// (`jobe_XXXXXX`, different in every run) replaced.
async fn run(addr: SocketAddr, s: Value) -> Value {
    let r = post_run(addr, s).await;
    assert_eq!(r.status, 200, "{}", r.text());
    answer_parts(&r.json(), normalise)
}

fn normalise(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("jobe_") {
        out.push_str(&rest[..i + 5]);
        let tail = &rest[i + 5..];
        let n = tail
            .bytes()
            .take(6)
            .take_while(u8::is_ascii_alphanumeric)
            .count();
        if n == 6 {
            out.push_str("XXXXXX");
            rest = &tail[6..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

async fn languages_served(addr: SocketAddr) -> Vec<String> {
    let r = request(addr, "GET", &format!("{}/languages", daemon::BASE), None)
        .await
        .expect("GET languages");
    r.json()
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|l| l[0].as_str().map(str::to_owned))
        .collect()
}

/// `(language, source name, source, expected outcome)`.
const CASES: &[(&str, Option<&str>, &str, i64)] = &[
    (
        "c",
        None,
        "#include <stdio.h>\nint main(void) { puts(\"hello c\"); return 0; }\n",
        15,
    ),
    ("c", None, "int main(void) { return 0 }\n", 11),
    (
        "cpp",
        None,
        "#include <iostream>\nint main() { std::cout << \"hello cpp\" << std::endl; }\n",
        15,
    ),
    (
        "java",
        Some("Hello.java"),
        "public class Hello { public static void main(String[] a) { System.out.println(\"hello java\"); } }\n",
        15,
    ),
    (
        "pascal",
        None,
        "program hello;\nbegin\n  writeln('hello pascal');\nend.\n",
        15,
    ),
    ("python3", None, "print('unclosed'\n", 11),
    ("php", None, "<?php\necho 'x'\necho 'y';\n", 11),
];

/// Each case twice on one daemon: the second answer is the first's, from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_cache_hit_answers_as_the_compile() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default()).await;
    let served = languages_served(d.addr).await;
    let mut checked = 0;
    for &(lang, name, source, outcome) in CASES {
        if !served.iter().any(|l| l == lang) {
            eprintln!("{lang} is not installed here: skipped");
            continue;
        }
        let s = spec(lang, source, name, json!({}));
        let before = hits(d.addr, lang).await;
        let first = run(d.addr, s.clone()).await;
        assert_eq!(first["outcome"], outcome, "{lang}: {first}");
        let second = run(d.addr, s).await;
        assert_eq!(second, first, "{lang}: the cached answer differs");
        assert_eq!(hits(d.addr, lang).await, before + 1, "{lang}: one hit");
        checked += 1;
    }
    assert!(
        checked >= 4,
        "too few languages installed to test the cache"
    );
    // Entries are root-owned and not writable by jobs.
    let dir = d.data_dir.join("compile-cache");
    check_read_only(&dir, 0);
    d.stop().await;
}

/// Every file and directory under `dir` is root's and writable by root only.
fn check_read_only(dir: &Path, depth: usize) {
    assert!(depth < 20);
    for e in std::fs::read_dir(dir).expect("read the cache").flatten() {
        let m = e.metadata().expect("stat");
        assert_eq!(m.uid(), 0, "{}", e.path().display());
        assert_eq!(
            m.permissions().mode() & 0o022,
            0,
            "{} is writable by others",
            e.path().display()
        );
        if m.is_dir() {
            check_read_only(&e.path(), depth + 1);
        }
    }
}

/// A program that replaces its own binary (class file) in its run directory: its own run
/// sees the change, the next identical submission still runs the original.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_cache_cannot_be_poisoned_by_a_job() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default()).await;
    let c = r##"#include <stdio.h>
int main(void) {
    puts("original");
    if (remove("prog.c.exe") != 0) { puts("cannot remove"); return 0; }
    FILE *f = fopen("prog.c.exe", "w");
    if (!f) { puts("cannot create"); return 0; }
    fputs("#!/bin/sh\necho poisoned\n", f);
    fclose(f);
    puts("replaced");
    return 0;
}
"##;
    for _ in 0..3 {
        let v = run(d.addr, spec("c", c, None, json!({}))).await;
        assert_eq!(v["stdout"], "original\nreplaced\n", "{v}");
    }
    assert_eq!(hits(d.addr, "c").await, 2);
    if languages_served(d.addr).await.iter().any(|l| l == "java") {
        let java = r#"import java.io.*;
public class Poison {
    public static void main(String[] a) throws Exception {
        System.out.println("original");
        try (FileOutputStream f = new FileOutputStream("Poison.class")) {
            f.write(new byte[] {1, 2, 3});
        }
        System.out.println("replaced");
    }
}
"#;
        for _ in 0..3 {
            let v = run(d.addr, spec("java", java, Some("Poison.java"), json!({}))).await;
            assert_eq!(v["stdout"], "original\nreplaced\n", "{v}");
        }
        assert_eq!(hits(d.addr, "java").await, 2);
    }
    d.stop().await;
}

/// Concurrent identical submissions: one compile (one miss), the others wait and hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_cache_single_flight() {
    if !privileged() {
        return;
    }
    const N: usize = 4;
    let d = Daemon::start(Opts {
        slots: N,
        ..Opts::default()
    })
    .await;
    let src =
        "#include <stdio.h>\n/* single flight */\nint main(void) { puts(\"once\"); return 0; }\n";
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..N {
        let addr = d.addr;
        tasks.spawn(async move { run(addr, spec("c", src, None, json!({}))).await });
    }
    while let Some(v) = tasks.join_next().await {
        let v = v.expect("task");
        assert_eq!(v["stdout"], "once\n", "{v}");
    }
    assert_eq!(misses(d.addr, "c").await, 1, "one compile");
    assert_eq!(hits(d.addr, "c").await, N as u64 - 1);
    d.stop().await;
}

/// Judge mode: the same submission twice; the second takes the compiled artifact from the
/// cache (a hit, no new miss) and is judged the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_cache_rejudge_does_not_compile() {
    if !privileged() {
        return;
    }
    let d = Daemon::start(Opts::default()).await;
    let tar = runner_tests::tar_of(&[
        ("1.in", &b"1 2\n"[..]),
        ("1.out", b"3\n"),
        ("2.in", b"5 5\n"),
        ("2.out", b"10\n"),
    ]);
    let r = request(
        d.addr,
        "PUT",
        "/judge/v1/problems/sum/testsets/v1",
        Some(&tar),
    )
    .await
    .expect("PUT testset");
    assert_eq!(r.status, 201, "{}", r.text());
    let src = "#include <stdio.h>\nint main(void) { int a, b; scanf(\"%d %d\", &a, &b); printf(\"%d\\n\", a + b); return 0; }\n";
    for attempt in 0..2 {
        let body =
            json!({"problem": "sum", "version": "v1", "language_id": "c", "sourcecode": src});
        let v = judge(d.addr, &body).await;
        assert_eq!(v["verdict"], "AC", "attempt {attempt}: {v:#}");
    }
    assert_eq!(misses(d.addr, "c").await, 1, "compiled once");
    assert_eq!(hits(d.addr, "c").await, 1, "the rejudge hit");
    // No artifact was copied out of the run directory: the cached entry was the artifact.
    let artifacts: Vec<_> = std::fs::read_dir(d.data_dir.join("artifacts"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(artifacts.is_empty(), "{artifacts:?}");
    d.stop().await;
}

async fn judge(addr: SocketAddr, body: &Value) -> Value {
    let r = request(
        addr,
        "POST",
        "/judge/v1/submissions?wait=true",
        Some(body.to_string().as_bytes()),
    )
    .await
    .expect("POST submission");
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
    let id = v["id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = request(addr, "GET", &format!("/judge/v1/submissions/{id}"), None)
            .await
            .expect("GET submission")
            .json();
        if v["status"] == "done" {
            return v;
        }
        assert!(Instant::now() < deadline, "not finished: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `runner serve` twice on one data directory: the second daemon hits what the first stored.
/// A daemon with `[compile_cache] enabled = false` never hits and keeps no directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_cache_survives_restart_and_can_be_turned_off() {
    if !privileged() {
        return;
    }
    let src = "#include <stdio.h>\n/* restart */\nint main(void) { puts(\"again\"); return 0; }\n";
    let (dir, uid_base) = daemon::unique();
    let mut first = BinDaemon::start(&dir, uid_base, 2).await;
    first.keep_data_dir = true;
    let want = run(first.addr, spec("c", src, None, json!({}))).await;
    assert_eq!(misses(first.addr, "c").await, 1);
    first.signal("-TERM");
    first.wait(Duration::from_secs(30)).await;
    drop(first);
    let second = BinDaemon::start(&dir, uid_base, 2).await;
    assert!(metric(second.addr, "runner_compile_cache_entries").await >= 1);
    let got = run(second.addr, spec("c", src, None, json!({}))).await;
    assert_eq!(got, want);
    assert_eq!(hits(second.addr, "c").await, 1, "a hit after the restart");
    assert_eq!(misses(second.addr, "c").await, 0);
    drop(second);

    let (dir, uid_base) = daemon::unique();
    let off =
        BinDaemon::start_with(&dir, uid_base, 2, "[compile_cache]\nenabled = false\n", "").await;
    for _ in 0..2 {
        let v = run(off.addr, spec("c", src, None, json!({}))).await;
        assert_eq!(v, want);
    }
    assert_eq!(hits(off.addr, "c").await, 0);
    assert_eq!(misses(off.addr, "c").await, 0);
    assert!(!dir.join("compile-cache").exists(), "no cache directory");
    drop(off);
}
