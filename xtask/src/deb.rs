//! `cargo xtask deb` and `cargo xtask deb-test`: the Debian package (cargo-deb, metadata in
//! `runner/Cargo.toml`) and an install → serve → remove round trip of it on this machine.
//!
//! `deb-test` installs the package with `dpkg -i`, so it runs as root and changes the host
//! (/usr/bin/runner, /etc/runner, /lib/systemd/system/runner.service) until it purges the package
//! again. It starts the installed daemon directly, not through systemd (CI has no systemd as PID
//! 1), on a free local port and a data directory of its own, so a daemon already running on the
//! host with the default config is not disturbed.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::{JOBE, http_request, wait_ready};
use crate::ebpf;
use crate::install::{self, Piece};
use crate::util::{cargo, is_root, run, target_dir, timed, workspace_root};

/// The cargo-deb release `cargo xtask deb` installs when it is missing (builds on rustc 1.95).
const CARGO_DEB_VERSION: &str = "3.8.0";

/// The package's data directory (postinst creates it, purge deletes it).
const DATA_DIR: &str = "/var/lib/runner";

/// What the package must install (checked after `dpkg -i`).
const INSTALLED: &[&str] = &[
    "/usr/bin/runner",
    "/etc/runner/runner.toml",
    "/lib/systemd/system/runner.service",
    "/usr/share/runner/profiles/python3.toml",
    "/usr/share/runner/profiles/seccomp/default.toml",
    "/usr/share/doc/runner/deployment.md",
    "/usr/share/doc/runner/monitoring/runner-alerts.yml",
    "/usr/share/man/man1/runner.1.gz",
    "/usr/share/man/man1/runner-serve.1.gz",
    "/usr/share/bash-completion/completions/runner",
    "/usr/share/zsh/vendor-completions/_runner",
    "/usr/share/fish/vendor_completions.d/runner.fish",
    DATA_DIR,
];

/// What `dpkg -P` must leave behind: nothing of these.
const PURGED: &[&str] = &[
    "/usr/bin/runner",
    "/etc/runner",
    "/lib/systemd/system/runner.service",
    "/usr/share/runner",
    "/usr/share/man/man1/runner.1.gz",
    "/usr/share/bash-completion/completions/runner",
    DATA_DIR,
    "/etc/systemd/system/multi-user.target.wants/runner.service",
    "/etc/systemd/system/runner.service",
];

/// `cargo xtask deb`: install what is missing (cargo-deb, the eBPF toolchain, dpkg-dev), build
/// the release binary and the package, and check that the packaged binary embeds the eBPF object.
/// Returns the path of the `.deb`.
pub(crate) fn build() -> Result<PathBuf> {
    install::ensure(&[Piece::EbpfToolchain, Piece::DebTools])?;
    ensure_cargo_deb()?;
    // The object the release build's build.rs embeds (up to date in runner-ebpf/target/ after
    // this), to look for in the package afterwards.
    let object = ebpf::object()?;
    timed("release build", || {
        run(Command::new(cargo())
            .args(["build", "--release", "-p", "runner", "--locked"])
            .current_dir(workspace_root()))
    })?;
    generate_assets()?;
    let out_dir = target_dir()?.join("debian");
    let out = timed("cargo deb", || {
        let out = Command::new(cargo())
            .args(["deb", "-p", "runner", "--locked", "--strip"])
            .current_dir(workspace_root())
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run cargo deb")?;
        if !out.status.success() {
            bail!("cargo deb failed ({})", out.status);
        }
        Ok(out)
    })?;
    // cargo-deb prints the path of the package it wrote on stdout.
    let printed = String::from_utf8_lossy(&out.stdout);
    let deb = printed
        .lines()
        .rev()
        .map(|l| PathBuf::from(l.trim()))
        .find(|p| p.extension().is_some_and(|e| e == "deb") && p.is_file())
        .with_context(|| {
            format!(
                "cargo deb printed no .deb path (under {})",
                out_dir.display()
            )
        })?;
    eprintln!("xtask: package: {}", deb.display());
    check_package_embeds(&deb, &object)?;
    Ok(deb)
}

