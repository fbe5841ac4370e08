//! `runner`: arguments → config → telemetry → `server`. All logic lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use runner::config::{self, Config};
use runner::{server, telemetry};

#[derive(Parser)]
#[command(
    version,
    about = "A Jobe-compatible sandbox runner: every compile and run in a jail"
)]
struct Cli {
    /// Config file (TOML); without it every setting has its default.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Jobe REST API.
    Serve {
        /// Listen address, overriding the config (e.g. 0.0.0.0:4000).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Show kernel features, the cgroup layout, what is enforced and the languages found.
    Check,
    /// Validate the config file and the profiles, then exit.
    CheckConfig,
    /// Compile and run one file locally and print Jobe's result object.
    Run {
        #[arg(long)]
        lang: String,
        file: PathBuf,
        /// A file whose contents are the program's stdin.
        #[arg(long)]
        stdin: Option<PathBuf>,
        #[arg(long)]
        cputime: Option<f64>,
    },
    /// Print what a job would run (steps, argv, environment) as JSON, without running it (used
    /// by `cargo xtask bench` for its floors).
    #[command(hide = true)]
    Plan {
        #[arg(long)]
        lang: String,
        file: PathBuf,
        /// The source file name the client would send (default: the profile's).
        #[arg(long)]
        source_name: Option<String>,
        /// The run directory the plan's paths and environment name.
        #[arg(long, default_value = "/home/jobe/runs/jobe_plan00")]
        run_dir: String,
    },
    /// Measure the jail's own cost around /bin/true (used by `cargo xtask bench jail`).
    #[command(hide = true)]
    BenchJail {
        #[arg(long, default_value_t = 200)]
        iterations: usize,
    },
}

fn main() -> ExitCode {
    telemetry::init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("runner: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[allow(
    clippy::print_stdout,
    reason = "CLI commands print their result on stdout"
)]
fn run(cli: Cli) -> Result<()> {
    let mut cfg = Config::load(cli.config.as_deref())?;
    let rt = tokio::runtime::Runtime::new()?;
    let out = match cli.command {
        Command::Serve { listen } => {
            if let Some(warning) = cli.config.as_deref().and_then(config::readable_by_others) {
                tracing::warn!("{warning}");
            }
            cfg.listen = listen.unwrap_or(cfg.listen);
            return rt.block_on(server::serve(cfg));
        }
        Command::Check => server::check(&cfg)?,
        Command::CheckConfig => server::check_config(&cfg)?,
        Command::Run {
            lang,
            file,
            stdin,
            cputime,
        } => rt.block_on(server::run_once(
            &cfg,
            &lang,
            &file,
            stdin.as_deref(),
            cputime,
        ))?,
        Command::Plan {
            lang,
            file,
            source_name,
            run_dir,
        } => server::plan_once(&cfg, &lang, &file, source_name, &run_dir)?,
        Command::BenchJail { iterations } => rt.block_on(server::bench_jail(&cfg, iterations))?,
    };
    println!("{}", out.trim_end());
    Ok(())
}
