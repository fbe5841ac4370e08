//! Helpers for runner's privileged tests (tier 3 in STYLE.md): a real `Jail` on this host.
//!
//! Each test probes what it needs and skips with a printed reason when it cannot run (not root,
//! no Landlock…); with `RUNNER_REQUIRE_ALL=1` (set by `cargo xtask test` in CI) a skip is a failure.
#![forbid(unsafe_code)]

pub mod daemon;

use std::path::PathBuf;
use std::time::Duration;

use runner::jail::{Jail, JailConfig, JailOutput, JailSpec, Slot};
use runner::profile::plan::{Limits, Step};

/// Returns false (and prints why) when privileged tests cannot run here.
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
    pub jail: Jail,
    pub slots: Vec<Slot>,
    pub data_dir: PathBuf,
}

/// A jail of its own for one test: dropping it removes its cgroup subtree, so nothing is left
/// behind (statics are never dropped).
pub fn env() -> Env {
    let data_dir = std::env::temp_dir().join(format!("runner-test-{}", std::process::id()));
    let cfg = JailConfig {
        data_dir: data_dir.clone(),
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

pub fn limits() -> Limits {
    Limits {
        cpu: Duration::from_secs(2),
        wall: Duration::from_secs(4),
        memory_bytes: 256 << 20,
        disk_bytes: 16 << 20,
        stream_bytes: 1 << 20,
        procs: 32,
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
        let dir = env.jail.create_run_dir(slot, &name).expect("run dir");
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