/// The man pages and shell completions the package installs, generated from the CLI by the
/// release binary itself into `target/release/assets/` (runner/Cargo.toml lists them).
fn generate_assets() -> Result<()> {
    let release = target_dir()?.join("release");
    let bin = release.join("runner");
    let assets = release.join("assets");
    let man = assets.join("man");
    let _ = std::fs::remove_dir_all(&man);
    run(Command::new(&bin).args(["man", "--out-dir"]).arg(&man))?;
    // Compressed as Debian policy wants (cargo-deb compresses man pages only when they are not
    // under the target directory); -n: no name or time stamp inside, a reproducible file.
    let pages: Vec<_> = std::fs::read_dir(&man)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "1"))
        .collect();
    run(Command::new("gzip").args(["-9nf"]).args(&pages))?;
    for (shell, file) in [
        ("bash", "bash/runner"),
        ("zsh", "zsh/_runner"),
        ("fish", "fish/runner.fish"),
    ] {
        let out = Command::new(&bin)
            .args(["completions", shell])
            .output()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        if !out.status.success() || out.stdout.is_empty() {
            bail!("runner completions {shell} failed ({})", out.status);
        }
        let path = assets.join("completions").join(file);
        std::fs::create_dir_all(path.parent().expect("a parent"))?;
        std::fs::write(&path, &out.stdout)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!(
        "xtask: generated the man pages and the bash, zsh and fish completions in {}",
        assets.display()
    );
    Ok(())
}

/// The package always carries the eBPF object: unpack its `usr/bin/runner` and look for it.
fn check_package_embeds(deb: &Path, object: &Path) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("runner-deb-check-")
        .tempdir()
        .context("cannot create a temp dir")?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(tmp.path()))?;
    crate::serve::check_embeds(&tmp.path().join("usr/bin/runner"), object)
        .context("the package's /usr/bin/runner lacks the eBPF object")
}

fn ensure_cargo_deb() -> Result<()> {
    let have = Command::new(cargo())
        .args(["deb", "--version"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    match have {
        // "cargo-deb 3.8.0 (…)": the pinned release, as CI's bpf-linker.
        Some(v) if v.split_whitespace().nth(1) == Some(CARGO_DEB_VERSION) => {
            eprintln!("xtask: {}", v.trim());
            Ok(())
        }
        _ => timed("install cargo-deb", || {
            run(Command::new(cargo()).args([
                "install",
                "cargo-deb",
                "--version",
                CARGO_DEB_VERSION,
                "--locked",
                "--force",
            ]))
        }),
    }
}

/// The newest `.deb` under `target/debian/`.
fn built_package() -> Result<PathBuf> {
    let dir = target_dir()?.join("debian");
    let mut debs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&dir)
        .with_context(|| format!("no {} (run `cargo xtask deb` first)", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "deb")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("runner_"))
        })
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    debs.sort();
    debs.pop().map(|(_, p)| p).with_context(|| {
        format!(
            "no runner_*.deb in {} (run `cargo xtask deb`)",
            dir.display()
        )
    })
}

