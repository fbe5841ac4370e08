//! Tier: privileged + vm (docs/testing.md). The daemon as an operator runs it: the real `runner`
//! binary started and signalled from outside. The CLI's private data directory against a planted
//! symlink (the attack reproduced: the victim must survive), SIGHUP reloads (a run in flight
//! keeps its limits, the next gets the new ones; API keys, peers, the log level; a bad file is
//! kept out; restart-only settings say so), a port in use failing before `ready`, the root
//! check, `runner run`'s exit statuses and messages, JSON logs, `/version`, `metrics_listen`,
//! `runner check` cleaning a killed daemon's run directories, the uid-overlap warning, and (in
//! the pure cgroup v2 VM) a daemon started from a cgroup shared with another process.

#![allow(
    unused_crate_dependencies,
    reason = "integration test crate uses a subset"
)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runner_tests::daemon::*;
use runner_tests::{private_dir, privileged};
use serde_json::{Value, json};

const BOUND: Duration = Duration::from_secs(120);

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("test took longer than its bound");
}

fn py(src: &str, params: Value) -> Value {
    spec("python3", src, Some("__tester__.python3"), params)
}

/// `runner ARGS` with `env`, as uid `as_uid` if given (setpriv); waits for it.
fn runner_cmd(args: &[&str], env: &[(&str, &Path)], as_uid: Option<u32>) -> std::process::Output {
    let bin = runner_binary();
    let mut cmd = match as_uid {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
            ])
            .arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the runner binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The value of the sample `name` (exact series, e.g. `runner_slots` or `x{a="b"}`) in `/metrics`
/// at `addr`.
async fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let r = request(addr, "GET", "/metrics", None).await.ok()?;
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn count(d: &BinDaemon, needle: &str) -> usize {
    d.log_text().lines().filter(|l| l.contains(needle)).count()
}

/// Rewrites `d`'s config with `extra`, sends SIGHUP and waits for one more log line with
/// `needle` than before.
async fn reload(d: &BinDaemon, uid_base: u32, slots: u32, extra: &str, needle: &str) {
    let before = count(d, needle);
    std::fs::write(
        d.config_path(),
        bin_config(&d.data_dir, uid_base, slots, extra),
    )
    .expect("rewrite config");
    d.signal("-HUP");
    d.wait_log(needle, before + 1, Duration::from_secs(60))
        .await;
}

// ---------------------------------------------------------------------------------------------
// The CLI's private data directory.

/// The attack that worked before: a local user pre-creates `$TMPDIR/runner-cli-<pid>` for the
/// pids to come, each with `lock` → a file of root's choosing; `runner check` (root) then
/// truncated it. Now the command makes a new random directory and never opens a planted one:
/// the victim is intact and the planted directories are untouched.
#[test]
fn cli_planted_lock_symlink_is_never_followed() {
    if !privileged() {
        return;
    }
    let victim_dir = private_dir("runner-victim-");
    let victim = victim_dir.join("precious");
    std::fs::write(&victim, b"precious\n").unwrap();
    // A world-writable sticky directory like /tmp, owned by root.
    let tmp = private_dir("runner-tmpdir-");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    const WINDOW: u32 = 3000;
    for attempt in 0..3 {
        let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let planted: Vec<PathBuf> = (last + 1..last + WINDOW)
            .map(|pid| {
                let d = tmp.join(format!("runner-cli-{pid}"));
                std::fs::create_dir(&d).unwrap();
                std::os::unix::fs::symlink(&victim, d.join("lock")).unwrap();
                // Owned by "the attacker".
                std::os::unix::fs::lchown(d.join("lock"), Some(65534), Some(65534)).unwrap();
                std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
                d
            })
            .collect();
        let child = Command::new(runner_binary())
            .arg("check")
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "runner check failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            b"precious\n",
            "the victim was written through a planted lock"
        );
        for d in &planted {
            let lock = std::fs::symlink_metadata(d.join("lock")).expect("planted lock kept");
            assert!(lock.file_type().is_symlink(), "{}", d.display());
        }
        // Nothing of the command is left beside the planted directories.
        let left = std::fs::read_dir(&tmp).unwrap().count();
        assert_eq!(left, planted.len(), "the command left its directory behind");
        for d in &planted {
            std::fs::remove_dir_all(d).unwrap();
        }
        if (last + 1..last + WINDOW).contains(&pid) {
            // The command's pid had a planted directory: the old code would have truncated the
            // victim.
            let _ = std::fs::remove_dir_all(&tmp);
            let _ = std::fs::remove_dir_all(&victim_dir);
            return;
        }
        eprintln!("attempt {attempt}: pid {pid} outside the planted window; again");
    }
    panic!("the command's pid never fell into the planted window (a very busy host?)");
}

