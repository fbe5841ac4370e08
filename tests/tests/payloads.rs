//! Tier: privileged + vm (docs/testing.md). The hostile-program suite of issue 5. Every program in
//! `tests/payloads/<group>/` (each case in C and in python3) is sent through the HTTP API to a real
//! daemon (real jails, root) and must end with its expected Jobe outcome, print no `LEAK` line and,
//! when it ends normally, print `DONE`. After each group the host must be unharmed: no process of
//! the daemon's uids left, nothing the payloads wrote outside their run directories (marker files,
//! the canary directory, SysV IPC keys, connections to the test's listeners), no run directory
//! left, the daemon still serving, and a benign run that ran concurrently all along got its right
//! answers. `tests/payloads/README.md` lists every case and its expected outcome.
//!
//! The cases of a group run concurrently (one request each) so the suite takes seconds, not
//! minutes. `vm_payloads_core` is a small subset that also runs in the pure cgroup v2 VM.

#![allow(
    unused_crate_dependencies,
    reason = "integration test crate uses a subset"
)]

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use runner_tests::daemon::*;
use runner_tests::{gone_within, privileged, slowdown};
use serde_json::{Value, json};

const OK: i64 = 15;
const COMPILATION_ERROR: i64 = 11;
const RUNTIME_ERROR: i64 = 12;
const TIME_LIMIT: i64 = 13;
const MEMORY_LIMIT: i64 = 17;
const ILLEGAL_SYSCALL: i64 = 19;

/// A check of a case's result beyond the outcome (e.g. "wrote at most the disk limit").
type Check = fn(&Value) -> Result<(), String>;

/// One payload: `tests/payloads/<group>/<name>.{c,py}`.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    /// Accepted Jobe outcomes (usually one).
    expect: &'static [i64],
    /// The C variant's, when it differs (the C profile limits address space: RLIMIT_AS).
    expect_c: Option<&'static [i64]>,
    /// Extra run_spec parameters, as JSON.
    params: &'static str,
    /// For outcome 19: the syscall named in stderr.
    syscall: Option<&'static str>,
    check: Option<Check>,
}

const fn case(name: &'static str, expect: &'static [i64], params: &'static str) -> Case {
    Case {
        name,
        expect,
        expect_c: None,
        params,
        syscall: None,
        check: None,
    }
}

impl Case {
    const fn denied(name: &'static str, syscall: &'static str) -> Case {
        Case {
            syscall: Some(syscall),
            ..case(name, &[ILLEGAL_SYSCALL], "{}")
        }
    }
    /// What the C variant gives instead: C runs under RLIMIT_AS = memorylimit (as on Jobe), so a
    /// payload that maps more than that sees its allocation fail before the cgroup steps in.
    const fn in_c(self, expect: &'static [i64]) -> Case {
        Case {
            expect_c: Some(expect),
            ..self
        }
    }
    const fn check(self, check: Check) -> Case {
        Case {
            check: Some(check),
            ..self
        }
    }
}

const LANGS: [&str; 2] = ["c", "python3"];

fn payload_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("payloads")
}

/// The source sent for `lang`: the prelude (protocol helpers) followed by the payload. A `name`
/// with a `/` names a payload of another group (`vm_payloads_core`).
fn source(group: &str, name: &str, lang: &str) -> String {
    let ext = if lang == "c" { "c" } else { "py" };
    let dir = payload_dir();
    let prelude = std::fs::read_to_string(dir.join(format!("prelude.{ext}"))).expect("prelude");
    let file = if name.contains('/') {
        dir.join(format!("{name}.{ext}"))
    } else {
        dir.join(group).join(format!("{name}.{ext}"))
    };
    let body = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("payload {group}/{name}.{ext}: {e}"));
    format!("{prelude}{body}")
}

