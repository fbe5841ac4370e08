//! The installer: brings this Debian host up to what `cargo xtask serve`, `test` and `deb` need,
//! installing only what is missing (a second run only checks) and saying each step.
//!
//! Owns: the one list of Debian packages the tasks install ([`LANGUAGES`], one entry per shipped
//! profile, [`DEB_TOOLS`] and [`BROKER`]); the eBPF toolchain (the pinned nightly with rust-src and
//! bpf-linker; the pins live in `ebpf_build.rs`); Jobe's optional `/etc/pylintrc`; the test VM
//! (through `vm::setup`, whose script owns the VM's own packages).
//! Must not: change apt's sources, overwrite a file it did not create, or pretend: without root
//! it installs what needs no root (rustup, cargo install) and fails naming the rest.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::ebpf_build::{self, BPF_LINKER_VERSION, Missing};
use crate::{ebpf, util, vm};

/// Debian packages of each shipped language profile (`profiles/<id>.toml`). A test checks the
/// ids against `profiles/`, and [`ensure`] that each profile's version command exists after the
/// install. `libc6-dev`: gcc only recommends it, and we install without recommends.
/// `pylint`: CodeRunner's pylint-checked Python questions run it inside the job; Jobe's install
/// instructions include it, and its `/etc/pylintrc` step is [`pylintrc`].
pub(crate) const LANGUAGES: &[(&str, &[&str])] = &[
    ("c", &["gcc", "libc6-dev"]),
    ("cpp", &["g++"]),
    ("java", &["default-jdk-headless"]),
    ("nodejs", &["nodejs"]),
    ("octave", &["octave"]),
    ("pascal", &["fp-compiler"]),
    ("php", &["php-cli"]),
    ("python3", &["python3", "pylint"]),
];

/// What `cargo deb` runs besides cargo: `dpkg-shlibdeps` (the package's `$auto` dependencies).
const DEB_TOOLS: &[&str] = &["dpkg-dev"];

/// Queue mode's tests and `cargo xtask bench queue` (docs/queue.md): the RabbitMQ broker
/// (Debian 12: 3.10; `broker::ensure_running` starts it without systemd), and pika for the
/// Python publisher example of docs/queue.md, which a test runs.
const BROKER: &[&str] = &["rabbitmq-server", "python3-pika"];

/// Jobe's optional pylint step writes this (pylint reads it when no other config is found).
const PYLINTRC: &str = "/etc/pylintrc";

/// What a task needs installed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    /// The language toolchains of every shipped profile, and `/etc/pylintrc`.
    Languages,
    /// The pinned nightly with rust-src, and bpf-linker (the eBPF object).
    EbpfToolchain,
    /// The pure cgroup v2 test VM (`cargo xtask vm setup`).
    TestVm,
    /// What `cargo deb` needs besides cargo.
    DebTools,
    /// The RabbitMQ broker (and pika) of the queue tests and the queue bench.
    Broker,
}

/// Installs what `pieces` need and this host lacks; fails naming what it could not install.
pub(crate) fn ensure(pieces: &[Piece]) -> Result<()> {
    let root = util::is_root();
    let mut need_root = Vec::new();

    let wanted = packages(pieces);
    let missing = missing_packages(&wanted)?;
    if missing.is_empty() {
        if !wanted.is_empty() {
            eprintln!("xtask: Debian packages present: {}", wanted.join(" "));
        }
    } else if root {
        apt_install(&missing)?;
    } else {
        need_root.push(format!("Debian packages {}", missing.join(" ")));
    }
    if pieces.contains(&Piece::Languages) && (root || missing.is_empty()) {
        check_language_commands()?;
        pylintrc(root)?;
    }
    if pieces.contains(&Piece::EbpfToolchain) {
        ebpf_toolchain()?;
    }
    if pieces.contains(&Piece::TestVm) {
        match vm::ready() {
            Ok(()) => eprintln!("xtask: test VM present ({})", vm::cache().display()),
            Err(why) if root => {
                eprintln!("xtask: setting up the test VM: {why}");
                vm::setup()?;
                vm::ready()
                    .map_err(|why| anyhow::anyhow!("the test VM is still not ready: {why}"))?;
            }
            Err(why) => need_root.push(format!("the test VM ({why})")),
        }
    }
    if !need_root.is_empty() {
        bail!(
            "missing, and installing it needs root: {}. Run the command as root",
            need_root.join("; ")
        );
    }
    Ok(())
}

