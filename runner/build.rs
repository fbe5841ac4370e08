//! Embeds the eBPF object when `cargo xtask build-ebpf` has produced it.
//!
//! Looks for `$RUNNER_EBPF_OBJECT`, else `<workspace>/target/bpf/runner-ebpf.o` (or under
//! `$CARGO_TARGET_DIR`). Found: copied to `$OUT_DIR/runner-ebpf.o` and embedded by
//! `monitor::EMBEDDED_OBJECT`. Not found: an empty file is embedded and the daemon runs in its
//! no-eBPF mode unless an object is installed beside the binary. So `cargo build` never needs
//! the eBPF toolchain.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=RUNNER_EBPF_OBJECT");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("runner-ebpf.o");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_absolute() {
                t
            } else {
                manifest.join("..").join(t)
            }
        })
        .unwrap_or_else(|| manifest.join("../target"));
    let bpf_dir = target.join("bpf");
    let object = std::env::var_os("RUNNER_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| bpf_dir.join("runner-ebpf.o"));
    // Watch the directory too: creating the object changes its mtime, so a later build picks
    // it up (a missing path in rerun-if-changed would rerun this script on every build).
    let _ = std::fs::create_dir_all(&bpf_dir);
    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    let bytes = if object.is_file() {
        println!("cargo:rerun-if-changed={}", object.display());
        std::fs::read(&object).expect("read the eBPF object")
    } else {
        Vec::new()
    };
    // Write only on change: an unchanged object must not rebuild the crate.
    if std::fs::read(&out).ok().as_deref() != Some(&bytes[..]) {
        std::fs::write(&out, &bytes).expect("write OUT_DIR/runner-ebpf.o");
    }
}
