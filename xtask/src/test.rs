//! `cargo xtask test`: THE test command.
//!
//! 0. Install what the tests need and this host lacks (`install::ensure`, as `cargo xtask serve`
//!    does: the language toolchains, pylint, the pinned nightly and bpf-linker; plus the test VM
//!    and the RabbitMQ broker of the queue tests). Without root it installs what needs none and
//!    fails naming the rest. Then the broker is started when it is not running (`broker`).
//! 1. `cargo test --workspace --include-ignored` on the host (unit, HTTP and privileged tests; the
//!    `#[ignore]`d ones need the language toolchains, which step 0 installed). The privileged
//!    tests skip themselves when not root; with `CI` set, `RUNNER_REQUIRE_ALL=1` turns their skips
//!    into failures. The test binaries embed the eBPF object (`runner/build.rs`), so the verdict
//!    tests run in both monitor modes. When the VM step runs, `vm_*` tests are skipped here (the
//!    host is hybrid v1/v2).
//! 2. The `vm_*` tests (the pure cgroup v2 subset) of each `runner-tests` test binary, one VM per
//!    binary, `--test-threads=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::install::{self, Piece};
use crate::{broker, ebpf, util, vm};

#[derive(Args)]
pub(crate) struct TestArgs {
    /// Only the host tests (`cargo test --workspace`); the VM is neither set up nor used.
    #[arg(long, conflicts_with = "vm_only")]
    no_vm: bool,
    /// Only the `vm_*` tests in the VM.
    #[arg(long)]
    vm_only: bool,
    /// Per-VM timeout in seconds (one VM per test binary).
    #[arg(long, default_value_t = 900)]
    vm_timeout: u64,
}

/// Test-name filter of the pure cgroup v2 subset.
const VM_FILTER: &str = "vm_";

pub(crate) fn run(args: &TestArgs) -> Result<()> {
    let ci = util::in_ci();
    let vm_step = !args.no_vm;
    let mut pieces = vec![Piece::Languages, Piece::EbpfToolchain, Piece::Broker];
    if vm_step {
        pieces.push(Piece::TestVm);
    }
    util::timed("install", || install::ensure(&pieces))?;
    if !args.vm_only && util::is_root() {
        util::timed("broker", broker::ensure_running)?;
    }
    // Installed above; this names the gap should the toolchain still be incomplete.
    ebpf::check()?;
    if !args.vm_only {
        util::timed("host tests", || host_tests(ci, vm_step))?;
    }
    if vm_step {
        util::timed("VM tests", || vm_tests(ci, args.vm_timeout))?;
    }
    Ok(())
}

fn host_tests(ci: bool, skip_vm_tests: bool) -> Result<()> {
    if !util::is_root() {
        eprintln!(
            "xtask: not root: the privileged tests (runner-tests) will skip themselves; \
             run `sudo -E cargo xtask test` for the full set"
        );
    }
    let mut cmd = Command::new(util::cargo());
    cmd.args(["test", "--workspace"])
        .current_dir(util::workspace_root());
    // The tests marked #[ignore] need the language toolchains, installed by now.
    let mut harness = vec!["--include-ignored"];
    if skip_vm_tests {
        harness.extend(["--skip", VM_FILTER]);
    }
    if ci {
        cmd.env("RUNNER_REQUIRE_ALL", "1");
    }
    cmd.arg("--").args(harness);
    util::run(&mut cmd)
}

/// A test executable of runner-tests and the package directory cargo would run it in.
struct TestBin {
    exe: PathBuf,
    cwd: PathBuf,
    name: String,
}

fn vm_tests(ci: bool, timeout: u64) -> Result<()> {
    let bins = build_test_bins()?;
    let mut failed = Vec::new();
    let mut ran = 0;
    for bin in &bins {
        let listed = Command::new(&bin.exe)
            .args([VM_FILTER, "--list", "--format", "terse"])
            .current_dir(&bin.cwd)
            .output()
            .with_context(|| format!("listing tests of {}", bin.exe.display()))?;
        let count = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter(|l| l.ends_with(": test"))
            .count();
        if count == 0 {
            eprintln!("xtask: {}: no {VM_FILTER}* tests", bin.name);
            continue;
        }
        eprintln!(
            "xtask: {}: {count} {VM_FILTER}* test(s) in the VM",
            bin.name
        );
        ran += 1;
        let run = vm::RunArgs {
            timeout,
            mem: "2G".into(),
            cpus: 2,
            scratch: None,
            cmd: vec![
                bin.exe.display().to_string(),
                VM_FILTER.into(),
                "--test-threads=1".into(),
            ],
        };
        let envs: &[(&str, &str)] = if ci {
            &[("RUNNER_REQUIRE_ALL", "1")]
        } else {
            &[]
        };
        let code = vm::run(&run, &bin.cwd, envs)?;
        if code != 0 {
            failed.push(format!("{} (exit {code})", bin.name));
        }
    }
    eprintln!(
        "xtask: VM tests: {ran} binary(ies) run, {} failed",
        failed.len()
    );
    if !failed.is_empty() {
        bail!("VM tests failed: {}", failed.join(", "));
    }
    Ok(())
}

fn build_test_bins() -> Result<Vec<TestBin>> {
    // The `runner` binary too: tests that start it (`runner_tests::daemon::runner_binary`)
    // cannot build it inside the VM (read-only root, no registry).
    util::run(
        Command::new(util::cargo())
            .args(["build", "-p", "runner"])
            .current_dir(util::workspace_root()),
    )?;
    let mut cmd = Command::new(util::cargo());
    cmd.args([
        "test",
        "-p",
        "runner-tests",
        "--no-run",
        "--message-format=json",
    ])
    .current_dir(util::workspace_root())
    .stderr(std::process::Stdio::inherit());
    eprintln!("xtask: $ {}", util::show(&cmd));
    let out = cmd.output().context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!(
            "building the runner-tests test binaries failed ({})",
            out.status
        );
    }
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        let Some(exe) = msg["executable"].as_str() else {
            continue;
        };
        let manifest = msg["manifest_path"].as_str().unwrap_or_default();
        let cwd = Path::new(manifest)
            .parent()
            .map_or_else(util::workspace_root, Path::to_path_buf);
        let kind = msg["target"]["kind"][0].as_str().unwrap_or("?");
        let name = format!("{} ({kind})", msg["target"]["name"].as_str().unwrap_or("?"));
        bins.push(TestBin {
            exe: PathBuf::from(exe),
            cwd,
            name,
        });
    }
    Ok(bins)
}
