//! `cargo xtask serve [--smoke] [RUNNER SERVE OPTIONS]`: the README's first command. As root:
//! install what is missing (the language toolchains of every shipped profile, pylint and Jobe's
//! `/etc/pylintrc`, the pinned nightly with rust-src and bpf-linker), build the release daemon
//! (its `build.rs` builds and embeds the eBPF object), check that it embeds the object, then run
//! `target/release/runner serve OPTIONS` in the foreground (this process becomes the daemon, so
//! Ctrl-C and SIGTERM reach it).
//!
//! `--smoke` (CI's setup stage) does all of that, then starts the daemon on a free local port with
//! a private data directory and `[monitor] ebpf = "require"`, checks `GET /languages` (every
//! shipped language), `GET /health`, `GET /metrics` (`runner_ebpf_active 1`) and the start-up log
//! (`eBPF monitor: active`), runs one program, stops it with SIGTERM and expects exit 0.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::bench::{JOBE, http_request, wait_ready};
use crate::install::{self, LANGUAGES, Piece};
use crate::{ebpf, util};

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Start the daemon on a free local port, check the languages, the eBPF monitor, /health and
    /// one run, stop it with SIGTERM and exit (CI's setup stage). Takes no runner options.
    #[arg(long)]
    smoke: bool,
    /// Options for `runner serve`, after xtask's own (e.g. `--listen 0.0.0.0:4000`, `--config FILE`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "RUNNER SERVE OPTIONS"
    )]
    runner_args: Vec<String>,
}

/// Slot uids of the smoke daemon (plus `RUNNER_TEST_UID_OFFSET`): apart from the default
/// `1990000` of a daemon serving on this host and from the ranges the tests use.
const SMOKE_UID_BASE: u32 = 1_989_000;

pub(crate) fn run(args: &ServeArgs) -> Result<()> {
    if !util::is_root() {
        bail!(
            "cargo xtask serve installs packages and runner serve needs root (it builds jails): \
             run it as root"
        );
    }
    if args.smoke && !args.runner_args.is_empty() {
        bail!(
            "--smoke takes no runner options (got {})",
            args.runner_args.join(" ")
        );
    }
    let start = Instant::now();
    install::ensure(&[Piece::Languages, Piece::EbpfToolchain])?;
    let runner = build()?;
    eprintln!(
        "xtask: set-up done in {:.0}s",
        start.elapsed().as_secs_f64()
    );
    if args.smoke {
        return util::timed("smoke", || smoke(&runner));
    }
    let mut cmd = Command::new(&runner);
    cmd.arg("serve").args(&args.runner_args);
    eprintln!(
        "xtask: $ {} (foreground; Ctrl-C or SIGTERM drains and stops it; GET /health and \
         GET /metrics beside the Jobe API: docs/operations.md)",
        util::show(&cmd)
    );
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot exec {}", runner.display()))
}

/// The release daemon, checked to embed the eBPF object its `build.rs` built.
fn build() -> Result<PathBuf> {
    // The object first, with xtask's own messages when something is wrong; the release build's
    // build.rs then finds it up to date in runner-ebpf/target/ and embeds it.
    let object = ebpf::object()?;
    let runner = util::build_release_runner()?;
    check_embeds(&runner, &object)?;
    Ok(runner)
}

/// Fails unless the file `binary` contains the eBPF object `object` byte for byte.
pub(crate) fn check_embeds(binary: &Path, object: &Path) -> Result<()> {
    let obj = std::fs::read(object).with_context(|| format!("reading {}", object.display()))?;
    let bin = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    if obj.is_empty() || !util::contains(&bin, &obj) {
        bail!(
            "{} does not embed the eBPF object {} (runner/build.rs: was RUNNER_EBPF_OBJECT set?)",
            binary.display(),
            object.display()
        );
    }
    eprintln!(
        "xtask: {} embeds the eBPF object ({} KiB)",
        binary.display(),
        obj.len() / 1024
    );
    Ok(())
}