fn run_spec(group: &str, c: &Case, lang: &str, input: &str) -> Value {
    let mut params: Value = serde_json::from_str(c.params).expect("case params are JSON");
    let m = params.as_object_mut().expect("params object");
    m.entry("cputime").or_insert(json!(2));
    if lang == "c" {
        // GNU extensions (syscall(), unshare()…), no -Werror on payloads written to misbehave.
        m.insert("compileargs".into(), json!(["-std=gnu11", "-w", "-x c"]));
        m.insert("linkargs".into(), json!(["-pthread"]));
    }
    let name = if lang == "c" {
        "__tester__.c"
    } else {
        "__tester__.python3"
    };
    let mut s = spec(lang, &source(group, c.name, lang), Some(name), params);
    s["input"] = input.into();
    s
}

/// What the test sets up on the host for the payloads to attack, and checks afterwards.
struct Host {
    /// Payloads name every file they create outside the run directory with this marker.
    marker: String,
    /// A host directory with one file: must be unchanged afterwards.
    canary: PathBuf,
    tcp: TcpListener,
    udp: UdpSocket,
    unix_path: PathBuf,
    unix: UnixListener,
    abstract_name: String,
    abstract_unix: UnixListener,
    /// A config file beside the daemon's data, holding a secret.
    config: PathBuf,
    cache_file: PathBuf,
    ipc_key: u32,
    host_ip: String,
}

const CANARY_TEXT: &[u8] = b"canary: must survive every payload\n";

impl Host {
    async fn new(group: &str, d: &Daemon) -> Host {
        let pid = std::process::id();
        let marker = format!("PWNED{pid}{group}");
        // Private (random, 0700, created new): never a directory someone planted in /tmp.
        let canary = runner_tests::private_dir(&format!("runner-payload-canary-{group}-"));
        std::fs::write(canary.join("canary.txt"), CANARY_TEXT).expect("canary file");
        let tcp = TcpListener::bind("0.0.0.0:0").expect("tcp listener");
        tcp.set_nonblocking(true).expect("nonblocking");
        let udp = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
        udp.set_nonblocking(true).expect("nonblocking");
        let sockets = runner_tests::private_dir(&format!("runner-payload-sock-{group}-"));
        let unix_path = sockets.join("listener.sock");
        let unix = UnixListener::bind(&unix_path).expect("unix listener");
        unix.set_nonblocking(true).expect("nonblocking");
        let abstract_name = format!("runner-payload-{pid}-{group}");
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            .expect("abstract address");
        let abstract_unix = UnixListener::bind_addr(&addr).expect("abstract listener");
        abstract_unix.set_nonblocking(true).expect("nonblocking");
        let config = d.data_dir.join("runner.toml");
        std::fs::write(&config, format!("# secret-{marker}\n")).expect("config");
        // A file in the daemon's cache, put through the API as CodeRunner does.
        let contents = format!("cache-secret-{marker}");
        let id = md5_hex(contents.as_bytes());
        let body = json!({"file_contents": base64_encode(contents.as_bytes())}).to_string();
        let put = request(
            d.addr,
            "PUT",
            &format!("{BASE}/files/{id}"),
            Some(body.as_bytes()),
        )
        .await
        .expect("PUT file");
        assert_eq!(put.status, 204, "{}", put.text());
        let cache_file = d
            .data_dir
            .join("files")
            .join(&id[0..2])
            .join(&id[2..4])
            .join(&id[4..]);
        assert!(
            cache_file.exists(),
            "cache layout: {}",
            cache_file.display()
        );
        Host {
            ipc_key: 0x5eed_0000 | (pid & 0xffff),
            marker,
            canary,
            tcp,
            udp,
            unix_path,
            unix,
            abstract_name,
            abstract_unix,
            config,
            cache_file,
            host_ip: host_ip(),
        }
    }

