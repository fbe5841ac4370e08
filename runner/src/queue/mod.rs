//! Queue mode: judge submissions taken from RabbitMQ, publish their events and results back, at
//! least once (docs/queue.md). Runs beside the HTTP APIs, on the same judge.
//!
//! Owns: the `[queue]` settings (`config`), the topology every runner declares (`topology`),
//! reading deliveries and shaping what is published (`message`), the flow-control window
//! (`window`), one connection's life (`session`), one delivery's life (`delivery`), and here the
//! supervisor: reconnect with backoff, the connection state in metrics and `/health`, and the
//! two stop policies (`finish`, `requeue`). What it needs of the judge is the `Judger` seam
//! (`judger`), implemented by the judge engine.
//!
//! Must not: import `api`, `peer` or `config` (the engine is reached through `judge`, the
//! settings are handed in by `server`); acknowledge a delivery before its result is confirmed
//! by the broker, or on any channel but its own; log the broker password; crash on anything a
//! message holds.

pub mod config;
mod delivery;
pub mod engine;
pub mod judger;
pub mod message;
mod session;
pub mod topology;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::metrics::QueueCounters;

pub use self::config::{BrokerUrl, Names, OnStop, QueueConfig, QueueConfigError, RawQueue};
pub use self::judger::{BoxFuture, Judger, Judging, Refusal};

/// How long an abort may take before the connection is dropped regardless.
const ABORT_GRACE: Duration = Duration::from_secs(5);

/// Where the daemon is in its life, as every held delivery sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Consuming.
    Run,
    /// Stopping: consumers cancelled; deliveries not started yet go back to their queue,
    /// running ones finish, publish and ack.
    Finish,
    /// Stopping now: running judgings are aborted and every held delivery goes back.
    Abort,
}

/// What the supervisor and every session share.
pub(crate) struct Shared {
    cfg: Arc<QueueConfig>,
    judger: Arc<dyn Judger>,
    counters: Arc<QueueCounters>,
    /// The judge's capacity: a delivery judges only while it holds one.
    permits: Arc<Semaphore>,
}

/// Queue mode, running. [`QueueMode::stop`] ends it as `on_stop` says.
pub struct QueueMode {
    phase: watch::Sender<Phase>,
    task: JoinHandle<()>,
    cfg: Arc<QueueConfig>,
}

impl QueueMode {
    /// Starts queue mode: connects (retrying with backoff while the broker is down; the daemon
    /// serves HTTP meanwhile), declares the topology, consumes. `counters` show the connection
    /// state and the deliveries (attach them to the daemon's metrics).
    pub fn start(
        cfg: QueueConfig,
        judger: Arc<dyn Judger>,
        counters: Arc<QueueCounters>,
    ) -> QueueMode {
        let cfg = Arc::new(cfg);
        let capacity = judger.capacity().max(1);
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            judger,
            counters,
            permits: Arc::new(Semaphore::new(capacity)),
        });
        let (phase, rx) = watch::channel(Phase::Run);
        let task = tokio::spawn(supervise(shared, rx));
        QueueMode { phase, task, cfg }
    }

    /// Stops as `on_stop` says: `finish` waits for running submissions (up to
    /// `drain_timeout_secs`, then aborts and requeues the rest); `requeue` aborts at once.
    pub async fn stop(self) {
        let policy = self.cfg.on_stop;
        self.stop_with(policy).await;
    }

    /// Stops with `policy` instead of the configured one.
    pub async fn stop_with(mut self, policy: OnStop) {
        match policy {
            OnStop::Finish => {
                tracing::info!(
                    drain_timeout_secs = self.cfg.drain_timeout.as_secs_f64(),
                    "queue mode: stopping (finish running submissions)"
                );
                self.phase.send_replace(Phase::Finish);
                if tokio::time::timeout(self.cfg.drain_timeout, &mut self.task)
                    .await
                    .is_ok()
                {
                    return;
                }
                tracing::warn!("queue mode: drain timeout: aborting and requeueing the rest");
                self.phase.send_replace(Phase::Abort);
            }
            OnStop::Requeue => {
                tracing::info!("queue mode: stopping (abort and requeue)");
                self.phase.send_replace(Phase::Abort);
            }
        }
        // Everything held is given back within moments of the abort; a broker that no longer
        // answers must not hold the daemon's exit hostage.
        match tokio::time::timeout(ABORT_GRACE, &mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "queue mode: supervisor failed"),
            Err(_) => {
                tracing::error!(
                    "queue mode: not stopped {ABORT_GRACE:?} after the abort (broker not \
                     answering?): dropping the connection; the broker redelivers what it held"
                );
                self.task.abort();
            }
        }
    }
}

/// Connects, and reconnects after every failure with exponential backoff, until the stop.
async fn supervise(shared: Arc<Shared>, mut phase: watch::Receiver<Phase>) {
    let cfg = &shared.cfg;
    let mut orphans = tokio::task::JoinSet::new();
    let mut backoff = cfg.reconnect_min;
    let mut failures: u64 = 0;
    while *phase.borrow() == Phase::Run {
        let connected = std::sync::atomic::AtomicBool::new(false);
        let ended = session::run(&shared, phase.clone(), || {
            connected.store(true, std::sync::atomic::Ordering::Relaxed);
            shared.counters.set_connected(true);
        })
        .await;
        shared.counters.set_connected(false);
        match ended {
            Ok(()) => break,
            Err((e, left)) => {
                if let Some(left) = left {
                    orphans.spawn(left.wait());
                }
                if connected.load(std::sync::atomic::Ordering::Relaxed) {
                    backoff = cfg.reconnect_min;
                    failures = 0;
                }
                failures += 1;
                if *phase.borrow() != Phase::Run {
                    tracing::warn!(broker = %cfg.url.host(), error = %e, "queue mode: session ended while stopping");
                    break;
                }
                tracing::warn!(
                    broker = %cfg.url.host(),
                    error = %e,
                    failures,
                    retry_in_secs = backoff.as_secs_f64(),
                    "queue mode: disconnected; retrying"
                );
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = phase.changed() => {}
                }
                backoff = next_backoff(backoff, cfg.reconnect_max);
            }
        }
    }
    // Deliveries of lost sessions still judging: they end by themselves (finish) or on the
    // abort; nothing of them can be settled any more.
    while orphans.join_next().await.is_some() {}
    tracing::info!("queue mode: stopped");
}

/// The wait after `current`: doubled, at most `max`.
fn next_backoff(current: Duration, max: Duration) -> Duration {
    (current * 2).min(max)
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The reconnect backoff.
    use super::*;

    #[test]
    fn test_backoff_doubles_up_to_the_maximum() {
        let max = Duration::from_secs(30);
        let mut b = Duration::from_millis(500);
        let mut seen = vec![];
        for _ in 0..8 {
            seen.push(b.as_millis());
            b = next_backoff(b, max);
        }
        assert_eq!(seen, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    }
}