/// `cargo xtask deb-test`: `dpkg -i` the package, serve one job through the installed binary,
/// stop it with SIGTERM, `dpkg -r` and `dpkg -P`, and check what is left.
pub(crate) fn test() -> Result<()> {
    if !is_root() {
        bail!("deb-test installs a package: run it as root");
    }
    let deb = built_package()?;
    let installed_before = Command::new("dpkg")
        .args(["-s", "runner"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed_before {
        bail!("a runner package is already installed; deb-test would remove it (dpkg -P runner)");
    }
    // A data directory already on the host (a daemon run by hand with the default config) would
    // be deleted by the purge: keep it out of the way then, and refuse while a daemon holds it.
    let data = Path::new(DATA_DIR);
    let keep = data.exists();
    if keep {
        let lock = std::fs::File::open(data.join("lock"));
        if lock.is_ok_and(|f| f.try_lock().is_err()) {
            bail!("a runner daemon is using {DATA_DIR} (locked); stop it before deb-test");
        }
    }
    timed("dpkg -i", || run(Command::new("dpkg").arg("-i").arg(&deb)))?;
    // From here on the package is installed: purge it whatever happens.
    let served = serve_one_job();
    let removed = remove_and_check(keep);
    served.and(removed)
}

fn serve_one_job() -> Result<()> {
    for path in INSTALLED {
        if !Path::new(path).exists() {
            bail!("the package did not install {path}");
        }
    }
    // The man page is the CLI's: its synopsis names the commands.
    let man = Command::new("gzip")
        .args(["-dc", "/usr/share/man/man1/runner.1.gz"])
        .output()
        .context("cannot run gzip")?;
    let man = String::from_utf8_lossy(&man.stdout);
    if !(man.contains(".TH runner") && man.contains("check\\-config")) {
        bail!("/usr/share/man/man1/runner.1.gz is not runner's man page");
    }
    // Jobs can read world-readable files under /etc, and the config may hold API keys.
    let mode = std::fs::metadata("/etc/runner/runner.toml")?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "/etc/runner/runner.toml is mode {:o}, not 0600",
            mode & 0o777
        );
    }
    run(Command::new("/usr/bin/runner").args([
        "check-config",
        "--config",
        "/etc/runner/runner.toml",
    ]))?;

    let tmp = tempfile::Builder::new()
        .prefix("runner-debtest-")
        .tempdir()
        .context("cannot create a temp dir")?;
    // The mode the package gives /var/lib/runner: the jail must work with it.
    let data_dir = tmp.path().join("data");
    std::fs::create_dir(&data_dir)?;
    set_mode(&data_dir, 0o711)?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    // The shipped config, with only the address and the data directory changed (a later key
    // would be a duplicate: TOML rejects it, so the lines are replaced).
    let shipped = std::fs::read_to_string("/etc/runner/runner.toml")?;
    let mut config = String::new();
    let (mut saw_listen, mut saw_data) = (false, false);
    for line in shipped.lines() {
        if line.starts_with("listen =") {
            config.push_str(&format!("listen = \"{addr}\"\n"));
            saw_listen = true;
        } else if line.starts_with("data_dir =") {
            config.push_str(&format!("data_dir = \"{}\"\n", data_dir.display()));
            saw_data = true;
        } else {
            config.push_str(line);
            config.push('\n');
        }
    }
    if !(saw_listen && saw_data) {
        bail!("/etc/runner/runner.toml has no top-level `listen =` / `data_dir =` line");
    }
    let config_path = tmp.path().join("runner.toml");
    std::fs::write(&config_path, config)?;

    let log = tmp.path().join("serve.log");
    let started = Instant::now();
    let mut child = Command::new("/usr/bin/runner")
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("cannot start /usr/bin/runner serve")?;
    let result = (|| {
        wait_ready(&addr, &mut child, &log)?;
        eprintln!(
            "xtask: installed runner serves on {addr} after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        let body = r#"{"run_spec":{"language_id":"python3","sourcecode":"print('hello from the package')","sourcefilename":"test.py","input":"","file_list":[]}}"#;
        let (status, text) = http_request(&addr, "POST", &format!("{JOBE}/runs"), Some(body))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("POST /runs: HTTP {status}, not JSON: {text}"))?;
        if status != 200 || v["outcome"] != 15 || v["stdout"] != "hello from the package\n" {
            bail!("POST /runs: HTTP {status}, expected outcome 15 and the greeting, got {text}");
        }
        eprintln!("xtask: python3 run through the installed daemon: outcome 15");
        crate::util::terminate(&mut child, Duration::from_secs(40))
    })();
    if result.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        eprintln!(
            "xtask: serve log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    result
}

/// `keep`: `/var/lib/runner` existed before the install; it is moved aside during the purge and
/// put back afterwards.
fn remove_and_check(keep: bool) -> Result<()> {
    timed("dpkg -r", || {
        run(Command::new("dpkg").args(["-r", "runner"]))
    })?;
    // Removed, not purged: the conffile stays, the program goes.
    if Path::new("/usr/bin/runner").exists() {
        bail!("dpkg -r left /usr/bin/runner");
    }
    if !Path::new("/etc/runner/runner.toml").exists() {
        bail!("dpkg -r removed the conffile /etc/runner/runner.toml (only purge should)");
    }
    let saved = PathBuf::from(format!("{DATA_DIR}.deb-test-saved"));
    if keep {
        std::fs::rename(DATA_DIR, &saved)
            .with_context(|| format!("cannot move {DATA_DIR} aside to {}", saved.display()))?;
    }
    let purged = timed("dpkg -P", || {
        run(Command::new("dpkg").args(["-P", "runner"]))
    });
    let left: Vec<&str> = PURGED
        .iter()
        .copied()
        .filter(|p| Path::new(p).symlink_metadata().is_ok())
        .collect();
    if keep {
        std::fs::rename(&saved, DATA_DIR)
            .with_context(|| format!("cannot put {} back to {DATA_DIR}", saved.display()))?;
    }
    purged?;
    if !left.is_empty() {
        bail!("dpkg -P runner left {}", left.join(", "));
    }
    eprintln!("xtask: package purged; nothing left");
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}