    /// The payloads' stdin: one line of `key=value` words.
    fn input(&self, d: &Daemon) -> String {
        format!(
            "pid={} port={} tcp={} udp={} unix={} abstract={} canary={} datadir={} config={} \
             cachefile={} marker={} ipckey={} hostip={}\n",
            std::process::id(),
            d.addr.port(),
            self.tcp.local_addr().expect("addr").port(),
            self.udp.local_addr().expect("addr").port(),
            self.unix_path.display(),
            self.abstract_name,
            self.canary.display(),
            d.data_dir.display(),
            self.config.display(),
            self.cache_file.display(),
            self.marker,
            self.ipc_key,
            self.host_ip,
        )
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.canary);
        if let Some(dir) = self.unix_path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The host's first non-loopback IPv4 address (or 127.0.0.1).
fn host_ip() -> String {
    // A connected UDP socket reveals the source address without sending anything.
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

/// Benign runs, one after the other, for as long as the group runs; each must succeed with the
/// right output.
fn benign_loop(addr: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut errors = Vec::new();
        let mut n = 0u32;
        while !stop.load(Ordering::Relaxed) || n == 0 {
            let r = post_run(
                addr,
                spec(
                    "python3",
                    "print(sum(range(1000)))\n",
                    Some("__tester__.python3"),
                    json!([]),
                ),
            )
            .await;
            let v = r.json();
            if v["outcome"] != OK || v["stdout"] != "499500\n" {
                errors.push(format!("concurrent benign run {n}: {v}"));
            }
            n += 1;
        }
        eprintln!("{n} benign runs alongside the payloads");
        errors
    })
}

