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
    /// Judge a program on a local test set (a problem folder or a tar / tar.gz of one): a live
    /// progress line, then a table of the cases. Exit 0 for AC, 1 otherwise.
    Judge {
        /// The test set: a folder of NAME.in with NAME.out (or NAME.ans) and an optional
        /// problem.toml, or a tar or tar.gz archive of such a folder.
        #[arg(long)]
        testset: PathBuf,
        /// The language id (c, cpp, java, nodejs, octave, pascal, php, python3).
        #[arg(long)]
        lang: String,
        /// The source file (its name is the source file name in the jail).
        file: PathBuf,
        /// Compare mode instead of the test set's: text (byte-exact), token or float.
        #[arg(long)]
        compare: Option<runner::judge::CompareMode>,
        /// CPU seconds per case instead of the test set's (clamped to the language's maximum).
        #[arg(long)]
        cputime: Option<f64>,
        /// Stop at the first failing case (the later ones are SK, not run).
        #[arg(long)]
        stop_on_first_failure: bool,
    },
    /// Measure the jail's own cost around /bin/true (used by `cargo xtask bench jail`).
    #[command(hide = true)]
    BenchJail {
        #[arg(long, default_value_t = 200)]
        iterations: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `runner judge` draws a progress line on stderr: only warnings and errors beside it.
    let level = match cli.command {
        Command::Judge { .. } => "warn",
        _ => "info",
    };
    telemetry::init(level);
    match run(cli) {
        Ok(code) => code,
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
fn run(cli: Cli) -> Result<ExitCode> {
    let mut cfg = Config::load(cli.config.as_deref())?;
    let rt = tokio::runtime::Runtime::new()?;
    let out = match cli.command {
        Command::Serve { listen } => {
            if let Some(warning) = cli.config.as_deref().and_then(config::readable_by_others) {
                tracing::warn!("{warning}");
            }
            cfg.listen = listen.unwrap_or(cfg.listen);
            return rt.block_on(server::serve(cfg)).map(|()| ExitCode::SUCCESS);
        }
        Command::Judge {
            testset,
            lang,
            file,
            compare,
            cputime,
            stop_on_first_failure,
        } => {
            let args = server::LocalJudge {
                testset,
                lang: lang.to_lowercase(),
                file,
                compare,
                cputime,
                stop_on_first_failure,
            };
            let (table, accepted) = rt.block_on(server::judge_local(&cfg, args))?;
            print!("{table}");
            return Ok(if accepted {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
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
        Command::BenchJail { iterations } => rt.block_on(server::bench_jail(&cfg, iterations))?,
    };
    println!("{}", out.trim_end());
    Ok(ExitCode::SUCCESS)
}