// ---------------------------------------------------------------------------------------------
// Start-up.

/// A port in use fails before anything is set up: no `ready` line, not even the data
/// directory's lock, and a message naming the address.
#[tokio::test]
async fn serve_port_in_use_fails_before_ready() {
    if !privileged() {
        return;
    }
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let (dir, uid) = unique();
    let config = dir.join("runner.toml");
    std::fs::write(&config, bin_config(&dir.join("data"), uid, 1, "")).unwrap();
    let started = Instant::now();
    let out = runner_cmd(
        &[
            "--config",
            config.to_str().unwrap(),
            "serve",
            "--listen",
            &addr.to_string(),
        ],
        &[],
        None,
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("already in use"),
        "{err}"
    );
    assert!(
        !err.contains("ready: serving"),
        "ready logged before the bind:\n{err}"
    );
    assert!(
        !dir.join("data").join("lock").exists(),
        "the data directory was set up before the bind"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "failed slowly");
    drop(held);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without root every command that builds jails says so, first.
#[test]
fn commands_refuse_without_root() {
    if !privileged() {
        return;
    }
    let dir = private_dir("runner-noroot-");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let src = dir.join("a.py");
    std::fs::write(&src, "print(1)\n").unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (args, cmd) in [
        (vec!["serve", "--listen", "127.0.0.1:0"], "serve"),
        (vec!["check"], "check"),
        (
            vec!["run", "--lang", "python3", src.to_str().unwrap()],
            "run",
        ),
        (vec!["bench-jail", "--iterations", "1"], "bench-jail"),
    ] {
        let out = runner_cmd(&args, &[("TMPDIR", &dir)], Some(65534));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert_eq!(
            err.trim(),
            format!("runner: runner {cmd} needs root (it builds jails)"),
            "{cmd}"
        );
    }
    // check-config touches no kernel state: fine without root.
    let out = runner_cmd(&["check-config"], &[], Some(65534));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Step 18 from inside the jail, with a daemon whose own parent left signals ignored (as
/// `nohup` or a shell's `trap "" …` does): the program starts with every signal at its default
/// and none blocked, as a fresh process. (glibc's own signals 32 and 33 cannot be reset from
/// C and are left out.)
#[test]
fn run_program_signals_start_at_their_defaults() {
    if !privileged() {
        return;
    }
    let dir = private_dir("runner-run-");
    let src = dir.join("sig.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include <string.h>\nint main(void){char l[256];\n\
         FILE *f = fopen(\"/proc/self/status\", \"r\");\n\
         while (fgets(l, sizeof l, f)) if (!strncmp(l, \"SigIgn\", 6) || !strncmp(l, \"SigBlk\", 6)) fputs(l, stdout);\n\
         return 0;}\n",
    )
    .unwrap();
    let out = Command::new("sh")
        .args([
            "-c",
            "trap '' HUP QUIT USR2; exec \"$0\" run --lang c \"$1\"",
        ])
        .arg(runner_binary())
        .arg(&src)
        .stdin(Stdio::null())
        .output()
        .expect("run the runner binary through sh");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stdout = v["stdout"].as_str().unwrap_or_default();
    let mask = |key: &str| -> u64 {
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {v:#}"));
        u64::from_str_radix(line.trim_start_matches(':').trim(), 16).unwrap()
    };
    let glibc = (1 << 31) | (1 << 32);
    assert_eq!(mask("SigIgn") & !glibc, 0, "ignored signals: {stdout}");
    assert_eq!(mask("SigBlk"), 0, "blocked signals: {stdout}");
}

/// `runner run`: the outcome is the exit status (0 for 15), nothing is logged unless asked, a
/// missing file is reported before anything else (even before the root check), an unknown
/// language and a missing toolchain are told apart.
#[test]
fn run_exit_status_and_messages() {
    if !privileged() {
        return;
    }
    let dir = private_dir("runner-run-");
    let file = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let ok = file("ok.py", "print(6*7)\n");
    let out = runner_cmd(&["run", "--lang", "python3", &ok], &[], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["outcome"].as_i64(), v["stdout"].as_str()),
        (Some(15), Some("42\n"))
    );
    assert_eq!(text(&out.stderr), "", "no log lines unless asked");
    for (name, body, code) in [
        ("err.py", "raise SystemExit('bad')\n", 12),
        ("tle.py", "while True: pass\n", 13),
        ("syntax.py", "print(\n", 11),
    ] {
        let p = file(name, body);
        let out = runner_cmd(
            &["run", "--lang", "python3", "--cputime", "1", &p],
            &[],
            None,
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "{name}: {}",
            text(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["outcome"].as_i64(), Some(i64::from(code)), "{name}");
    }
    // -v: the log on stderr.
    let out = runner_cmd(&["-v", "run", "--lang", "python3", &ok], &[], None);
    assert!(
        text(&out.stderr).contains("run finished"),
        "{}",
        text(&out.stderr)
    );
    // A missing file comes first, even before the root check.
    let missing = dir.join("nope.py");
    let out = runner_cmd(
        &["run", "--lang", "python3", missing.to_str().unwrap()],
        &[],
        Some(65534),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("cannot read {}", missing.display())),
        "{}",
        text(&out.stderr)
    );
    let out = runner_cmd(&["run", "--lang", "cobol", &ok], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("language 'cobol' is not known"),
        "{}",
        text(&out.stderr)
    );
    // A profile whose toolchain is not installed (its version command fails).
    let profiles = dir.join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    let php = include_str!("../../profiles/php.toml");
    let start = php.find("version_command").unwrap();
    let end = start + php[start..].find('\n').unwrap();
    let php = format!(
        "{}version_command = [\"/nonexistent/php\", \"--version\"]{}",
        &php[..start],
        &php[end..]
    );
    std::fs::write(profiles.join("php.toml"), php).unwrap();
    let config = file(
        "r.toml",
        &format!("profiles_dir = \"{}\"\n", profiles.display()),
    );
    let src = file("a.php", "<?php echo 1;\n");
    let out = runner_cmd(
        &["--config", &config, "run", "--lang", "php", &src],
        &[],
        None,
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the php toolchain is missing") && err.contains("/nonexistent/php"),
        "{err}"
    );
    assert!(!err.contains("not known"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// SIGHUP.

/// A reload while a run is in flight: the run ends with the limits it started with (a wall
/// limit of 10 × 1 s lets it sleep 3 s), the next run gets the new ones (1 × 1 s: time limit).
/// SIGHUP never stops the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_a_run_in_flight_on_its_limits() {
    if !privileged() {
        return;
    }
    bounded(async {
        let (dir, uid) = unique();
        let mut d = BinDaemon::start_with(&dir, uid, 2, "[limits]\nwall_factor = 10.0", "").await;
        let sleeper = py(
            "import time\ntime.sleep(3)\nprint('slept')\n",
            json!({"cputime": 1}),
        );
        let addr = d.addr;
        let s = sleeper.clone();
        let first = tokio::spawn(async move { post_run(addr, s).await });
        // In the jail (a slot busy) before the reload.
        let deadline = Instant::now() + Duration::from_secs(30);
        while metric(addr, "runner_slots_busy").await != Some(1.0) {
            assert!(Instant::now() < deadline, "the run never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        reload(&d, uid, 2, "[limits]\nwall_factor = 1.0", "config reloaded").await;
        assert!(d.log_text().contains("changed=limits"), "{}", d.log_text());
        let r = first.await.unwrap();
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["outcome"], 15, "the run in flight kept its limits: {v}");
        assert_eq!(v["stdout"], "slept\n");
        let v = post_run(addr, sleeper).await.json();
        assert_eq!(v["outcome"], 13, "the next run has the new wall limit: {v}");
        assert!(d.child.try_wait().unwrap().is_none(), "SIGHUP stopped it");
    })
    .await;
}

/// API keys and the log level change live; a restart-only change (slots) is logged and not
/// applied; a bad file changes nothing; a second reload still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keys_log_level_restart_only_and_bad_file() {
    if !privileged() {
        return;
    }
    bounded(async {
        let (dir, uid) = unique();
        let old = "log_level = \"warn\"\n[api.keys]\n\"another-key-1234\" = 0";
        let mut d = BinDaemon::start_with(&dir, uid, 2, old, "").await;
        let hello = py("print('hi')\n", json!({}));
        // The client's key (API_KEY) is not listed yet.
        assert_eq!(post_run(d.addr, hello.clone()).await.status, 403);
        assert!(
            !d.log_text().contains("request done"),
            "warn level logs no requests"
        );
        let new = format!("log_level = \"info\"\n[api.keys]\n\"{API_KEY}\" = 0");
        // At warn, "config reloaded" (info) may go out before the new level applies: wait for
        // the level's own line.
        reload(&d, uid, 3, &new, "log level changed").await;
        let log = d.log_text();
        assert!(
            log.lines()
                .any(|l| l.contains("needs a restart") && l.contains("setting=\"slots\"")),
            "{log}"
        );
        let r = post_run(d.addr, hello.clone()).await;
        assert_eq!(r.status, 200, "the new key is accepted: {}", r.text());
        assert_eq!(r.json()["outcome"], 15);
        d.wait_log("request done", 1, Duration::from_secs(5)).await;
        assert_eq!(
            metric(d.addr, "runner_slots").await,
            Some(2.0),
            "slots kept"
        );
        // A file that does not parse: logged, the running config kept.
        std::fs::write(d.config_path(), "slots = [\n").unwrap();
        d.signal("-HUP");
        d.wait_log("config reload failed; the running config is kept", 1, BOUND)
            .await;
        assert_eq!(post_run(d.addr, hello.clone()).await.status, 200);
        // And one that is valid again applies.
        let back = "[api.keys]\n\"another-key-1234\" = 0";
        reload(&d, uid, 2, back, "config reloaded").await;
        assert_eq!(post_run(d.addr, hello).await.status, 403);
        assert!(d.child.try_wait().unwrap().is_none());
    })
    .await;
}

/// Peers added by a reload are probed (an unreachable one is logged once and shown down),
/// removed ones go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_the_peers() {
    if !privileged() {
        return;
    }
    bounded(async {
        let (dir, uid) = unique();
        let d = BinDaemon::start_with(&dir, uid, 1, "", "").await;
        let gone = format!("http://127.0.0.1:{}", free_port());
        let with_peer = format!(
            "[peer]\nenabled = true\nkey = \"a-shared-peer-key\"\nprobe_interval_ms = 100\n\
             probe_timeout_ms = 50\n[[peer.peers]]\nurl = \"{gone}\"\n"
        );
        reload(&d, uid, 1, &with_peer, "peer unreachable").await;
        let log = d.log_text();
        assert!(log.contains("peer added"), "{log}");
        assert!(log.contains("changed=peer"), "{log}");
        let up = format!("runner_peer_up{{peer=\"{gone}\"}}");
        assert_eq!(metric(d.addr, &up).await, Some(0.0));
        // Said once, not at every failed probe.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = d
            .log_text()
            .lines()
            .filter(|l| l.contains("peer unreachable"))
            .count();
        assert_eq!(n, 1);
        reload(&d, uid, 1, "", "peer removed").await;
        assert_eq!(metric(d.addr, &up).await, None, "{}", d.log_text());
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Operations.

/// `log_format = "json"`: one object per line with the text format's fields; `/version`,
/// `/health` and `/metrics` on `metrics_listen` only, the Jobe API on `listen` only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_version_and_metrics_listen() {
    if !privileged() {
        return;
    }
    bounded(async {
        let (dir, uid) = unique();
        let ops: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let extra = format!("log_format = \"json\"\nmetrics_listen = \"{ops}\"");
        let d = BinDaemon::start_with(&dir, uid, 1, &extra, "").await;
        let v = post_run(d.addr, py("print(1)\n", json!({}))).await.json();
        assert_eq!(v["outcome"], 15);
        for path in ["/metrics", "/health", "/version"] {
            let r = request(d.addr, "GET", path, None).await.unwrap();
            assert_eq!(r.status, 404, "{path} on the Jobe port");
            let r = request(ops, "GET", path, None).await.unwrap();
            assert_eq!(r.status, 200, "{path} on metrics_listen");
        }
        let r = request(ops, "GET", &format!("{BASE}/languages"), None)
            .await
            .unwrap();
        assert_eq!(r.status, 404, "the Jobe API on metrics_listen");
        let version = request(ops, "GET", "/version", None).await.unwrap().json();
        let commit = version["commit"].as_str().unwrap();
        assert!(!commit.is_empty(), "{version}");
        assert!(["debug", "release"].contains(&version["profile"].as_str().unwrap()));
        assert!(["active", "inactive"].contains(&version["ebpf"].as_str().unwrap()));
        let health = request(ops, "GET", "/health", None).await.unwrap().json();
        assert_eq!(health["status"], "ready");
        assert_eq!(health["commit"], version["commit"]);
        let metrics = request(ops, "GET", "/metrics", None).await.unwrap().text();
        assert!(
            metrics.contains(&format!("commit=\"{commit}\"")),
            "runner_build_info:\n{metrics}"
        );
        // The log: JSON objects only, the run line with its fields and its request span.
        d.wait_log("run finished", 1, Duration::from_secs(5)).await;
        let log = d.log_text();
        let mut run_line = None;
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}"));
            assert!(
                v["level"].is_string() && v["timestamp"].is_string(),
                "{line}"
            );
            if v["message"] == "run finished" {
                run_line = Some(v);
            }
        }
        let v = run_line.expect("a run finished line");
        assert_eq!(v["outcome"], 15, "{v}");
        assert_eq!(v["lang"], "python3", "{v}");
        assert!(v["cpu_ms"].is_number() && v["peak_kib"].is_number(), "{v}");
        assert!(
            v["spans"].as_array().is_some_and(|s| s
                .iter()
                .any(|s| s["name"] == "request" && s["req"].is_number())),
            "{v}"
        );
    })
    .await;
}

/// `runner check` removes what a SIGKILLed daemon left in its data directory (run directories
/// with their tmpfs mounts), only when no daemon holds the directory's lock.
#[test]
fn check_cleans_a_killed_daemons_run_dirs() {
    if !privileged() {
        return;
    }
    let data = private_dir("runner-stale-");
    let runs = data.join("runs");
    let stale = runs.join("jobe_AbC123");
    std::fs::create_dir_all(&stale).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "runner-run"])
        .arg(&stale)
        .status()
        .unwrap();
    assert!(mounted.success());
    std::fs::write(stale.join("prog.py"), "left behind").unwrap();
    let lock = data.join("lock");
    std::fs::write(&lock, "").unwrap();
    let config = data.join("runner.toml");
    std::fs::write(&config, format!("data_dir = \"{}\"\n", data.display())).unwrap();
    let is_mounted = |p: &Path| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
    };
    // A daemon holds the lock: nothing is touched.
    let held = std::fs::File::open(&lock).unwrap();
    held.try_lock().unwrap();
    let out = runner_cmd(&["--config", config.to_str().unwrap(), "check"], &[], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("in use by a running daemon"));
    assert!(stale.exists() && is_mounted(&stale));
    drop(held);
    // No daemon: removed, unmounted.
    let out = runner_cmd(&["--config", config.to_str().unwrap(), "check"], &[], None);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("removed 1 run directories"), "{stdout}");
    assert!(!stale.exists());
    assert!(!is_mounted(&stale));
    let _ = std::fs::remove_dir_all(&data);
}