/// Runs every case of `group` in each of `langs`, concurrently (one after the other on a
/// one-slot daemon); returns the failures.
async fn run_group(
    d: &Daemon,
    host: &Host,
    group: &str,
    cases: &[Case],
    langs: &[&'static str],
) -> Vec<String> {
    let input = host.input(d);
    let mut tasks = Vec::new();
    // On a one-slot daemon the cases run one after the other, in the table's order (cross_run:
    // both plants, then both checks).
    let sequential = d.uids.len() == 1;
    for c in cases {
        for &lang in langs {
            let s = run_spec(group, c, lang, &input);
            let addr = d.addr;
            let c = *c;
            let task = tokio::spawn(async move {
                let t = Instant::now();
                let r = post_run(addr, s).await;
                (c, lang, r, t.elapsed())
            });
            if sequential {
                let done = task.await;
                tasks.push(tokio::spawn(async move { done.expect("case task") }));
            } else {
                tasks.push(task);
            }
        }
    }
    let mut failures = Vec::new();
    for t in tasks {
        let (c, lang, r, took) = t.await.expect("case task");
        let label = format!("{group}/{}.{lang}", c.name);
        if r.status != 200 {
            failures.push(format!("{label}: HTTP {} {}", r.status, r.text()));
            continue;
        }
        let v = r.json();
        let outcome = v["outcome"].as_i64().unwrap_or(-1);
        let stdout = v["stdout"].as_str().unwrap_or_default();
        let stderr = v["stderr"].as_str().unwrap_or_default();
        let short = |s: &str| s.chars().take(1500).collect::<String>();
        eprintln!(
            "{label}: outcome {outcome} in {took:.1?}\n  stdout: {}\n  stderr: {}\n  cmpinfo: {}",
            short(stdout).replace('\n', "\n          "),
            short(stderr),
            short(v["cmpinfo"].as_str().unwrap_or_default())
        );
        let mut fail =
            |m: String| failures.push(format!("{label}: {m}; result {}", short(&v.to_string())));
        let expect = match (lang, c.expect_c) {
            ("c", Some(e)) => e,
            _ => c.expect,
        };
        if !expect.contains(&outcome) {
            fail(format!("outcome {outcome}, expected one of {expect:?}"));
            continue;
        }
        if let Some(l) = stdout
            .lines()
            .chain(stderr.lines())
            .find(|l| l.starts_with("LEAK"))
        {
            fail(format!("the payload got through: {l}"));
        }
        if outcome == OK && !stdout.lines().any(|l| l == "DONE") {
            fail("ended normally without printing DONE".into());
        }
        if let Some(sc) = c.syscall
            && !stderr.contains(&format!("Illegal system call: {sc}"))
        {
            fail(format!("stderr does not name the denied syscall {sc}"));
        }
        if let Some(check) = c.check
            && let Err(m) = check(&v)
        {
            fail(m);
        }
    }
    failures
}

/// Runs a whole group on its own daemon, then checks the host.
async fn group(group: &str, slots: usize, cases: &[Case], langs: &[&'static str]) {
    let t = Instant::now();
    raise_scheduling_rlimits();
    let d = Daemon::start(Opts {
        slots,
        queue_timeout_secs: 120.0,
        ..Opts::default()
    })
    .await;
    let host = Host::new(group, &d).await;
    let before = HostSnapshot::take(&d);
    let stop = Arc::new(AtomicBool::new(false));
    let benign = benign_loop(d.addr, stop.clone());
    let mut failures = run_group(&d, &host, group, cases, langs).await;
    stop.store(true, Ordering::Relaxed);
    failures.extend(benign.await.expect("benign task"));
    failures.extend(host_unharmed(&d, &host, &before).await);
    eprintln!(
        "group {group}: {} cases in {:.1?}",
        cases.len() * langs.len(),
        t.elapsed()
    );
    // Stop the daemon (removing its data directory) before failing, so a failed run leaves
    // nothing behind either.
    if !failures.is_empty() {
        eprintln!("{} failure(s):\n{}", failures.len(), failures.join("\n"));
    }
    drop(host);
    d.stop().await;
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Raises `RLIMIT_RTPRIO` and `RLIMIT_NICE` of this process (so of the in-process daemons), as a
/// daemon started from a login shell or a unit with `LimitRTPRIO=` would have them: the jail must
/// not hand them on (payload `resources/realtime_priority`). Raising a hard limit needs
/// `CAP_SYS_RESOURCE`; without it the payload meets the inherited limits (`jail_steps::rlimits`
/// checks the jail's own values directly).
fn raise_scheduling_rlimits() {
    let ok = std::process::Command::new("prlimit")
        .args(["--pid", &std::process::id().to_string()])
        .args(["--rtprio=40:40", "--nice=40:40"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("note: cannot raise RLIMIT_RTPRIO/RLIMIT_NICE here (no CAP_SYS_RESOURCE?)");
    }
}

/// What must not change on the host while payloads run (run directories come and go, and the
/// compile cache fills: `compile_cache_sound` checks what is in it).
struct HostSnapshot {
    data_dir: BTreeSet<PathBuf>,
}

impl HostSnapshot {
    fn take(d: &Daemon) -> HostSnapshot {
        HostSnapshot {
            data_dir: tree(&d.data_dir, 6)
                .into_iter()
                .filter(|p| {
                    !p.starts_with(d.data_dir.join("runs"))
                        && !p.starts_with(d.data_dir.join("compile-cache"))
                })
                .collect(),
        }
    }
}

/// The compile cache holds only what the daemon put there: root-owned regular files and
/// directories that no job user can write (no link, FIFO or device a payload's compile left).
fn compile_cache_sound(d: &Daemon) -> Vec<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut f = Vec::new();
    for p in tree(&d.data_dir.join("compile-cache"), 24) {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let kind_ok = m.file_type().is_file() || m.file_type().is_dir();
        if !kind_ok || m.uid() != 0 || m.permissions().mode() & 0o022 != 0 {
            f.push(format!(
                "compile cache entry {} is not a root-owned, read-only file or directory",
                p.display()
            ));
        }
    }
    f
}

/// Every path below `dir` (not following links), up to `depth` levels.
fn tree(dir: &Path, depth: u32) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if depth > 0 && e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(tree(&p, depth - 1));
        }
        out.insert(p);
    }
    out
}

