//! `cargo xtask build-ebpf`: check the eBPF toolchain, then build `runner-ebpf` and copy the
//! object to `target/bpf/runner-ebpf.o`.
//!
//! The toolchain (measured on this project's machines: docs/kernel.md §5): the nightly pinned in
//! `runner-ebpf/rust-toolchain.toml` with `rust-src`, and `bpf-linker` 0.10.4, which loads the
//! nightly's own libLLVM and so must run under that nightly, whose LLVM major must be 22.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util;

pub(crate) const BPF_LINKER_VERSION: &str = "0.10.4";
const LLVM_MAJOR: &str = "22";
const TARGET: &str = "bpfel-unknown-none";

/// The nightly pinned in `runner-ebpf/rust-toolchain.toml` (`channel = "..."`).
pub(crate) fn pinned_nightly() -> Result<String> {
    let path = util::workspace_root().join("runner-ebpf/rust-toolchain.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .next()
        .with_context(|| format!("no `channel = \"...\"` in {}", path.display()))
}

/// Every missing piece of the toolchain, each with the command that fixes it.
fn missing(nightly: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let rustc = Command::new("rustup")
        .args(["run", nightly, "rustc", "-vV"])
        .output();
    match rustc {
        Err(e) => missing.push(format!(
            "rustup not found ({e}): install it from https://rustup.rs"
        )),
        Ok(out) if !out.status.success() => missing.push(format!(
            "toolchain {nightly} is not installed: \
             rustup toolchain install {nightly} --profile minimal --component rust-src"
        )),
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let llvm = text
                .lines()
                .find_map(|l| l.strip_prefix("LLVM version: "))
                .unwrap_or("unknown");
            if llvm.split('.').next() != Some(LLVM_MAJOR) {
                missing.push(format!(
                    "{nightly} has LLVM {llvm}, bpf-linker {BPF_LINKER_VERSION} needs LLVM {LLVM_MAJOR}: \
                     pin a nightly with LLVM {LLVM_MAJOR} in runner-ebpf/rust-toolchain.toml"
                ));
            }
            let comps = Command::new("rustup")
                .args(["component", "list", "--installed", "--toolchain", nightly])
                .output();
            let has_src = comps.is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.starts_with("rust-src"))
            });
            if !has_src {
                missing.push(format!(
                    "rust-src is missing for {nightly}: rustup component add rust-src --toolchain {nightly}"
                ));
            }
        }
    }
    let linker = Command::new("bpf-linker").arg("--version").output();
    let fix = format!("cargo install bpf-linker --version {BPF_LINKER_VERSION} --locked");
    match linker {
        Err(_) => missing.push(format!("bpf-linker is not on PATH: {fix}")),
        Ok(out) => {
            let v = String::from_utf8_lossy(&out.stdout);
            if !v.split_whitespace().any(|w| w == BPF_LINKER_VERSION) {
                missing.push(format!(
                    "bpf-linker is `{}`, want {BPF_LINKER_VERSION}: {fix} --force",
                    v.trim()
                ));
            }
        }
    }
    missing
}

/// Check the toolchain, build, copy the object; returns its path.
pub(crate) fn build() -> Result<PathBuf> {
    let nightly = pinned_nightly()?;
    let missing = missing(&nightly);
    if !missing.is_empty() {
        for m in &missing {
            eprintln!("xtask: missing: {m}");
        }
        bail!(
            "the eBPF toolchain is incomplete ({} item(s) above)",
            missing.len()
        );
    }
    let root = util::workspace_root();
    let crate_dir = root.join("runner-ebpf");
    util::timed("build runner-ebpf", || {
        util::run(
            Command::new("rustup")
                .args([
                    "run",
                    &nightly,
                    "cargo",
                    "build",
                    "-Z",
                    "build-std=core",
                    "--release",
                ])
                .args(["--target", TARGET])
                .current_dir(&crate_dir)
                // The nightly's cargo/rustc, not the stable ones that run xtask.
                .env_remove("CARGO")
                .env_remove("RUSTC")
                .env_remove("RUSTDOC")
                .env_remove("RUSTC_WRAPPER")
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_BUILD_TARGET_DIR")
                .env(
                    "CARGO_ENCODED_RUSTFLAGS",
                    "-Cdebuginfo=2\x1f-Clink-arg=--btf",
                ),
        )
    })?;
    let built = crate_dir
        .join("target")
        .join(TARGET)
        .join("release/runner-ebpf");
    let out_dir = util::target_dir()?.join("bpf");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out = out_dir.join("runner-ebpf.o");
    std::fs::copy(&built, &out)
        .with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
    println!("{}", out.display());
    Ok(out)
}
