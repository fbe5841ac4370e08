//! `cargo xtask build-ebpf`: check the eBPF toolchain, build `runner-ebpf` and copy the object
//! to `target/bpf/runner-ebpf.o` (to install beside a binary built without it, or to pass as
//! `RUNNER_EBPF_OBJECT`). A plain `cargo build` embeds the object by itself when the toolchain is
//! present (`runner/build.rs`); `cargo xtask serve` / `test` / `deb` install the toolchain.
//!
//! The pins and the build itself live in `ebpf_build.rs`, shared with `runner/build.rs`; the
//! toolchain as measured on this project's machines is in docs/kernel.md §5.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::{ebpf_build, util};

/// The nightly pinned in `runner-ebpf/rust-toolchain.toml`.
pub(crate) fn pinned_nightly() -> Result<String> {
    Ok(ebpf_build::pinned_nightly(&util::workspace_root())?)
}

/// Fails with every missing piece of the toolchain and its fix when it is incomplete.
pub(crate) fn check() -> Result<String> {
    let nightly = pinned_nightly()?;
    let missing = ebpf_build::missing(&nightly);
    if !missing.is_empty() {
        for m in &missing {
            match m.fix() {
                Some(fix) => eprintln!("xtask: missing: {m}: {fix}"),
                None => eprintln!("xtask: missing: {m}"),
            }
        }
        bail!(
            "the eBPF toolchain is incomplete ({} item(s) above; `cargo xtask serve` installs it)",
            missing.len()
        );
    }
    Ok(nightly)
}

/// Builds the object with the pinned toolchain (checked first); returns its path under
/// `runner-ebpf/target/`.
pub(crate) fn object() -> Result<PathBuf> {
    let nightly = check()?;
    util::timed("build runner-ebpf", || {
        eprintln!(
            "xtask: $ rustup run {nightly} cargo build -Z build-std=core --release --target {} (in runner-ebpf/)",
            ebpf_build::TARGET
        );
        Ok(ebpf_build::build(&util::workspace_root(), &nightly)?)
    })
}

/// `cargo xtask build-ebpf`: the object, copied to `target/bpf/runner-ebpf.o`; returns that path.
pub(crate) fn build() -> Result<PathBuf> {
    let built = object()?;
    let out_dir = util::target_dir()?.join("bpf");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out = out_dir.join("runner-ebpf.o");
    std::fs::copy(&built, &out)
        .with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
    println!("{}", out.display());
    Ok(out)
}