/// The host checks after a group; returns the failures.
async fn host_unharmed(d: &Daemon, host: &Host, before: &HostSnapshot) -> Vec<String> {
    let mut f = Vec::new();
    // 1. No process of the daemon's uids (payloads that double-forked, setsid'd, slept…).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = jailed_pids(d.uids.clone());
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            f.push(format!("jailed processes left (pid, uid): {left:?}"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 2. No run directory left, nothing new in the data directory.
    let runs = d.data_dir.join("runs");
    let left = run_dirs_left(&runs, Duration::from_secs(5));
    if !left.is_empty() {
        f.push(format!("run directories left: {left:?}"));
    }
    // …nor a run directory's tmpfs still mounted.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let runs_text = runs.display().to_string();
    let mounted: Vec<&str> = mounts.lines().filter(|l| l.contains(&runs_text)).collect();
    if !mounted.is_empty() {
        f.push(format!("run directory mounts left: {mounted:?}"));
    }
    f.extend(compile_cache_sound(d));
    let now = HostSnapshot::take(d);
    let new: Vec<_> = now.data_dir.difference(&before.data_dir).collect();
    let gone: Vec<_> = before.data_dir.difference(&now.data_dir).collect();
    if !new.is_empty() || !gone.is_empty() {
        f.push(format!(
            "data directory changed: new {new:?}, gone {gone:?}"
        ));
    }
    // 3. The canary directory is intact.
    let canary: Vec<_> = tree(&host.canary, 2).into_iter().collect();
    if canary != vec![host.canary.join("canary.txt")]
        || std::fs::read(host.canary.join("canary.txt"))
            .ok()
            .as_deref()
            != Some(CANARY_TEXT)
    {
        f.push(format!("canary directory changed: {canary:?}"));
    }
    if std::fs::read(&host.config).ok().is_none() {
        f.push("the config file is gone".into());
    }
    // 4. No file with the marker anywhere a payload might have reached.
    let tmp = std::env::temp_dir();
    let mut places = vec![
        tmp.clone(),
        PathBuf::from("/dev/shm"),
        PathBuf::from("/var/tmp"),
        PathBuf::from("/"),
        PathBuf::from("/root"),
        PathBuf::from("/home"),
        PathBuf::from("/etc"),
        PathBuf::from("/dev"),
        PathBuf::from("/dev/mqueue"),
        d.data_dir.clone(),
    ];
    places.dedup();
    for place in places {
        let depth = if place == Path::new("/") { 0 } else { 2 };
        for p in tree(&place, depth) {
            if p.to_string_lossy().contains(&host.marker) {
                f.push(format!("a payload wrote {} on the host", p.display()));
            }
        }
    }
    // 5. No SysV IPC object with the payloads' key in the host's IPC namespace.
    let key = format!("{}", host.ipc_key);
    for kind in ["shm", "sem", "msg"] {
        let text = std::fs::read_to_string(format!("/proc/sysvipc/{kind}")).unwrap_or_default();
        if text
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(key.as_str()))
        {
            f.push(format!("SysV {kind} with the payloads' key on the host"));
        }
    }
    // 6. Nobody reached the test's listeners.
    match host.tcp.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => f.push(format!(
            "a payload connected to the host's TCP listener: {other:?}"
        )),
    }
    let mut buf = [0u8; 64];
    match host.udp.recv_from(&mut buf) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => f.push(format!(
            "a payload sent to the host's UDP socket: {other:?}"
        )),
    }
    for (what, l) in [("unix", &host.unix), ("abstract unix", &host.abstract_unix)] {
        match l.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => f.push(format!(
                "a payload connected to the {what} listener: {other:?}"
            )),
        }
    }
    // 7. The daemon still serves.
    let r = post_run(
        d.addr,
        spec("python3", "print('still here')\n", None, json!([])),
    )
    .await;
    if r.json()["stdout"] != "still here\n" {
        f.push(format!("the daemon no longer runs jobs: {}", r.text()));
    }
    f
}

