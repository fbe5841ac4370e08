//! Tier: privileged (docs/testing.md). Helpers for runner's privileged tests: a real `Jail` on
//! this host.
//!
//! Each test probes what it needs and skips with a printed reason when it cannot run (not root,
//! no Landlock…); with `RUNNER_REQUIRE_ALL=1` (set by `cargo xtask test` in CI) a skip is a failure.
#![forbid(unsafe_code)]

pub mod broker;
pub mod daemon;
pub mod queued;

use std::path::PathBuf;
use std::time::Duration;

use runner::jail::{End, Jail, JailConfig, JailOutput, JailSpec, RunDir, Slot};
pub use runner::monitor::EbpfMode;
use runner::profile::plan::{Limits, Step};

/// Whether `path` is gone within `within` (polled): a dropped run directory is unmounted and
/// removed by a teardown thread (docs/jail.md, "Teardown off the request path").
pub fn gone_within(path: &std::path::Path, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while path.exists() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Returns false (and prints why) when privileged tests cannot run here.
/// Added to every slot uid base the test helpers choose (env `RUNNER_TEST_UID_OFFSET`, default 0),
/// so that test suites of two checkouts running at once on one machine never share a uid (the
/// leftover-process checks look for processes by uid).
pub fn uid_offset() -> u32 {
    std::env::var("RUNNER_TEST_UID_OFFSET")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A new private directory `$TMPDIR/<prefix>XXXXXX` (random, mode 0700, created by this call:
/// never one that already exists), kept until the caller removes it. Tests run as root and must
/// not use a predictable name in the shared `/tmp`, where another user could have planted a
/// directory or a symlink of that name first.
pub fn private_dir(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("a private directory in $TMPDIR")
        .keep()
}

pub fn privileged() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        if std::env::var_os("RUNNER_REQUIRE_ALL").is_some() {
            panic!("privileged test needs root (RUNNER_REQUIRE_ALL is set)");
        }
        eprintln!("skipped: privileged test needs root");
        return false;
    }
    true
}

pub struct Env {
    // Slots first: fields drop in order, and a slot's cgroups must go before the jail's subtree.
    pub slots: Vec<Slot>,
    pub jail: Jail,
    pub data_dir: PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        // Runs before the fields drop; by then every run directory of this Env is gone and the
        // jail only needs its cgroups, not the data directory.
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A jail of its own for one test, with its own data directory: dropping it removes its cgroup
/// subtree and the directory, so nothing is left behind (statics are never dropped).
pub fn env() -> Env {
    let data_dir = private_dir("runner-test-");
    let cfg = JailConfig {
        data_dir: data_dir.clone(),
        uid_base: JailConfig::default().uid_base + uid_offset(),
        ..JailConfig::default()
    };
    let jail = Jail::new(&cfg).expect("jail setup");
    let slots = jail.make_slots(2).expect("slots");
    Env {
        jail,
        slots,
        data_dir,
    }
}

/// Size of the run directories the helpers create (a tmpfs each).
pub const RUN_DIR_BYTES: u64 = 64 << 20;

pub fn limits() -> Limits {
    Limits {
        cpu: Duration::from_secs(2),
        wall: Duration::from_secs(4),
        memory_bytes: 256 << 20,
        disk_bytes: 16 << 20,
        stream_bytes: 1 << 20,
        procs: 32,
        address_space_bytes: None,
    }
}

pub fn step(argv: &[&str], limits: Limits) -> Step {
    Step {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("LANG".into(), "C.UTF-8".into()),
        ],
        limits,
    }
}

/// Runs `argv` in a fresh jail on slot `slot`, with `files` written into the run directory.
pub fn run_in(
    slot: usize,
    argv: &[&str],
    limits: Limits,
    files: &[(&str, &[u8])],
    stdin: Option<&[u8]>,
) -> JailOutput {
    let env = &env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let slot = &env.slots[slot];
        let (name, _) = Jail::new_run_dir_name();
        let dir = env
            .jail
            .create_run_dir(slot, &name, RUN_DIR_BYTES)
            .expect("run dir");
        for (name, data) in files {
            dir.write_file(name, data).expect("write file");
        }
        let step = step(argv, limits);
        let out = env
            .jail
            .spawn(JailSpec {
                step: &step,
                policy: "default",
                run_dir: &dir,
                slot,
                stdin,
                extra_ro: &[],
            })
            .await
            .expect("spawn");
        drop(dir);
        out
    })
}