fn smoke(runner: &Path) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("runner-smoke-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let data_dir = tmp.path().join("data");
    std::fs::create_dir(&data_dir)?;
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o711))?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let config = tmp.path().join("runner.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{addr}\"\ndata_dir = \"{}\"\nslots = 2\n\n[jail]\nuid_base = {}\n\n\
             [monitor]\nebpf = \"require\"\n",
            data_dir.display(),
            SMOKE_UID_BASE + util::uid_offset()
        ),
    )?;
    let log = tmp.path().join("serve.log");
    let started = Instant::now();
    let mut child = Command::new(runner)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("cannot start {} serve", runner.display()))?;
    let checked = (|| {
        wait_ready(&addr, &mut child, &log)?;
        eprintln!(
            "xtask: smoke: runner serves on {addr} after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        check_languages(&addr)?;
        check_ebpf(&addr, &log)?;
        check_run(&addr)?;
        util::terminate(&mut child, Duration::from_secs(40))
    })();
    if checked.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        eprintln!(
            "xtask: smoke: serve log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    checked
}

/// `GET /languages` lists every shipped language.
fn check_languages(addr: &str) -> Result<()> {
    let (status, text) = http_request(addr, "GET", &format!("{JOBE}/languages"), None)?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("GET /languages: HTTP {status}, not JSON: {text}"))?;
    let served: Vec<&str> = v
        .as_array()
        .context("GET /languages: not a list")?
        .iter()
        .filter_map(|pair| pair.get(0)?.as_str())
        .collect();
    let absent: Vec<&str> = LANGUAGES
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !served.contains(id))
        .collect();
    if status != 200 || !absent.is_empty() {
        bail!("GET /languages: HTTP {status}, missing {absent:?}: {text}");
    }
    eprintln!("xtask: smoke: GET /languages: {text}");
    Ok(())
}

/// The monitor is active: the start-up log says so, `/metrics` has `runner_ebpf_active 1`.
fn check_ebpf(addr: &str, log: &Path) -> Result<()> {
    let logged = std::fs::read_to_string(log)?;
    let line = logged
        .lines()
        .find(|l| l.contains("eBPF monitor:"))
        .context("no `eBPF monitor:` line in the start-up log")?;
    if !line.contains("eBPF monitor: active") {
        bail!("the eBPF monitor is not active: {line}");
    }
    let (status, _) = http_request(addr, "GET", "/health", None)?;
    if status != 200 {
        bail!("GET /health: HTTP {status}");
    }
    let (status, metrics) = http_request(addr, "GET", "/metrics", None)?;
    if status != 200 || !metrics.lines().any(|l| l == "runner_ebpf_active 1") {
        bail!("GET /metrics: HTTP {status}, no `runner_ebpf_active 1`");
    }
    eprintln!("xtask: smoke: GET /health 200; GET /metrics: runner_ebpf_active 1");
    Ok(())
}

/// One program through the API: compiled, run in a jail, outcome 15.
fn check_run(addr: &str) -> Result<()> {
    let body = serde_json::json!({"run_spec": {
        "language_id": "c",
        "sourcecode": "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 6 * 7); return 0; }\n",
        "sourcefilename": "smoke.c",
    }})
    .to_string();
    let (status, text) = http_request(addr, "POST", &format!("{JOBE}/runs"), Some(&body))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("POST /runs: HTTP {status}, not JSON: {text}"))?;
    if status != 200 || v["outcome"] != 15 || v["stdout"] != "42\n" {
        bail!("POST /runs (c): HTTP {status}, expected outcome 15 and 42, got {text}");
    }
    eprintln!("xtask: smoke: a C program compiled and ran in a jail: outcome 15, stdout 42");
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Argument parsing.
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    /// runner's own options pass through untouched, after xtask's.
    #[test]
    fn test_runner_options_pass_through() {
        let cli = Cli::try_parse_from([
            "serve",
            "--smoke",
            "--listen",
            "0.0.0.0:4000",
            "--config",
            "/etc/runner/runner.toml",
        ])
        .expect("parses");
        assert!(cli.serve.smoke);
        assert_eq!(
            cli.serve.runner_args,
            [
                "--listen",
                "0.0.0.0:4000",
                "--config",
                "/etc/runner/runner.toml"
            ]
        );
        let cli = Cli::try_parse_from(["serve"]).expect("parses");
        assert!(!cli.serve.smoke && cli.serve.runner_args.is_empty());
    }

    /// The package and serve checks fail on a binary without the object, pass with it.
    #[test]
    fn test_check_embeds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let object = dir.path().join("obj");
        std::fs::write(&object, b"\x7fELF\x01object bytes").expect("write");
        let without = dir.path().join("without");
        std::fs::write(&without, b"\x7fELF\x02binary without it").expect("write");
        let with = dir.path().join("with");
        std::fs::write(&with, b"\x7fELF\x02binary\x7fELF\x01object bytes, end").expect("write");
        assert!(check_embeds(&without, &object).is_err());
        assert!(check_embeds(&with, &object).is_ok());
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").expect("write");
        assert!(check_embeds(&with, &empty).is_err());
    }
}
