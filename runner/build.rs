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
//!
//! It also embeds what `GET /version` and `runner --version` report (`runner/src/version.rs`):
//! `RUNNER_GIT_COMMIT` (the environment variable when set, e.g. by a packager building from a
//! tarball; else `git rev-parse HEAD` of the checkout; else `unknown`), `RUNNER_BUILD_PROFILE`
//! (cargo's profile) and `RUNNER_EBPF_EMBEDDED` (`yes` when an eBPF object is embedded, else `no`). A new
//! commit reruns the script (it watches the checkout's HEAD and the branch it points to).

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
    println!(
        "cargo:rustc-env=RUNNER_EBPF_EMBEDDED={}",
        if bytes.is_empty() { "no" } else { "yes" }
    );
    println!(
        "cargo:rustc-env=RUNNER_BUILD_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into())
    );
    println!(
        "cargo:rustc-env=RUNNER_GIT_COMMIT={}",
        git_commit(workspace)
    );
}

/// The commit this build is made from: `RUNNER_GIT_COMMIT` if set, else the checkout's HEAD,
/// else `unknown` (a source tarball without `.git`).
fn git_commit(workspace: &Path) -> String {
    println!("cargo:rerun-if-env-changed=RUNNER_GIT_COMMIT");
    if let Some(c) = std::env::var("RUNNER_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
    {
        return c;
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(workspace)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    // Only this checkout's own repository: a tarball unpacked inside some other git work tree
    // must not report that tree's commit.
    let own = git(&["rev-parse", "--show-toplevel"])
        .and_then(|top| std::fs::canonicalize(top).ok())
        .zip(std::fs::canonicalize(workspace).ok())
        .is_some_and(|(top, ws)| top == ws);
    let Some(commit) = git(&["rev-parse", "HEAD"]).filter(|_| own) else {
        return "unknown".into();
    };
    // Rerun on a new commit: HEAD itself (a checkout), the branch it names, packed refs.
    let mut watch = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watch.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watch {
        if let Some(p) = git(&["rev-parse", "--git-path", &name]) {
            let p = PathBuf::from(p);
            let p = if p.is_absolute() {
                p
            } else {
                workspace.join(p)
            };
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    commit
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
