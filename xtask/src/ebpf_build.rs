//! The eBPF toolchain and the build of `runner-ebpf`, shared by `cargo xtask` and
//! `runner/build.rs` (which includes this file with `#[path]`), so that a plain `cargo build` and
//! the xtask tasks build the object the same way. std only, for that reason.
//!
//! Owns: the pins (the nightly in `runner-ebpf/rust-toolchain.toml`, bpf-linker's version here),
//! what a host lacks of the toolchain (each gap with the command that fills it), the nested cargo
//! build of `runner-ebpf` and the paths whose change means "look again" for `build.rs`.
//! Must not: install anything (xtask's installer does) or print (each caller reports its way).
//!
//! The toolchain: the pinned nightly with `rust-src` (`-Z build-std=core` for
//! `bpfel-unknown-none`), and `bpf-linker`, which loads the nightly's own libLLVM and so must
//! run under that nightly, whose LLVM major must be the one bpf-linker was built for.

// Each includer uses part of this file (build.rs: no `fix`; xtask: no `watched`).
#![allow(
    dead_code,
    reason = "shared by runner/build.rs and xtask, each using a part"
)]

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The bpf-linker release `cargo install` puts on this host (the only place it is pinned).
pub(crate) const BPF_LINKER_VERSION: &str = "0.10.4";
/// The LLVM major bpf-linker [`BPF_LINKER_VERSION`] works with; the pinned nightly must match.
pub(crate) const LLVM_MAJOR: &str = "22";
/// The eBPF target (little-endian: x86_64 and aarch64 hosts).
pub(crate) const TARGET: &str = "bpfel-unknown-none";

/// One piece of the eBPF toolchain this host lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Missing {
    /// No `rustup` on `PATH` nor in `$CARGO_HOME/bin`.
    Rustup,
    /// The pinned nightly is not installed.
    Nightly { nightly: String },
    /// The nightly lacks `rust-src` (needed by `-Z build-std=core`).
    RustSrc { nightly: String },
    /// The pinned nightly's LLVM major is not [`LLVM_MAJOR`]: a wrong pin, nothing to install.
    Llvm { nightly: String, found: String },
    /// bpf-linker is absent (`found: None`) or another version (`found: Some(--version)`).
    BpfLinker { found: Option<String> },
}

impl Missing {
    /// The command that installs the piece (program first), or `None` when this file cannot
    /// name one (rustup comes from its own installer; a wrong LLVM needs a new pin).
    pub(crate) fn install_argv(&self) -> Option<Vec<String>> {
        let argv: Vec<&str> = match self {
            Missing::Rustup | Missing::Llvm { .. } => return None,
            Missing::Nightly { nightly } => vec![
                "rustup",
                "toolchain",
                "install",
                nightly,
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ],
            Missing::RustSrc { nightly } => {
                vec![
                    "rustup",
                    "component",
                    "add",
                    "rust-src",
                    "--toolchain",
                    nightly,
                ]
            }
            Missing::BpfLinker { found } => {
                let mut v = vec![
                    "cargo",
                    "install",
                    "bpf-linker",
                    "--version",
                    BPF_LINKER_VERSION,
                    "--locked",
                ];
                if found.is_some() {
                    v.push("--force");
                }
                v
            }
        };
        Some(argv.into_iter().map(String::from).collect())
    }

    /// What to run to fill the gap, for messages; `None` when only a change to the pins does.
    pub(crate) fn fix(&self) -> Option<String> {
        match self {
            Missing::Rustup => Some(
                "install rustup: curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"
                    .into(),
            ),
            _ => self.install_argv().map(|a| a.join(" ")),
        }
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Rustup => write!(f, "rustup is not installed"),
            Missing::Nightly { nightly } => write!(f, "toolchain {nightly} is not installed"),
            Missing::RustSrc { nightly } => write!(f, "rust-src is missing for {nightly}"),
            Missing::Llvm { nightly, found } => write!(
                f,
                "{nightly} has LLVM {found}, bpf-linker {BPF_LINKER_VERSION} needs LLVM \
                 {LLVM_MAJOR}: pin a nightly with LLVM {LLVM_MAJOR} in runner-ebpf/rust-toolchain.toml"
            ),
            Missing::BpfLinker { found: None } => write!(f, "bpf-linker is not installed"),
            Missing::BpfLinker { found: Some(v) } => {
                write!(f, "bpf-linker is `{v}`, want {BPF_LINKER_VERSION}")
            }
        }
    }
}