/// Runs a shell script in the jail.
pub fn sh(script: &str) -> JailOutput {
    run_in(0, &["/bin/sh", "-c", script], limits(), &[], None)
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A jail with slots whose uids no other test of this process uses (so "no process of the slot
/// uid is left" is a sound check while tests run in parallel), and one runtime for many spawns.
pub struct Bench {
    pub env: Env,
    rt: tokio::runtime::Runtime,
}

/// Slot uids of `Bench`es start here, 64 apart; `env()` keeps the default base (1_990_000).
const BENCH_UID_BASE: u32 = 1_990_100;

impl Bench {
    pub fn new() -> Bench {
        Bench::with_ebpf(EbpfMode::default())
    }

    /// Like `new`, with the eBPF monitor in `mode` (`Require` panics when it cannot load).
    pub fn with_ebpf(mode: EbpfMode) -> Bench {
        Bench::with(mode, &[])
    }

    fn with(mode: EbpfMode, extra_ro: &[PathBuf]) -> Bench {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Its own data directory: `Env` removes it on drop.
        let data_dir = private_dir("runner-bench-");
        let cfg = JailConfig {
            data_dir: data_dir.clone(),
            uid_base: BENCH_UID_BASE + uid_offset() + 64 * n,
            ebpf: mode,
            extra_ro_mount_points: extra_ro.to_vec(),
            ..JailConfig::default()
        };
        Bench::with_config(&cfg)
    }

    /// Like `new`, with mount points for `paths` in every slot's template (a profile's
    /// `extra_ro_paths`; see `spawn_extra`).
    pub fn with_extra_ro(paths: &[PathBuf]) -> Bench {
        Bench::with(EbpfMode::default(), paths)
    }

    /// The default configuration (slot uid = 1_990_000 + slot).
    pub fn default_uids() -> Bench {
        Bench {
            env: env(),
            rt: runtime(),
        }
    }

    fn with_config(cfg: &JailConfig) -> Bench {
        let jail = Jail::new(cfg).unwrap_or_else(|e| {
            // No `Env` owns the directory yet: remove it before failing.
            let _ = std::fs::remove_dir_all(&cfg.data_dir);
            panic!("jail setup: {e:?}")
        });
        let slots = jail.make_slots(2).expect("slots");
        Bench {
            env: Env {
                jail,
                slots,
                data_dir: cfg.data_dir.clone(),
            },
            rt: runtime(),
        }
    }

    pub fn uid(&self, slot: usize) -> u32 {
        self.env.slots[slot].uid
    }

    pub fn run_dir(&self, slot: usize) -> RunDir {
        let (name, _) = Jail::new_run_dir_name();
        self.env
            .jail
            .create_run_dir(&self.env.slots[slot], &name, RUN_DIR_BYTES)
            .expect("run dir")
    }

    /// The slot `i` of this bench's jail.
    pub fn slot(&self, i: usize) -> &Slot {
        &self.env.slots[i]
    }

    /// One jailed step in an existing run directory.
    pub fn spawn(
        &self,
        dir: &RunDir,
        slot: usize,
        argv: &[&str],
        limits: Limits,
        stdin: Option<&[u8]>,
    ) -> JailOutput {
        self.spawn_extra(dir, slot, argv, limits, stdin, &[])
    }

    /// `spawn` with a profile's extra read-only paths.
    pub fn spawn_extra(
        &self,
        dir: &RunDir,
        slot: usize,
        argv: &[&str],
        limits: Limits,
        stdin: Option<&[u8]>,
        extra_ro: &[String],
    ) -> JailOutput {
        let step = step(argv, limits);
        let out = self
            .rt
            .block_on(self.env.jail.spawn(JailSpec {
                step: &step,
                policy: "default",
                run_dir: dir,
                slot: &self.env.slots[slot],
                stdin,
                extra_ro,
            }))
            .expect("spawn");
        eprintln!(
            "{argv:?} -> {:?} {:?}\nstdout: {}\nstderr: {}",
            out.end,
            out.usage,
            text(&out.stdout[..out.stdout.len().min(2000)]),
            text(&out.stderr[..out.stderr.len().min(2000)])
        );
        out
    }

    /// One jailed step in an existing run directory with judge mode's extras (stdin from a
    /// file, a read-only artifact, kill on stdout overflow).
    pub fn spawn_with(
        &self,
        dir: &RunDir,
        slot: usize,
        argv: &[&str],
        limits: Limits,
        extras: runner::jail::StepExtras<'_>,
    ) -> JailOutput {
        let step = step(argv, limits);
        self.rt
            .block_on(self.env.jail.spawn_with(
                JailSpec {
                    step: &step,
                    policy: "default",
                    run_dir: dir,
                    slot: &self.env.slots[slot],
                    stdin: None,
                    extra_ro: &[],
                },
                extras,
            ))
            .expect("spawn")
    }

    /// A fresh run directory with `files`, one step, the directory removed afterwards.
    pub fn run(
        &self,
        slot: usize,
        argv: &[&str],
        limits: Limits,
        files: &[(&str, &[u8])],
        stdin: Option<&[u8]>,
    ) -> JailOutput {
        let dir = self.run_dir(slot);
        for (name, data) in files {
            dir.write_file(name, data).expect("write file");
        }
        self.spawn(&dir, slot, argv, limits, stdin)
    }

    pub fn sh(&self, script: &str) -> JailOutput {
        self.run(0, &["/bin/sh", "-c", script], limits(), &[], None)
    }

    pub fn py(&self, src: &str, limits: Limits) -> JailOutput {
        self.run(
            0,
            &["/usr/bin/python3", "prog.py"],
            limits,
            &[("prog.py", src.as_bytes())],
            None,
        )
    }

    /// Compiles `src` with gcc in a first jailed step (panics unless it compiles) into `a.out`
    /// of `dir`.
    pub fn compile_c(&self, dir: &RunDir, slot: usize, src: &str) {
        dir.write_file("prog.c", src.as_bytes())
            .expect("write prog.c");
        let k = slowdown();
        let l = Limits {
            cpu: Duration::from_secs_f64(5.0 * k),
            wall: Duration::from_secs_f64(10.0 * k),
            ..limits()
        };
        let out = self.spawn(
            dir,
            slot,
            &["/usr/bin/gcc", "-O0", "-pthread", "-o", "a.out", "prog.c"],
            l,
            None,
        );
        assert_eq!(out.end, End::Exited(0), "gcc failed: {}", text(&out.stderr));
    }

    /// Compiles `src` in the jail, then runs `./a.out` under `limits` in the same run directory.
    pub fn c(&self, src: &str, limits: Limits) -> JailOutput {
        let dir = self.run_dir(0);
        self.compile_c(&dir, 0, src);
        self.spawn(&dir, 0, &["./a.out"], limits, None)
    }
}

impl Default for Bench {
    fn default() -> Self {
        Bench::new()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Host processes whose real uid is `uid` (scans the host's /proc).
pub fn host_pids_of_uid(uid: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(st) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let real = st
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|u| u.parse::<u32>().ok());
        if real == Some(uid) {
            pids.push(pid);
        }
    }
    pids
}

/// The monitor modes a verdict test runs in: always the no-eBPF mode (`Off`), and `Require`
/// when an eBPF object is built in, or whenever `RUNNER_REQUIRE_ALL` is set (a missing object
/// then fails the test instead of skipping the eBPF half).
pub fn ebpf_modes() -> Vec<EbpfMode> {
    let mut modes = vec![EbpfMode::Off];
    if runner::monitor::object_available() || std::env::var_os("RUNNER_REQUIRE_ALL").is_some() {
        modes.push(EbpfMode::Require);
    } else {
        eprintln!(
            "skipped the eBPF half: no eBPF object built in (install the pinned nightly and bpf-linker: `cargo xtask test` does, and `cargo build` then embeds it)"
        );
    }
    modes
}

/// How much slower than this host the machine is: 30 in a pure cgroup v2 machine (the test VM,
/// emulated), else 1. Wall-clock bounds of tests are multiplied by it.
pub fn slowdown() -> f64 {
    let pure_v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .is_ok_and(|s| s.split_whitespace().any(|c| c == "memory"));
    if pure_v2 { 30.0 } else { 1.0 }
}

/// A tar of `(name, data)` files, names written raw (so hostile ones can be built).
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        let gnu = h.as_gnu_mut().expect("gnu header");
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("tar")
}
