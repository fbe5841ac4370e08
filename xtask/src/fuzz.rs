//! `cargo xtask fuzz [--secs N] [TARGET...]`: build the cargo-fuzz targets in `fuzz/` with the
//! nightly pinned in `runner-ebpf/rust-toolchain.toml` (cargo-fuzz needs nightly for
//! `-Zsanitizer`), then run each for N seconds. A crash fails the task; libFuzzer keeps the input
//! under `fuzz/artifacts/<target>/`. Corpora grow in `target/fuzz-corpus/<target>/` (seeded from
//! `fuzz/seeds/<target>/`, and `profiles/` for the profile target), so the tree stays clean.
//! Needs `cargo install cargo-fuzz` (CI pins the version, see .ci/run).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::{ebpf, util};

/// The targets in fuzz/Cargo.toml.
const TARGETS: [&str; 4] = ["run_spec", "file_id", "file_name", "profile"];

#[derive(Args)]
pub(crate) struct FuzzArgs {
    /// Seconds to run each target (0: build only).
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// Targets to run (default: all).
    targets: Vec<String>,
}

pub(crate) fn run(args: &FuzzArgs) -> Result<()> {
    let root = util::workspace_root();
    let nightly = ebpf::pinned_nightly()?;
    let has_fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_fuzz {
        bail!(
            "cargo-fuzz is not installed: cargo install cargo-fuzz --locked (CI pins the version in .ci/run)"
        );
    }
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        for t in &args.targets {
            if !TARGETS.contains(&t.as_str()) {
                bail!("unknown fuzz target {t} (known: {})", TARGETS.join(", "));
            }
        }
        args.targets.iter().map(String::as_str).collect()
    };
    util::timed("fuzz build", || {
        util::run(fuzz_cmd(&root, &nightly).arg("build"))
    })?;
    if args.secs == 0 {
        return Ok(());
    }
    let corpus_root = util::target_dir()?.join("fuzz-corpus");
    for t in targets {
        let corpus = corpus_root.join(t);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let mut cmd = fuzz_cmd(&root, &nightly);
        cmd.args(["run", t]).arg(&corpus);
        let seeds = root.join("fuzz/seeds").join(t);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        if t == "profile" {
            cmd.arg(root.join("profiles"));
        }
        cmd.arg("--")
            .arg(format!("-max_total_time={}", args.secs))
            // A slow input (over 10 s) or 2 GB of memory is a finding too.
            .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"]);
        let dict = root.join("fuzz/dict").join(format!("{t}.dict"));
        if dict.is_file() {
            cmd.arg(format!("-dict={}", dict.display()));
        }
        util::timed(&format!("fuzz {t} ({} s)", args.secs), || {
            util::run(&mut cmd).with_context(|| {
                format!(
                    "fuzz target {t} failed; the input is in {}",
                    root.join("fuzz/artifacts").join(t).display()
                )
            })
        })?;
    }
    Ok(())
}

/// `rustup run <nightly> cargo fuzz` in the workspace root (cargo-fuzz finds `fuzz/` there).
fn fuzz_cmd(root: &Path, nightly: &str) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", nightly, "cargo", "fuzz"])
        .current_dir(root)
        // The pinned toolchain must win over any rust-toolchain file or override.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO");
    cmd
}
