//! `cargo xtask`: the project's set-up, build, test and benchmark tasks.
//!
//! - `serve`: THE set-up and serve command (installs what is missing, builds the release daemon
//!   with the eBPF object, serves in the foreground); `--smoke` checks it and stops (CI).
//! - `test`: THE test command (installs what the tests need, the VM and the RabbitMQ broker
//!   included, and starts the broker; workspace tests, then the `vm_*` subset of `runner-tests`
//!   in the VM).
//! - `build-ebpf`: check the eBPF toolchain, build `runner-ebpf`, copy the object to `target/bpf/`.
//! - `vm setup` / `vm run`: the pure cgroup v2 QEMU VM used by the `vm_*` tests (assets in `xtask/vm/`).
//! - `bench`: HTTP throughput against a no-sandbox floor, and the jail cost (`runner bench-jail`);
//!   `bench verdicts`: CPU-limit overshoot and kill → response, eBPF vs no-eBPF; `bench judge`:
//!   judge mode against compile once + direct runs.
//!   `bench queue`: queue mode on RabbitMQ (3 runners vs 1, a kill and a stop halfway).
//! - `deb` / `deb-test`: the Debian package (cargo-deb), and an install → serve → purge round
//!   trip of it on this machine (root).
//! - `fuzz`: build the cargo-fuzz targets in `fuzz/` and run each for a bounded time.
//! - `soak`: 10 000 mixed runs through the API of the release daemon, leak checks (root).

mod bench;
mod bench_judge;
mod bench_peers;
mod bench_queue;
mod bench_verdicts;
mod broker;
mod deb;
mod ebpf;
mod ebpf_build;
mod fuzz;
mod install;
mod serve;
mod soak;
mod test;
mod util;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "runner project tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// As root: install what is missing (the language toolchains, pylint and /etc/pylintrc, the
    /// pinned nightly and bpf-linker), build the release daemon with the eBPF object, then run
    /// `runner serve OPTIONS` in the foreground.
    Serve(serve::ServeArgs),
    /// Check the eBPF toolchain (pinned nightly, rust-src, bpf-linker, LLVM major), build
    /// runner-ebpf and copy the object to target/bpf/runner-ebpf.o (a plain `cargo build` embeds
    /// it by itself when the toolchain is present).
    BuildEbpf,
    /// The pure cgroup v2 test VM (QEMU/TCG, Debian 6.12 kernel, cache /var/cache/runner-vmtest).
    Vm {
        #[command(subcommand)]
        cmd: VmCmd,
    },
    /// As root: install what the tests need (as `serve`, plus the test VM), then run them:
    /// `cargo test --workspace`, then the `vm_*` tests of runner-tests in the VM.
    Test(test::TestArgs),
    /// Benchmarks (not run in CI): `http` (runs/s vs a no-sandbox floor), `jail` (jail cost),
    /// `peers` (peer mode vs one runner vs random spreading; root, only when named), `verdicts`
    /// (CPU-limit overshoot and kill → response, eBPF vs no-eBPF; only when named), `queue`
    /// (queue mode on RabbitMQ: 3 runners vs 1, a kill and a stop halfway; root, only when named).
    Bench(bench::BenchArgs),
    /// Build the Debian package into target/debian/ (installs cargo-deb and the eBPF toolchain if
    /// missing; fails unless the packaged binary embeds the eBPF object).
    Deb,
    /// As root: dpkg -i the package, serve a python3 job with the installed binary (no systemd),
    /// stop it with SIGTERM, dpkg -r and -P, and check nothing is left.
    DebTest,
    /// Build the cargo-fuzz targets (fuzz/, pinned nightly) and run each for --secs seconds;
    /// fails on a crash and keeps its input under fuzz/artifacts/.
    Fuzz(fuzz::FuzzArgs),
    /// As root: N mixed runs (default 10 000) through the API of the release daemon at 2 × slots;
    /// fails on a lost or wrong result, RSS growth, or leaked cgroups, run dirs, processes, fds.
    Soak(soak::SoakArgs),
}

#[derive(Subcommand)]
enum VmCmd {
    /// Install QEMU 10 and the 6.12 kernel from bookworm-backports, build the initramfs (root).
    Setup,
    /// Run a command in a throw-away VM; its exit code is ours (124 timeout, 125 guest died).
    Run(vm::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Serve(args) => serve::run(&args).map(|()| ExitCode::SUCCESS),
        Cmd::BuildEbpf => ebpf::build().map(|_| ExitCode::SUCCESS),
        Cmd::Vm { cmd: VmCmd::Setup } => vm::setup().map(|()| ExitCode::SUCCESS),
        Cmd::Vm {
            cmd: VmCmd::Run(args),
        } => vm::run_cli(&args),
        Cmd::Test(args) => test::run(&args).map(|()| ExitCode::SUCCESS),
        Cmd::Bench(args) => bench::run(&args).map(|()| ExitCode::SUCCESS),
        Cmd::Deb => deb::build().map(|_| ExitCode::SUCCESS),
        Cmd::DebTest => deb::test().map(|()| ExitCode::SUCCESS),
        Cmd::Fuzz(args) => fuzz::run(&args).map(|()| ExitCode::SUCCESS),
        Cmd::Soak(args) => soak::run(&args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