/// The nightly pinned in `runner-ebpf/rust-toolchain.toml` (`channel = "..."`).
pub(crate) fn pinned_nightly(workspace: &Path) -> io::Result<String> {
    let path = workspace.join("runner-ebpf/rust-toolchain.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("channel"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .next()
        .ok_or_else(|| io::Error::other(format!("no `channel = \"...\"` in {}", path.display())))
}

/// `$CARGO_HOME`, else `~/.cargo`.
pub(crate) fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".cargo")))
}

/// `$RUSTUP_HOME`, else `~/.rustup`.
fn rustup_home() -> Option<PathBuf> {
    std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".rustup")))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `name` on `PATH`, else in `$CARGO_HOME/bin` (where rustup and `cargo install` put programs,
/// and which a fresh shell may not have on `PATH` yet).
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(cargo_home().map(|c| c.join("bin")))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// What this host lacks of the eBPF toolchain for `nightly` (empty: it can build the object).
pub(crate) fn missing(nightly: &str) -> Vec<Missing> {
    let mut missing = Vec::new();
    match find_program("rustup") {
        None => missing.push(Missing::Rustup),
        Some(rustup) => {
            let out = Command::new(&rustup)
                .args(["run", nightly, "rustc", "-vV"])
                // A missing toolchain is reported, never installed behind the caller's back.
                .env("RUSTUP_AUTO_INSTALL", "0")
                .env_remove("RUSTUP_TOOLCHAIN")
                .stdin(Stdio::null())
                .output();
            match out {
                Ok(out) if out.status.success() => {
                    let text = String::from_utf8_lossy(&out.stdout);
                    let llvm = text
                        .lines()
                        .find_map(|l| l.strip_prefix("LLVM version: "))
                        .unwrap_or("unknown");
                    if llvm.split('.').next() != Some(LLVM_MAJOR) {
                        missing.push(Missing::Llvm {
                            nightly: nightly.into(),
                            found: llvm.into(),
                        });
                    }
                    if !has_rust_src(&rustup, nightly) {
                        missing.push(Missing::RustSrc {
                            nightly: nightly.into(),
                        });
                    }
                }
                _ => missing.push(Missing::Nightly {
                    nightly: nightly.into(),
                }),
            }
        }
    }
    match bpf_linker_version() {
        Some(v) if v.split_whitespace().any(|w| w == BPF_LINKER_VERSION) => {}
        found => missing.push(Missing::BpfLinker { found }),
    }
    missing
}

fn has_rust_src(rustup: &Path, nightly: &str) -> bool {
    Command::new(rustup)
        .args(["component", "list", "--installed", "--toolchain", nightly])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with("rust-src"))
        })
}

/// `bpf-linker --version` (e.g. `bpf-linker 0.10.4`), `None` when it is not installed.
pub(crate) fn bpf_linker_version() -> Option<String> {
    let out = Command::new(find_program("bpf-linker")?)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Builds `runner-ebpf` with `nightly` (release, `-Z build-std=core`, BTF) into
/// `runner-ebpf/target/` and returns the object's path. The caller checked [`missing`] first.
/// The nested cargo writes its progress to our stderr (never stdout: a build script's stdout is
/// read by cargo). Warm and unchanged, it takes well under a second.
pub(crate) fn build(workspace: &Path, nightly: &str) -> io::Result<PathBuf> {
    let crate_dir = workspace.join("runner-ebpf");
    let rustup = find_program("rustup").ok_or_else(|| io::Error::other("rustup not found"))?;
    let mut cmd = Command::new(rustup);
    cmd.args(["run", nightly, "cargo", "build", "-Z", "build-std=core"])
        .args(["--release", "--target", TARGET])
        .current_dir(&crate_dir)
        .stdin(Stdio::null())
        .stdout(io::stderr());
    clean_env(&mut cmd);
    cmd.env("RUSTUP_AUTO_INSTALL", "0").env(
        "CARGO_ENCODED_RUSTFLAGS",
        "-Cdebuginfo=2\x1f-Clink-arg=--btf",
    );
    // rustc runs the linker by name: make sure `cargo install`'s directory is searched.
    if let Some(bin) = cargo_home().map(|c| c.join("bin")) {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let dirs = std::iter::once(bin).chain(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(dirs) {
            cmd.env("PATH", joined);
        }
    }
    let status = cmd.status().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot start rustup run {nightly} cargo: {e}"),
        )
    })?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "building runner-ebpf with {nightly} failed ({status})"
        )));
    }
    let object = crate_dir
        .join("target")
        .join(TARGET)
        .join("release/runner-ebpf");
    if !object.is_file() {
        return Err(io::Error::other(format!(
            "the build left no object at {}",
            object.display()
        )));
    }
    Ok(object)
}