/// The Debian packages of `pieces`, in list order, without repeats.
fn packages(pieces: &[Piece]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    let mut add = |ps: &[&'static str]| {
        for p in ps {
            if !out.contains(p) {
                out.push(p);
            }
        }
    };
    if pieces.contains(&Piece::Languages) {
        for (_, ps) in LANGUAGES {
            add(ps);
        }
    }
    if pieces.contains(&Piece::DebTools) {
        add(DEB_TOOLS);
    }
    if pieces.contains(&Piece::Broker) {
        add(BROKER);
    }
    out
}

/// The packages of `wanted` that dpkg does not list as installed.
fn missing_packages(wanted: &[&'static str]) -> Result<Vec<&'static str>> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    // One query for all; unknown packages go to stderr (and a non-zero exit), known ones print.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Abbrev}\\n"])
        .args(wanted)
        .output()
        .context("cannot run dpkg-query (is this Debian?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let installed: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, status)| status.starts_with("ii"))
        .map(|(name, _)| name)
        .collect();
    Ok(wanted
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect())
}

fn apt_install(missing: &[&str]) -> Result<()> {
    eprintln!(
        "xtask: installing {} (apt-get, without recommends)…",
        missing.join(" ")
    );
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(["-q", "-y", "-o", "DPkg::Lock::Timeout=600"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    util::timed("apt-get install", || {
        util::run(&mut apt(&["update"]))?;
        util::run(
            apt(&["install", "--no-install-recommends"])
                .args(missing)
                .stdin(std::process::Stdio::null()),
        )
    })
}

/// Every shipped profile's version command exists (the install really provided the language).
fn check_language_commands() -> Result<()> {
    let mut missing = Vec::new();
    for (id, command) in profile_commands()? {
        if !Path::new(&command).exists() {
            missing.push(format!("{id} ({command})"));
        }
    }
    if !missing.is_empty() {
        bail!(
            "installed the language packages, but these profiles' version commands are missing: {}",
            missing.join(", ")
        );
    }
    let ids: Vec<&str> = LANGUAGES.iter().map(|(id, _)| *id).collect();
    eprintln!("xtask: languages present: {}", ids.join(" "));
    Ok(())
}

/// `(id, version_command[0])` of each shipped profile, from `profiles/*.toml`.
fn profile_commands() -> Result<Vec<(String, String)>> {
    let dir = util::workspace_root().join("profiles");
    let mut out = Vec::new();
    for path in profile_files(&dir)? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let v: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let id = v["id"].as_str().context("profile without id")?.to_owned();
        let command = v
            .get("version_command")
            .and_then(|c| c.get(0))
            .and_then(|c| c.as_str())
            .with_context(|| format!("{}: no version_command", path.display()))?
            .to_owned();
        out.push((id, command));
    }
    Ok(out)
}

fn profile_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Jobe's optional install step `pylint --reports=no --score=n --generate-rcfile > /etc/pylintrc`:
/// without it pylint appends a score block to its output, which CodeRunner's pylint-checked
/// questions take for a complaint. Written only when pylint is installed and no `/etc/pylintrc`
/// exists (created new, never overwritten).
fn pylintrc(root: bool) -> Result<()> {
    if Path::new(PYLINTRC).symlink_metadata().is_ok() {
        eprintln!("xtask: {PYLINTRC} exists: left as it is");
        return Ok(());
    }
    let Some(pylint) = ebpf_build::find_program("pylint") else {
        eprintln!("xtask: pylint is not installed: no {PYLINTRC} written");
        return Ok(());
    };
    if !root {
        eprintln!(
            "xtask: not root: {PYLINTRC} not written (Jobe's pylint step, see docs/deployment.md)"
        );
        return Ok(());
    }
    let out = Command::new(&pylint)
        .args(["--reports=no", "--score=n", "--generate-rcfile"])
        .output()
        .with_context(|| format!("cannot run {}", pylint.display()))?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!(
            "pylint --generate-rcfile failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(PYLINTRC)
        .with_context(|| format!("cannot create {PYLINTRC}"))?;
    file.write_all(&out.stdout)
        .with_context(|| format!("writing {PYLINTRC}"))?;
    eprintln!(
        "xtask: wrote {PYLINTRC} (pylint --reports=no --score=n --generate-rcfile: pylint prints \
         no report or score block, as after Jobe's install)"
    );
    Ok(())
}

/// The pinned nightly with rust-src (rustup) and bpf-linker (`cargo install`): no root needed.
fn ebpf_toolchain() -> Result<()> {
    let nightly = ebpf::pinned_nightly()?;
    let missing = ebpf_build::missing(&nightly);
    for m in &missing {
        match m {
            Missing::Rustup | Missing::Llvm { .. } => {}
            Missing::Nightly { .. } => {
                eprintln!("xtask: installing {nightly} with rust-src (rustup)…");
                install_with(m)?;
            }
            Missing::RustSrc { .. } => {
                eprintln!("xtask: adding rust-src to {nightly} (rustup)…");
                install_with(m)?;
            }
            Missing::BpfLinker { .. } => {
                eprintln!(
                    "xtask: installing bpf-linker {BPF_LINKER_VERSION} (cargo install, a few minutes)…"
                );
                install_with(m)?;
            }
        }
    }
    let left = ebpf_build::missing(&nightly);
    if !left.is_empty() {
        let what: Vec<String> = left
            .iter()
            .map(|m| match m.fix() {
                Some(fix) => format!("{m} ({fix})"),
                None => m.to_string(),
            })
            .collect();
        bail!("the eBPF toolchain is incomplete: {}", what.join("; "));
    }
    eprintln!("xtask: {nightly} with rust-src present; bpf-linker {BPF_LINKER_VERSION} present");
    Ok(())
}

/// Runs `m.install_argv()`: `rustup` resolved as `ebpf_build` resolves it, `cargo` as the cargo
/// that runs us (stable).
fn install_with(m: &Missing) -> Result<()> {
    let argv = m.install_argv().context("nothing to run")?;
    let (program, args) = argv.split_first().context("empty command")?;
    let exe = if program == "cargo" {
        PathBuf::from(util::cargo())
    } else {
        ebpf_build::find_program(program).with_context(|| format!("{program} not found"))?
    };
    let mut cmd = Command::new(exe);
    // RUSTUP_TOOLCHAIN stays: `cargo install` builds with the toolchain that runs us.
    cmd.args(args).current_dir(util::workspace_root());
    util::timed(&argv.join(" "), || util::run(&mut cmd))
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The package list against the shipped profiles.
    use super::*;

    /// One entry per shipped profile, no more, no fewer: the list cannot drift from profiles/.
    #[test]
    fn test_languages_match_the_shipped_profiles() {
        let mut profiles: Vec<String> = profile_commands()
            .expect("profiles/ readable")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        profiles.sort();
        let mut listed: Vec<String> = LANGUAGES.iter().map(|(id, _)| (*id).to_owned()).collect();
        listed.sort();
        assert_eq!(listed, profiles);
        assert!(LANGUAGES.iter().all(|(_, ps)| !ps.is_empty()));
    }

    /// docs/deployment.md's by-hand command installs exactly these packages, in this order.
    #[test]
    fn test_deployment_doc_lists_the_same_packages() {
        let doc = std::fs::read_to_string(util::workspace_root().join("docs/deployment.md"))
            .expect("docs/deployment.md");
        const CMD: &str = "apt-get install --no-install-recommends ";
        let line = doc
            .lines()
            .find_map(|l| l.strip_prefix(CMD))
            .expect("docs/deployment.md has the by-hand apt-get line");
        let documented: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(documented, packages(&[Piece::Languages]));
    }

    #[test]
    fn test_packages_are_listed_once_in_order() {
        let all = packages(&[Piece::Languages, Piece::DebTools, Piece::Languages]);
        let unique: BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len());
        assert_eq!(all.first(), Some(&"gcc"));
        assert_eq!(all.last(), Some(&"dpkg-dev"));
        assert_eq!(
            packages(&[Piece::Broker]),
            ["rabbitmq-server", "python3-pika"]
        );
        assert!(packages(&[Piece::EbpfToolchain, Piece::TestVm]).is_empty());
    }
}