/// Processes under a daemon's slot uids at its start (another runner with an overlapping
/// `jail.uid_base`) are warned about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_uid_range_is_warned() {
    if !privileged() {
        return;
    }
    bounded(async {
        let (dir, uid) = unique();
        let mut other = Command::new("setpriv")
            .args([
                &format!("--reuid={}", uid + 1),
                &format!("--regid={}", uid + 1),
                "--clear-groups",
                "sleep",
                "60",
            ])
            .spawn()
            .unwrap();
        let d = BinDaemon::start_with(&dir, uid, 2, "", "").await;
        let log = d.log_text();
        let _ = other.kill();
        let _ = other.wait();
        assert!(log.contains("overlapping jail.uid_base"), "{log}");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Pure cgroup v2 (the VM).

/// A daemon started by hand from a root shell on a pure cgroup v2 host sits in the shell's
/// cgroup. While another process shares it, the controllers cannot be enabled below it: the
/// daemon fails with a message that says how to start it, and leaves the cgroup as it found it.
/// Alone in the cgroup, it moves itself into a leaf and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_daemon_started_from_a_shared_cgroup() {
    if !privileged() {
        return;
    }
    if Path::new("/sys/fs/cgroup/unified").exists()
        || !Path::new("/sys/fs/cgroup/cgroup.subtree_control").exists()
    {
        // On a hybrid host the controllers are v1 ones: the case does not arise.
        assert!(
            std::env::var_os("RUNNER_REQUIRE_ALL").is_none(),
            "needs a pure cgroup v2 host (RUNNER_REQUIRE_ALL is set): run it in the test VM"
        );
        eprintln!("skipped: needs a pure cgroup v2 host (runs in the test VM)");
        return;
    }
    bounded(async {
        let cg = PathBuf::from(format!(
            "/sys/fs/cgroup/runner-test-shell-{}",
            std::process::id()
        ));
        std::fs::create_dir(&cg).unwrap();
        let procs = |cg: &Path| -> Vec<u32> {
            std::fs::read_to_string(cg.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.parse().ok())
                .collect()
        };
        // "The shell": another process in the cgroup.
        let mut shell = Command::new("sleep").arg("600").spawn().unwrap();
        std::fs::write(cg.join("cgroup.procs"), shell.id().to_string()).unwrap();
        let (dir, uid) = unique();
        let config = dir.join("runner.toml");
        std::fs::write(&config, bin_config(&dir.join("data"), uid, 1, "")).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let spawn_in_cg = |log: &Path| {
            let logf = std::fs::File::create(log).unwrap();
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
                    cg.display()
                ))
                .arg(runner_binary())
                .args(["--config", config.to_str().unwrap()])
                .args(["serve", "--listen", &addr.to_string()])
                .stdin(Stdio::null())
                .stdout(logf.try_clone().unwrap())
                .stderr(logf)
                .spawn()
                .unwrap()
        };
        let log1 = dir.join("shared.log");
        let mut daemon = spawn_in_cg(&log1);
        let status = daemon.wait().unwrap();
        let log = std::fs::read_to_string(&log1).unwrap();
        assert_eq!(status.code(), Some(1), "{log}");
        assert!(
            log.contains("other process(es) share this cgroup") && log.contains("systemd-run"),
            "{log}"
        );
        assert!(!log.contains("ready: serving"), "{log}");
        assert_eq!(procs(&cg), vec![shell.id()], "the cgroup as it was");
        assert!(!cg.join("runner-daemon").exists(), "no leaf left behind");
        // The shell goes: the daemon alone moves into a leaf and serves.
        shell.kill().unwrap();
        shell.wait().unwrap();
        let log2 = dir.join("alone.log");
        let mut daemon = spawn_in_cg(&log2);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(st)) = daemon.try_wait() {
                panic!(
                    "exited with {st}:\n{}",
                    std::fs::read_to_string(&log2).unwrap()
                );
            }
            if let Ok(r) = request(addr, "GET", &format!("{BASE}/languages"), None).await
                && r.status == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "not ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(procs(&cg.join("runner-daemon")), vec![daemon.id()]);
        // A generous CPU limit: the VM emulates the CPU and is slow under load (the point here
        // is where the job's cgroup is, not its limits).
        let mut spec = py("print('v2')\n", json!({"cputime": 20}));
        spec["runner_details"] = true.into();
        let v = post_run(addr, spec).await.json();
        assert_eq!(v["outcome"], 15, "{v}");
        Command::new("kill")
            .args(["-TERM", &daemon.id().to_string()])
            .status()
            .unwrap();
        assert!(daemon.wait().unwrap().success());
        // Ours to remove: the leaf (empty now) and the cgroup.
        std::fs::remove_dir(cg.join("runner-daemon")).unwrap();
        std::fs::remove_dir(&cg).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}
