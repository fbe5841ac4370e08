//! Sending a run to a peer and reading the answer: the client's body unchanged with the hop
//! marker and the peer key, the files of `file_list` pushed from our cache when the peer answers
//! 404, and the answer decoded with the same type the API encodes it with (`job::wire`).
//!
//! Every answer is one [`Attempt`]: a result for the client, or a retry elsewhere (and, when the
//! peer is at fault, its ejection). Which answers retry: the table in docs/peers.md.
//!
//! Owns: one forward (send, file push, answer → `Attempt`), the forward metrics.
//! Must not: send the client's `X-API-KEY`, log bodies, or retry on the client's own error.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;
use hyper::{Method, StatusCode};

use super::auth::{LOAD_HEADER, parse_load};
use super::client::{Reply, jobe_url};
use super::metrics::Forwarded;
use super::{InFlight, Peer, Peers};
use crate::cache::FileCache;
use crate::job::wire::{RunResponse, unknown_language_in};
use crate::job::{Outcome, RunResult};
use crate::sched::ExecError;

/// Result of one forward (possibly after a file push).
pub(super) enum Attempt {
    Done(Result<RunResult, ExecError>),
    /// Try elsewhere; the peer that failed.
    Retry(Arc<Peer>),
}

impl Peers {
    /// Sends the run to its peer and reads the answer; on a 404 for a run with files, pushes
    /// them and sends it once more.
    pub(super) async fn forward(
        &self,
        run: InFlight,
        body: &Bytes,
        files: &[String],
        cache: &Arc<FileCache>,
    ) -> Attempt {
        let m = &self.shared.metrics;
        let p = run.0.clone();
        let mut run = run;
        let mut pushed = false;
        loop {
            let started = Instant::now();
            let Some(reply) = self.send(run, body).await else {
                return Attempt::Retry(p);
            };
            match reply.status {
                StatusCode::OK => {
                    m.latency(&p.url, started.elapsed().as_secs_f64());
                    return self.read_result(&p, &reply);
                }
                StatusCode::NOT_FOUND if !files.is_empty() && !pushed => {
                    m.forward(&p.url, Forwarded::FilesMissing);
                    pushed = true;
                    if !self.push_files(&p, files, cache).await {
                        return Attempt::Retry(p);
                    }
                    run = InFlight::new(p.clone());
                }
                status => return self.refused(&p, status, &reply.body),
            }
        }
    }

    /// POSTs `body` (hop-marked) to `run`'s peer and waits for its answer, or for the peer to
    /// go down. The run counts as in flight until then; the load the answer reports is noted.
    /// `None`: no answer (counted, and the peer ejected if it is at fault): retry elsewhere.
    async fn send(&self, run: InFlight, body: &Bytes) -> Option<Reply> {
        let sh = &self.shared;
        let p = run.0.clone();
        let down = p.down.notified();
        tokio::pin!(down);
        down.as_mut().enable();
        let call = sh.client.call(
            Method::POST,
            jobe_url(&p.url, "runs"),
            &p.key,
            true,
            Some(body.clone()),
            sh.settings().config.request_timeout,
        );
        let res = tokio::select! {
            r = call => Some(r),
            () = down => None,
        };
        drop(run);
        sh.changed.notify_waiters();
        let reply = match res {
            None => {
                sh.metrics.forward(&p.url, Forwarded::Error);
                tracing::warn!(peer = %p.url, "peer went down while running a forwarded run");
                return None;
            }
            Some(Err(e)) => {
                sh.metrics.forward(&p.url, Forwarded::Error);
                self.eject(&p, &crate::telemetry::error_chain(&e));
                return None;
            }
            Some(Ok(r)) => r,
        };
        if let Some(load) = reply
            .headers
            .get(LOAD_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_load)
        {
            self.note_reported_load(&p, load);
        }
        Some(reply)
    }

    /// An answer other than 200 (and the one 404 that pushes files): the client's own error is
    /// passed on, anything else is retried elsewhere (the peer ejected when at fault).
    fn refused(&self, p: &Arc<Peer>, status: StatusCode, body: &[u8]) -> Attempt {
        let m = &self.shared.metrics;
        if status == StatusCode::BAD_REQUEST {
            m.forward(&p.url, Forwarded::ClientError);
            let msg: String = serde_json::from_slice(body).unwrap_or_default();
            if unknown_language_in(&msg).is_some() {
                // Its language list changed since the last probe: another may have it.
                return Attempt::Retry(p.clone());
            }
            // The same checks as ours, with the profile: the client's error.
            return Attempt::Done(Err(ExecError::BadRequest(msg)));
        }
        m.forward(&p.url, Forwarded::Error);
        if status == StatusCode::FORBIDDEN {
            self.eject(p, "refused our peer key");
        } else if status.is_server_error() {
            self.eject(p, &format!("HTTP {}", status.as_u16()));
        }
        Attempt::Retry(p.clone())
    }

    /// A 200 from `p`: its result, or a retry on overload or an unreadable body.
    fn read_result(&self, p: &Arc<Peer>, reply: &Reply) -> Attempt {
        let m = &self.shared.metrics;
        match serde_json::from_slice::<RunResponse>(&reply.body) {
            Ok(r) if r.outcome == Outcome::ServerOverload => {
                m.forward(&p.url, Forwarded::Overload);
                Attempt::Retry(p.clone())
            }
            Ok(r) => {
                m.forward(&p.url, Forwarded::Ok);
                Attempt::Done(Ok(r.into_result()))
            }
            Err(e) => {
                m.forward(&p.url, Forwarded::Error);
                tracing::debug!(peer = %p.url, error = %e, "unreadable run result");
                self.eject(p, "unreadable run result");
                Attempt::Retry(p.clone())
            }
        }
    }

    /// PUTs every file of the run from our cache to `p`. False if one is gone or refused.
    async fn push_files(&self, p: &Peer, files: &[String], cache: &Arc<FileCache>) -> bool {
        let sh = &self.shared;
        let timeout = sh.settings().config.request_timeout;
        let mut n = 0;
        for id in files {
            let c = cache.clone();
            let id2 = id.clone();
            let Ok(Some(data)) = tokio::task::spawn_blocking(move || c.get(&id2)).await else {
                tracing::warn!(file_id = %id, "file to push is no longer in the cache");
                return false;
            };
            let body = serde_json::json!({
                "file_contents": base64::engine::general_purpose::STANDARD.encode(&data)
            })
            .to_string();
            let r = sh
                .client
                .call(
                    Method::PUT,
                    jobe_url(&p.url, &format!("files/{id}")),
                    &p.key,
                    false,
                    Some(Bytes::from(body)),
                    timeout,
                )
                .await;
            match r {
                Ok(r) if r.status == StatusCode::NO_CONTENT => n += 1,
                Ok(r) => {
                    tracing::warn!(peer = %p.url, status = r.status.as_u16(), "file push refused");
                    return false;
                }
                Err(e) => {
                    self.eject(p, &crate::telemetry::error_chain(&e));
                    return false;
                }
            }
        }
        sh.metrics.pushed(&p.url, n);
        tracing::info!(peer = %p.url, files = n, "pushed files to peer");
        true
    }
}
