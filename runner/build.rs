//! Embeds the eBPF object (`monitor::EMBEDDED_OBJECT`), built by a plain `cargo build` whenever
//! the eBPF toolchain is on this host, so there is no separate step to remember.
//!
//! - `RUNNER_EBPF_OBJECT=FILE`: embed that prebuilt object (it must exist).
//! - `RUNNER_EBPF_OBJECT=` (set, empty): embed nothing.
//! - Otherwise, with the pinned nightly (`runner-ebpf/rust-toolchain.toml`, with rust-src) and
//!   bpf-linker present: build `runner-ebpf` the way `cargo xtask` does (the same code,
//!   `xtask/src/ebpf_build.rs`, in its own target directory `runner-ebpf/target/`) and embed it.
//!   A failing build of a present toolchain fails this build.
//! - Without the toolchain: embed nothing, with a cargo warning naming what is missing; the daemon
//!   then runs in its documented no-eBPF mode unless an object is installed beside the binary.
//!   `cargo xtask serve` / `cargo xtask test` install the toolchain.
//!
//! The script reruns only when the eBPF sources change or the toolchain appears (see
//! `ebpf_build::watched`), so a no-op build stays a no-op; a rerun with nothing changed costs the
//! nested cargo's check (well under a second).

#[path = "../xtask/src/ebpf_build.rs"]
mod ebpf_build;

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=RUNNER_EBPF_OBJECT");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("runner-ebpf.o");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let workspace = manifest.parent().expect("runner/ has a parent");
    let bytes = match std::env::var_os("RUNNER_EBPF_OBJECT") {
        Some(path) if path.is_empty() => Vec::new(),
        Some(path) => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            std::fs::read(&path).unwrap_or_else(|e| {
                panic!("RUNNER_EBPF_OBJECT={}: cannot read it: {e}", path.display())
            })
        }
        None => build_or_skip(workspace),
    };
    // Write only on change: an unchanged object must not rebuild the crate.
    if std::fs::read(&out).ok().as_deref() != Some(&bytes[..]) {
        std::fs::write(&out, &bytes).expect("write OUT_DIR/runner-ebpf.o");
    }
}

/// The object built with the pinned toolchain, or nothing (with a warning) when it is missing.
fn build_or_skip(workspace: &Path) -> Vec<u8> {
    let nightly = ebpf_build::pinned_nightly(workspace).unwrap_or_else(|e| panic!("{e}"));
    for p in ebpf_build::watched(workspace, &nightly) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let missing = ebpf_build::missing(&nightly);
    if !missing.is_empty() {
        let what: Vec<String> = missing.iter().map(ToString::to_string).collect();
        println!(
            "cargo:warning=built without the eBPF monitor (no-eBPF mode): {}; \
             `cargo xtask serve` or `cargo xtask test` installs the toolchain",
            what.join("; ")
        );
        return Vec::new();
    }
    let object = ebpf_build::build(workspace, &nightly).unwrap_or_else(|e| {
        panic!("the eBPF toolchain is present but building runner-ebpf failed: {e}")
    });
    std::fs::read(&object)
        .unwrap_or_else(|e| panic!("cannot read the eBPF object {}: {e}", object.display()))
}