/// Removes what an outer cargo (running xtask, or `runner/build.rs`) sets for its own build, so
/// the nested one uses the nightly, its own target directory and its own flags: the compiler and
/// wrappers (clippy sets `RUSTC_WORKSPACE_WRAPPER`), flags (`RUSTFLAGS`, cargo-fuzz's sanitizers),
/// the target directory, and the variables cargo sets for build scripts (`CARGO_CFG_*` of the
/// host would leak into aya-ebpf's build script). `CARGO_HOME`, network settings and the
/// jobserver (`CARGO_MAKEFLAGS`) stay.
fn clean_env(cmd: &mut Command) {
    const PREFIXES: &[&str] = &[
        "CARGO_CFG_",
        "CARGO_FEATURE_",
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_BIN_",
        "CARGO_TARGET_",
        "CARGO_BUILD_",
        "CARGO_PROFILE_",
        "CARGO_ENCODED_",
        "DEP_",
        "RUSTC",
        "RUSTDOC",
        "RUSTFLAGS",
    ];
    const NAMES: &[&str] = &[
        "CARGO",
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_RUSTC_CURRENT_DIR",
        "RUSTUP_TOOLCHAIN",
        "OUT_DIR",
        "TARGET",
        "HOST",
        "NUM_JOBS",
        "OPT_LEVEL",
        "DEBUG",
        "PROFILE",
    ];
    let remove: Vec<OsString> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| {
            let k = k.to_string_lossy();
            NAMES.contains(&k.as_ref()) || PREFIXES.iter().any(|p| k.starts_with(p))
        })
        .collect();
    for k in remove {
        cmd.env_remove(k);
    }
}

/// What `runner/build.rs` watches (`cargo:rerun-if-changed`): the sources of the object, and
/// where the toolchain shows up. Each watched path that changes reruns the script and rebuilds
/// the crate, so the watch is narrow once a piece is there: bpf-linker itself, else
/// `$CARGO_HOME/bin` (where rustup and `cargo install` put it); the nightly's component list
/// (rust-src), else rustup's `update-hashes/` (a file per installed channel). Only paths that
/// exist: a missing one would rerun the script on every build.
pub(crate) fn watched(workspace: &Path, nightly: &str) -> Vec<PathBuf> {
    let mut paths = vec![
        workspace.join("runner-ebpf/src"),
        workspace.join("runner-ebpf/Cargo.toml"),
        workspace.join("runner-ebpf/Cargo.lock"),
        workspace.join("runner-ebpf/rust-toolchain.toml"),
        workspace.join("runner-common/src"),
        workspace.join("runner-common/Cargo.toml"),
    ];
    if let Some(bin) = cargo_home().map(|c| c.join("bin")) {
        let linker = bin.join("bpf-linker");
        paths.push(if linker.exists() { linker } else { bin });
    }
    if let Some(r) = rustup_home() {
        let prefix = format!("{nightly}-");
        let components: Vec<PathBuf> = std::fs::read_dir(r.join("toolchains"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path().join("lib/rustlib/components"))
            .filter(|p| p.exists())
            .collect();
        if components.is_empty() {
            paths.push(r.join("update-hashes"));
        }
        paths.extend(components);
    }
    paths.retain(|p| p.exists());
    paths
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The toolchain checks and what they print.
    use super::*;

    /// The printed fix is the command the installer runs.
    #[test]
    fn test_fix_is_the_install_command() {
        let n = "nightly-2026-05-19".to_owned();
        let m = Missing::Nightly { nightly: n.clone() };
        assert_eq!(
            m.fix().as_deref(),
            Some(
                "rustup toolchain install nightly-2026-05-19 --profile minimal --component rust-src"
            )
        );
        let fresh = Missing::BpfLinker { found: None };
        let other = Missing::BpfLinker {
            found: Some("bpf-linker 0.9.0".into()),
        };
        assert_eq!(
            fresh.install_argv().expect("installable"),
            [
                "cargo",
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked"
            ]
        );
        assert_eq!(
            other
                .install_argv()
                .expect("installable")
                .last()
                .map(String::as_str),
            Some("--force")
        );
        assert!(Missing::Rustup.install_argv().is_none() && Missing::Rustup.fix().is_some());
        let llvm = Missing::Llvm {
            nightly: n,
            found: "21.1".into(),
        };
        assert!(llvm.fix().is_none());
    }

    /// The pin is read from the file `rustup` itself reads.
    #[test]
    fn test_pinned_nightly_is_the_toolchain_file_channel() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let n = pinned_nightly(&root).expect("pinned");
        assert!(n.starts_with("nightly-"), "{n}");
        assert!(watched(&root, &n).iter().all(|p| p.exists()));
    }
}