fn field(v: &Value, key: &str) -> Result<u64, String> {
    v["stdout"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .ok_or_else(|| format!("no {key} line"))
}

fn at_most(v: &Value, key: &str, max: u64) -> Result<(), String> {
    let n = field(v, key)?;
    if n > max {
        return Err(format!("{key} {n} > {max}"));
    }
    Ok(())
}

const MB: u64 = 1_024_000;

/// Cases of the resources group.
const RESOURCES: &[Case] = &[
    case("fork_bomb", &[TIME_LIMIT], r#"{"numprocs": 20}"#),
    case("thread_bomb", &[TIME_LIMIT], r#"{"numprocs": 20}"#),
    // C: malloc returns NULL at the address-space limit and the loop spins until its CPU limit
    // (Jobe's behaviour); memory_forked passes the cgroup limit in C too.
    case("memory_anon", &[MEMORY_LIMIT], r#"{"memorylimit": 64}"#).in_c(&[TIME_LIMIT]),
    case("memory_forked", &[MEMORY_LIMIT], r#"{"memorylimit": 64}"#),
    case(
        "memory_shm_files",
        &[MEMORY_LIMIT],
        r#"{"memorylimit": 64, "disklimit": 200}"#,
    ),
    case(
        "memory_tmp_files",
        &[MEMORY_LIMIT],
        r#"{"memorylimit": 64, "disklimit": 200}"#,
    ),
    // The run directory is a tmpfs: its files are memory of the job too, not a way around the
    // memory limit.
    case(
        "memory_rundir_files",
        &[MEMORY_LIMIT],
        r#"{"memorylimit": 64, "disklimit": 200}"#,
    ),
    // C: attaching 1 GB fails under the 64 MB address-space limit (shmat: ENOMEM, exit 1).
    case("memory_sysv_shm", &[MEMORY_LIMIT], r#"{"memorylimit": 64}"#).in_c(&[RUNTIME_ERROR]),
    case("page_cache", &[OK], r#"{"memorylimit": 64, "cputime": 4}"#),
    case("cpu_spinners", &[TIME_LIMIT], r#"{"cputime": 1}"#),
    case("cpu_threads", &[TIME_LIMIT], r#"{"cputime": 1}"#),
    case(
        "stdout_flood",
        &[TIME_LIMIT],
        r#"{"cputime": 1, "streamsize": 1}"#,
    )
    .check(|v| {
        let n = v["stdout"].as_str().unwrap_or_default().len() as u64;
        (n <= MB)
            .then_some(())
            .ok_or(format!("stdout {n} bytes > 1 MB"))
    }),
    case(
        "stderr_flood",
        &[TIME_LIMIT],
        r#"{"cputime": 1, "streamsize": 1}"#,
    )
    .check(|v| {
        (v["stderr"] == "")
            .then_some(())
            .ok_or("stderr kept on TLE".into())
    }),
    // The run directory holds at most the larger disk limit of the two steps (the compile
    // step's minimum is 20 MB) plus the request's files.
    case("disk_fill", &[OK], r#"{"disklimit": 30}"#)
        .check(|v| at_most(v, "WROTE", 30 * MB + (1 << 20))),
    case("huge_file", &[OK], r#"{"disklimit": 4}"#).check(|v| at_most(v, "WROTE", 4 * MB)),
    case("fd_exhaustion", &[OK], "{}").check(|v| at_most(v, "FDS", 8192)),
    case("sleep_forever", &[TIME_LIMIT], r#"{"cputime": 1}"#),
    case("self_stop", &[TIME_LIMIT], r#"{"cputime": 1}"#),
    case("zombie_farm", &[OK], r#"{"numprocs": 20}"#).check(|v| at_most(v, "ZOMBIES", 20)),
    case("inode_exhaustion", &[OK], "{}").check(|v| at_most(v, "FILES", 16384)),
    case(
        "tmp_inodes",
        &[MEMORY_LIMIT],
        r#"{"memorylimit": 64, "cputime": 10}"#,
    ),
    case("stack_overflow", &[RUNTIME_ERROR], r#"{"cputime": 5}"#),
    case("core_dump", &[RUNTIME_ERROR], "{}"),
    case("socket_buffers", &[MEMORY_LIMIT], r#"{"memorylimit": 64}"#),
    case("realtime_priority", &[OK], "{}"),
    case("compile_bomb", &[COMPILATION_ERROR], "{}").check(|v| {
        (v["cmpinfo"] != "")
            .then_some(())
            .ok_or("no cmpinfo".into())
    }),
    // Bytes that are not UTF-8 come back escaped as `\xNN` text (as Jobe's sanitising does).
    case("binary_output", &[RUNTIME_ERROR], "{}").check(|v| {
        let out = v["stdout"].as_str().unwrap_or_default();
        (out.contains("a\\x00b\\xff") && out.lines().any(|l| l == "DONE"))
            .then_some(())
            .ok_or("stdout lost or mangled its bytes".into())
    }),
];

/// Cases of the escape group.
const ESCAPE: &[Case] = &[
    case("double_fork_setsid", &[OK], "{}"),
    case("kill_daemon", &[OK], "{}"),
    Case::denied("ptrace", "ptrace"),
    Case::denied("process_vm_readv", "process_vm_readv"),
    case("read_secrets", &[OK], "{}"),
    case("other_runs", &[OK], "{}"),
    case("write_outside", &[OK], "{}"),
    case("link_tricks", &[OK], "{}"),
    case("setuid_binary", &[OK], "{}"),
    Case::denied("unshare_userns", "unshare"),
    Case::denied("clone_newuser", "clone"),
    Case::denied("mount", "mount"),
    Case::denied("bpf", "bpf"),
    Case::denied("io_uring", "io_uring_setup"),
    Case::denied("perf_event_open", "perf_event_open"),
    Case::denied("keyctl", "add_key"),
    Case::denied("userfaultfd", "userfaultfd"),
    Case::denied("open_by_handle_at", "open_by_handle_at"),
    Case::denied("chroot", "chroot"),
    Case::denied("setns", "setns"),
    case("proc_leaks", &[OK], "{}"),
    case("sys_and_cgroup", &[OK], "{}"),
    case("dev_access", &[OK], "{}"),
    case("inherited_fds", &[OK], "{}"),
    case("raise_limits", &[OK], "{}"),
    case("daemon_environment", &[OK], "{}"),
    Case::denied("seccomp_stacking", "ptrace"),
    case("foreign_abi", &[RUNTIME_ERROR], "{}").check(|v| {
        (v["stderr"] == "Bad system call\n")
            .then_some(())
            .ok_or("not killed by SIGSYS".into())
    }),
    case("clone3_enosys", &[OK], "{}"),
];

/// Cases of the network group.
const NETWORK: &[Case] = &[
    case("tcp_loopback", &[OK], "{}"),
    case("tcp_outside", &[OK], "{}"),
    case("udp", &[OK], "{}"),
    case("unix_sockets", &[OK], "{}"),
    case("dns", &[OK], "{}"),
    case("raw_and_netlink", &[OK], "{}"),
];

/// Cases of the residue group: what a run leaves behind must not reach the host.
const RESIDUE: &[Case] = &[
    case("ipc_objects", &[OK], "{}"),
    case("background_holder", &[OK], "{}"),
];

/// Run A plants, run B on the same slot (the daemon has one) looks: in this order.
const CROSS_RUN: &[Case] = &[case("plant", &[OK], "{}"), case("check", &[OK], "{}")];

fn bound() -> Duration {
    Duration::from_secs_f64(240.0 * slowdown())
}

macro_rules! group_test {
    ($name:ident, $group:literal, $slots:expr, $cases:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            if !privileged() {
                return;
            }
            tokio::time::timeout(bound(), group($group, $slots, $cases, &LANGS))
                .await
                .expect("the group finished within its bound");
        }
    };
}

group_test!(payloads_resources, "resources", 8, RESOURCES);
group_test!(payloads_escape, "escape", 8, ESCAPE);
group_test!(payloads_network, "network", 4, NETWORK);
group_test!(payloads_residue, "residue", 2, RESIDUE);
group_test!(payloads_cross_run, "cross_run", 1, CROSS_RUN);

/// The core of the suite, Python only (no compile step: the VM is slow), for the pure cgroup v2
/// VM: pids and memory limits, the run directory's size, nothing outlives a run, /proc hides
/// init, no network, no real-time scheduling (the VM's root can raise the daemon's limits), a
/// denied syscall.
const VM_CORE: &[Case] = &[
    case("resources/fork_bomb", &[TIME_LIMIT], r#"{"numprocs": 20}"#),
    case(
        "resources/memory_anon",
        &[MEMORY_LIMIT],
        r#"{"memorylimit": 64, "cputime": 20}"#,
    ),
    case(
        "resources/disk_fill",
        &[OK],
        r#"{"disklimit": 30, "cputime": 20}"#,
    )
    .check(|v| at_most(v, "WROTE", 30 * MB + (1 << 20))),
    case("escape/double_fork_setsid", &[OK], r#"{"cputime": 20}"#),
    case("escape/proc_leaks", &[OK], r#"{"cputime": 20}"#),
    case("network/tcp_loopback", &[OK], r#"{"cputime": 20}"#),
    case("resources/realtime_priority", &[OK], r#"{"cputime": 20}"#),
    Case {
        params: r#"{"cputime": 20}"#,
        ..Case::denied("escape/ptrace", "ptrace")
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vm_payloads_core() {
    if !privileged() {
        return;
    }
    tokio::time::timeout(bound(), group("vm", 4, VM_CORE, &["python3"]))
        .await
        .expect("the group finished within its bound");
}

/// The daemon never follows a link a program made in its run directory: reading results
/// (`RunDir::read_file`, `has_file`), writing files (`write_file`) and removing the directory.
#[test]
fn payloads_run_dir_links_never_followed() {
    if !privileged() {
        return;
    }
    let b = runner_tests::Bench::new();
    let canary = runner_tests::private_dir("runner-link-canary-");
    std::fs::create_dir(canary.join("sub")).expect("canary");
    std::fs::write(canary.join("canary.txt"), CANARY_TEXT).expect("canary file");
    let c = canary.display();
    let dir = b.run_dir(0);
    let script = format!(
        "ln -s {c}/canary.txt prog.err && ln -s {c} linkdir && ln -s / root && \
         ln -s {c}/new.txt prog.c && mkfifo fifo.err && mkdir locked && \
         ln -s {c} locked/inner && chmod 000 locked && echo made"
    );
    let out = b.spawn(
        &dir,
        0,
        &["/bin/sh", "-c", &script],
        runner_tests::limits(),
        None,
    );
    assert_eq!(runner_tests::text(&out.stdout), "made\n", "{out:?}");
    // The host sees the links (the jail shares the directory) and must not read through them.
    assert!(
        std::fs::symlink_metadata(dir.host.join("prog.err")).is_ok_and(|m| m.is_symlink()),
        "the program's symlink is in the run directory"
    );
    assert_eq!(
        dir.read_file("prog.err", 1 << 20),
        None,
        "read through a symlink"
    );
    assert!(
        !dir.has_file("prog.err"),
        "a symlink counted as a result file"
    );
    assert_eq!(dir.read_file("linkdir", 1 << 20), None);
    // A FIFO is not read (and does not block).
    let t = Instant::now();
    assert_eq!(dir.read_file("fifo.err", 1 << 20), None);
    assert!(t.elapsed() < Duration::from_secs(1), "blocked on a FIFO");
    // Writing a file whose name the program took as a symlink fails instead of writing through.
    assert!(
        dir.write_file("prog.c", b"x").is_err(),
        "wrote through a symlink"
    );
    assert!(
        !canary.join("new.txt").exists(),
        "a file appeared through the link"
    );
    let host = dir.host.clone();
    drop(dir);
    assert!(
        gone_within(&host, Duration::from_secs(5)),
        "run directory left: {}",
        host.display()
    );
    assert_eq!(
        tree(&canary, 3).into_iter().collect::<Vec<_>>(),
        vec![canary.join("canary.txt"), canary.join("sub")],
        "the canary directory changed"
    );
    assert_eq!(
        std::fs::read(canary.join("canary.txt")).ok().as_deref(),
        Some(CANARY_TEXT)
    );
    std::fs::remove_dir_all(&canary).expect("remove canary");
}
