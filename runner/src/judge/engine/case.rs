//! One test case: run the compiled program on the case's input and decide the case's verdict
//! (docs/judge.md, "Running a submission", step 5).
//!
//! Owns: how a run's end becomes a Jobe outcome and a message for `Verdict::from_run` (stderr
//! never matters and is never shown), OLE, and the comparison against the expected output (read
//! by the daemon only). Must not: order cases or emit events (the engine does).

use std::io::BufReader;
use std::sync::Arc;

use tokio::sync::watch;

use super::super::backend::Program;
use super::super::compare::{CompareSpec, compare};
use super::super::submission::CaseResult;
use super::super::testset::Lease;
use super::super::verdict::Verdict;
use crate::jail::End;
use crate::job::Outcome;
use crate::sched::CaseOutput;
use crate::telemetry::error_chain;

/// A case that did not run (SK), or the start of one that did.
pub(super) fn skipped(index: usize, name: String) -> CaseResult {
    CaseResult {
        index,
        name,
        verdict: Verdict::Sk,
        cpu_ms: 0,
        wall_ms: 0,
        memory_kb: 0,
        exit_code: None,
        signal: None,
        message: None,
    }
}

/// Runs case `index` and decides its verdict.
pub(super) async fn run_case(
    program: Arc<dyn Program>,
    lease: Lease,
    spec: CompareSpec,
    index: usize,
    name: String,
    stop: watch::Receiver<bool>,
) -> CaseResult {
    let mut case = skipped(index, name);
    let stdin = match lease.open_input(index) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "cannot open a case's input");
            case.verdict = Verdict::Ie;
            case.message = Some("the case's input could not be opened".into());
            return case;
        }
    };
    let out = match program.run(stdin, stop).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "a case could not run");
            case.verdict = Verdict::Ie;
            case.message = Some("the case could not run (an internal error of the judge)".into());
            return case;
        }
    };
    let u = &out.usage;
    case.cpu_ms = ms(u.cpu_secs);
    case.wall_ms = ms(u.wall_secs);
    case.memory_kb = u.peak_memory_bytes / 1024;
    case.exit_code = u.exit_code;
    case.signal = u.signal;
    let limits = program.limits();
    let (outcome, message) = run_outcome(&out, &limits);
    match Verdict::from_run(outcome, out.stdout_truncated) {
        Some(Verdict::Ole) => {
            case.verdict = Verdict::Ole;
            case.message = Some(format!(
                "output limit exceeded: more than {} bytes on stdout",
                limits.stream_bytes
            ));
        }
        Some(v) => {
            case.verdict = v;
            case.message = message;
        }
        None => {
            let compared = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
                let expected = lease.open_expected(index).map_err(std::io::Error::other)?;
                compare(&spec, BufReader::new(expected), out.stdout.as_slice())
            })
            .await;
            match compared {
                Ok(Ok(c)) => {
                    case.verdict = c.verdict;
                    case.message = c.message;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %error_chain(&e), "comparing an output failed");
                    case.verdict = Verdict::Ie;
                    case.message = Some("the expected output could not be read".into());
                }
                Err(e) => {
                    tracing::error!(error = %e, "compare task failed");
                    case.verdict = Verdict::Ie;
                    case.message = Some("the output could not be compared".into());
                }
            }
        }
    }
    case
}

/// How a run ended, as a Jobe outcome for `Verdict::from_run` and the case's message. Unlike a
/// Jobe run, stderr does not matter: a program that exits 0 within its limits is judged by its
/// output, and neither its stderr nor its output is ever shown (they could echo the input).
fn run_outcome(
    out: &CaseOutput,
    limits: &crate::profile::plan::Limits,
) -> (Outcome, Option<String>) {
    match &out.end {
        End::Exited(0) => (Outcome::Success, None),
        End::Exited(code) => (Outcome::RuntimeError, Some(format!("exit code {code}"))),
        End::Signaled(sig) => (
            Outcome::RuntimeError,
            Some(format!(
                "killed by signal {sig} ({})",
                crate::sched::signal_message(*sig)
            )),
        ),
        End::CpuTime => (
            Outcome::TimeLimit,
            Some(format!(
                "CPU time limit exceeded ({} s)",
                secs(limits.cpu.as_secs_f64())
            )),
        ),
        End::WallTime => (
            Outcome::TimeLimit,
            Some(format!(
                "wall-clock time limit exceeded ({} s)",
                secs(limits.wall.as_secs_f64())
            )),
        ),
        End::Memory => (
            Outcome::MemoryLimit,
            Some(format!(
                "memory limit exceeded ({} MB)",
                limits.memory_bytes / 1_024_000
            )),
        ),
        End::Syscall(name) => (
            Outcome::IllegalSyscall,
            Some(format!("illegal system call: {name}")),
        ),
        End::ExecFailed(errno) => (
            Outcome::RuntimeError,
            Some(format!(
                "the program could not be started: {}",
                std::io::Error::from_raw_os_error(*errno)
            )),
        ),
    }
}

fn secs(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a non-negative number of milliseconds"
)]
fn ms(secs: f64) -> u64 {
    (secs * 1000.0).round().max(0.0) as u64
}
