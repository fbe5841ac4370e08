//! `runner`: arguments → config → telemetry → `server`. All logic lives in the library.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, Subcommand};
use runner::config::{self, Config};
use runner::job::Outcome;
use runner::server::{self, ServeOptions};
use runner::{telemetry, version};

#[derive(Parser)]
#[command(
    name = "runner",
    version = version::LONG_VERSION,
    about = "A Jobe-compatible sandbox runner: every compile and run in a jail",
    long_about = "A Jobe-compatible sandbox runner: it serves the REST API of Jobe, the sandbox \
                  server of Moodle CodeRunner, and runs every compile and every run in a jail of \
                  its own (namespaces, a cgroup, Landlock, seccomp). Documentation: \
                  /usr/share/doc/runner/ or docs/ in the source tree."
)]
struct Cli {
    /// Config file (TOML, docs/configuration.md); without it every setting has its default.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// More log output on stderr: -v info, -vv debug, -vvv trace (RUST_LOG overrides it).
    /// Without it `serve` logs at the config's log_level, the other commands only errors.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Jobe REST API (as root). SIGHUP reloads the config file, SIGTERM or SIGINT
    /// drains and stops.
    Serve {
        /// Listen address, overriding the config's `listen` (e.g. 0.0.0.0:4000).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Show kernel features, the cgroup layout, what is enforced and the languages found (as
    /// root); removes what a killed daemon left in the configured data_dir.
    Check,
    /// Validate the config file, the profiles and the seccomp policies, then exit (touches no
    /// kernel state; root not needed).
    CheckConfig,
    /// Compile and run one file locally and print Jobe's result object (as root).
    Run {
        /// Language id: a profile's id (c, cpp, java, nodejs, octave, pascal, php, python3, or
        /// one from the config's profiles_dir).
        #[arg(long, value_name = "ID")]
        lang: String,
        /// The source file to compile and run.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// A file whose contents are the program's standard input (default: none).
        #[arg(long, value_name = "FILE")]
        stdin: Option<PathBuf>,
        /// CPU time limit in seconds (default: the profile's; at most the config's
        /// limits.cputime_max_secs).
        #[arg(long, value_name = "SECONDS")]
        cputime: Option<f64>,
    },
    /// Print the completion script for SHELL on standard output.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page runner(1) on standard output, or write it and one page per command
    /// (runner-serve(1), …) into a directory.
    Man {
        /// Write runner.1 and runner-COMMAND.1 into DIR instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Print what a job would run (steps, argv, environment) as JSON, without running it (used
    /// by `cargo xtask bench` for its floors).
    #[command(hide = true)]
    Plan {
        /// Language id (a profile's id).
        #[arg(long, value_name = "ID")]
        lang: String,
        /// The source file whose job is planned.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The source file name the client would send (default: the profile's).
        #[arg(long)]
        source_name: Option<String>,
        /// The run directory the plan's paths and environment name.
        #[arg(long, default_value = "/home/jobe/runs/jobe_plan00")]
        run_dir: String,
    },
    /// Judge a program on a local test set (a problem folder or a tar / tar.gz of one): a live
    /// progress line, then a table of the cases. Exit 0 for AC, 1 otherwise.
    Judge {
        /// The test set: a folder of NAME.in with NAME.out (or NAME.ans) and an optional
        /// problem.toml, or a tar or tar.gz archive of such a folder.
        #[arg(long, value_name = "DIR_OR_TAR")]
        testset: PathBuf,
        /// The language id (c, cpp, java, nodejs, octave, pascal, php, python3).
        #[arg(long, value_name = "ID")]
        lang: String,
        /// The source file (its name is the source file name in the jail).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Compare mode instead of the test set's: text (byte-exact), token or float.
        #[arg(long)]
        compare: Option<runner::judge::CompareMode>,
        /// CPU seconds per case instead of the test set's (clamped to the language's maximum).
        #[arg(long, value_name = "SECONDS")]
        cputime: Option<f64>,
        /// Stop at the first failing case (the later ones are SK, not run).
        #[arg(long)]
        stop_on_first_failure: bool,
    },
    /// Measure the jail's own cost around /bin/true (used by `cargo xtask bench jail`).
    #[command(hide = true)]
    BenchJail {
        /// Jailed runs of /bin/true to measure.
        #[arg(long, default_value_t = 200, value_name = "N")]
        iterations: usize,
    },
}

/// The exit statuses of `runner run`, from the outcome table (README and docs/operations.md
/// list the same).
fn run_exit_help() -> String {
    let mut s = String::from("Exit status:\n  0   success (outcome 15)\n");
    for o in Outcome::ALL {
        if o != Outcome::Success {
            s.push_str(&format!(
                "  {:<3} {}\n",
                server::run_exit_code(o),
                o.name().replace('_', " ")
            ));
        }
    }
    s.push_str("  1   runner could not run it (the reason is on standard error)\n");
    s.push_str("  2   invalid arguments");
    s
}

/// The CLI definition, with what derive cannot compute (the exit statuses).
fn command() -> clap::Command {
    Cli::command().mut_subcommand("run", |c| c.after_help(run_exit_help()))
}

fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(err) => {
            eprintln!("runner: {:#}", anyhow::Error::from(err));
            return ExitCode::FAILURE;
        }
    };
    let pinned = match (cli.verbose, &cli.command) {
        (0, Command::Serve { .. }) => None,
        // `runner judge` draws a progress line on stderr: warnings and errors beside it.
        (0, Command::Judge { .. }) => Some("warn"),
        // The other commands report on stdout and stderr themselves.
        (0, _) => Some("error"),
        (1, _) => Some("info"),
        (2, _) => Some("debug"),
        _ => Some("trace"),
    };
    telemetry::init(&cfg.log, pinned);
    match run(cli, cfg) {
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
fn run(cli: Cli, cfg: Config) -> Result<ExitCode> {
    let out = match cli.command {
        Command::Serve { listen } => {
            if let Some(warning) = cli.config.as_deref().and_then(config::readable_by_others) {
                tracing::warn!("{warning}");
            }
            let opts = ServeOptions {
                config_path: cli.config.clone(),
                listen,
            };
            tokio::runtime::Runtime::new()?.block_on(server::serve(cfg, opts))?;
            return Ok(ExitCode::SUCCESS);
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
            let (table, accepted) =
                tokio::runtime::Runtime::new()?.block_on(server::judge_local(&cfg, args))?;
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
        } => {
            let report = tokio::runtime::Runtime::new()?.block_on(server::run_once(
                &cfg,
                &lang,
                &file,
                stdin.as_deref(),
                cputime,
            ))?;
            println!("{}", report.json);
            return Ok(ExitCode::from(server::run_exit_code(report.outcome)));
        }
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command(), "runner", &mut out);
            std::io::stdout().write_all(&out)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { out_dir } => {
            match out_dir {
                None => {
                    let mut out = Vec::new();
                    clap_mangen::Man::new(command()).render(&mut out)?;
                    std::io::stdout().write_all(&out)?;
                }
                Some(dir) => write_man_pages(&dir)?,
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Plan {
            lang,
            file,
            source_name,
            run_dir,
        } => server::plan_once(&cfg, &lang, &file, source_name, &run_dir)?,
        Command::BenchJail { iterations } => {
            tokio::runtime::Runtime::new()?.block_on(server::bench_jail(&cfg, iterations))?
        }
    };
    println!("{}", out.trim_end());
    Ok(ExitCode::SUCCESS)
}

/// runner.1 and runner-COMMAND.1 for every command that is not hidden, into `dir` (created if
/// missing; existing pages are replaced, a symlink in their place is refused).
fn write_man_pages(dir: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let root = command();
    let mut pages = vec![("runner.1".to_owned(), root.clone())];
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap names commands with `&'static str`; this process ends right after.
        let name: &'static str = Box::leak(format!("runner-{}", sub.get_name()).into_boxed_str());
        pages.push((format!("{name}.1"), sub.clone().name(name)));
    }
    for (file, cmd) in pages {
        let path = dir.join(&file);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        clap_mangen::Man::new(cmd)
            .render(&mut f)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The CLI definition: every option of every command says
    //! what it does; the exit statuses of `run` are the outcome table's.
    use super::*;

    #[test]
    fn test_every_option_has_help() {
        command().debug_assert();
        let root = command();
        let mut cmds = vec![root.clone()];
        cmds.extend(root.get_subcommands().cloned());
        for cmd in &cmds {
            assert!(
                cmd.get_about().is_some(),
                "command {} has no help",
                cmd.get_name()
            );
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(
                    arg.get_help()
                        .is_some_and(|h| !h.to_string().trim().is_empty()),
                    "{} --{id} has no help text",
                    cmd.get_name()
                );
            }
        }
    }

    #[test]
    fn test_run_help_lists_every_exit_status() {
        let help = run_exit_help();
        for o in Outcome::ALL {
            let code = server::run_exit_code(o).to_string();
            assert!(
                help.lines().any(|l| l.trim_start().starts_with(&code)),
                "{o}: {code} missing from\n{help}"
            );
        }
        let doc = include_str!("../../README.md");
        for o in Outcome::ALL.into_iter().filter(|o| *o != Outcome::Success) {
            let name = o.name().replace('_', " ");
            assert!(
                doc.contains(&format!("{} {name}", o.code())),
                "README.md does not document exit status {} ({name})",
                o.code()
            );
        }
    }
}
