//! `POST /runs`: parse (wire), resolve `file_list` from the cache, hand the run to the
//! dispatcher, encode the result (docs/jobe-api.md §1.4, §1.8). Counts the answered runs (by
//! language and outcome, overloads) and file cache lookups: here rather than in the scheduler, so
//! that every answered run is counted once, wherever it ran (the usage histograms are the
//! scheduler's: only runs that ran here have a usage).
//!
//! Must not: log source, input, file contents or program output.

use std::sync::Arc;

use bytes::Bytes;

use crate::dispatch::{Caller, Run};
use crate::job::wire::RunResponse;
use crate::job::{JobFile, RunResult};
use crate::sched::ExecError;

use super::error::ApiError;
use super::wire::{self, OVERLOAD_TEST_SOURCE};
use super::{ApiConfig, AppState};

/// Runs one job; `Ok` is the 200 body. Where it runs is the dispatcher's business.
pub(crate) async fn post_runs(
    state: &Arc<AppState>,
    body: Bytes,
    caller: Caller,
    config: &ApiConfig,
) -> Result<RunResponse, ApiError> {
    let cputime_limit = i64::from(config.cputime_upper_limit_secs);
    let req = wire::parse_run_body(&body, |l| state.dispatch.serves(l), cputime_limit)?;
    let mut job = req.job;
    tracing::Span::current().record("lang", job.language.as_str());
    // A served language (the parser refused any other): a bounded label.
    let lang = job.language.clone();
    let details = job.details;
    let respond = |result: &RunResult| {
        state.metrics.record_run(&lang, result.outcome);
        if details {
            RunResponse::with_details(result)
        } else {
            RunResponse::from(result)
        }
    };

    let file_ids: Vec<String> = req.file_list.iter().map(|(id, _)| id.clone()).collect();
    if !req.file_list.is_empty() {
        let cache = state.cache.clone();
        let metrics = state.metrics.clone();
        let specs = req.file_list;
        // Blocking file reads off the async workers.
        let files = tokio::task::spawn_blocking(move || {
            specs
                .into_iter()
                .map(|(id, name)| {
                    let contents = cache.get(&id);
                    metrics.cache_lookup(contents.is_some());
                    contents
                        .map(|contents| JobFile { name, contents })
                        .ok_or(id)
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cache read task failed");
            ApiError::Internal
        })?;
        job.files = files.map_err(|id| {
            tracing::info!(file_id = %id, "file_list file not in cache");
            ApiError::FilesMissing
        })?;
    }

    if job.source == OVERLOAD_TEST_SOURCE {
        return Ok(respond(&RunResult::overload()));
    }

    let run = Run {
        job,
        caller,
        body,
        file_ids,
    };
    let result = state.dispatch.dispatch(run).await;
    match result {
        Ok(result) => Ok(respond(&result)),
        Err(ExecError::BadRequest(m)) => Err(ApiError::BadRequest(m)),
        Err(ExecError::UnknownLanguage(l)) => Err(wire::unknown_language(&l)),
        Err(ExecError::Internal(cause)) => {
            tracing::error!(%cause, "executor failed");
            Err(ApiError::Internal)
        }
    }
}
