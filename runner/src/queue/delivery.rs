//! One delivery, from arrival to settlement: decode it, judge it, publish its events and its
//! result, and only once the broker confirmed the result, acknowledge it (docs/queue.md,
//! "Delivery, step by step").
//!
//! Owns: the publisher (publisher confirms on its own channel), the order publish → confirm →
//! ack, what each failure settles to (requeue, dead-letter, or nothing when the channel is gone:
//! the broker redelivers), and the reaction of a held delivery to a stop.
//! Must not: ack before the result is confirmed, ack on a channel other than the delivery's (its
//! `Acker` is tied to it and refuses once that channel is gone), or panic on a message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions};
use lapin::types::ShortString;
use tokio::sync::{Semaphore, watch};

use crate::judge::{Event, Status, SubmissionResult};
use crate::metrics::QueueCounters;

use super::Phase;
use super::config::QueueConfig;
use super::judger::{Judger, Refusal};
use super::message::{self, Decoded, Incoming, Outgoing, Reply, Submission};

/// How long a delivery waits before asking a busy judge again.
const BUSY_RETRY: Duration = Duration::from_millis(500);

/// Why a result was not safely published.
#[derive(Debug, thiserror::Error)]
pub(super) enum PublishError {
    /// The channel or connection failed: nothing can be settled on it any more.
    #[error("publish failed: {0}")]
    Lost(#[source] lapin::Error),
    /// The broker refused to take the message (a negative confirm).
    #[error("the broker nacked the result")]
    Nacked,
    /// The daemon stopped with an abort while the publish waited (the broker blocked
    /// publishers, say): the delivery goes back; the result may still reach the broker.
    #[error("aborted while publishing")]
    Aborted,
    /// No queue is bound where the result was sent (a missing `reply_to` queue, or nothing bound
    /// to the results exchange for this language): the broker returned it.
    #[error("the result was unroutable ({0})")]
    Unroutable(String),
}

/// Publishes results and events on one channel in confirm mode.
#[derive(Clone)]
pub(super) struct Publisher {
    channel: Channel,
    cfg: Arc<QueueConfig>,
    counters: Arc<QueueCounters>,
}

impl Publisher {
    /// `channel` must already be in confirm mode.
    pub(super) fn new(
        channel: Channel,
        cfg: Arc<QueueConfig>,
        counters: Arc<QueueCounters>,
    ) -> Self {
        Publisher {
            channel,
            cfg,
            counters,
        }
    }

    async fn send(&self, o: Outgoing, mandatory: bool) -> lapin::Result<lapin::PublisherConfirm> {
        self.channel
            .basic_publish(
                ShortString::from(o.exchange.as_str()),
                ShortString::from(o.routing_key.as_str()),
                BasicPublishOptions {
                    mandatory,
                    ..BasicPublishOptions::default()
                },
                &o.body,
                o.properties,
            )
            .await
    }

    /// Publishes a result and waits for the broker's confirm.
    pub(super) async fn result(
        &self,
        result: &SubmissionResult,
        reply: &Reply,
    ) -> Result<(), PublishError> {
        let started = Instant::now();
        let o = message::result_message(&self.cfg.names, result, reply);
        let confirm = self.send(o, true).await.map_err(PublishError::Lost)?;
        let confirmation = confirm.await.map_err(PublishError::Lost)?;
        self.counters.observe_confirm(started.elapsed());
        match confirmation {
            lapin::Confirmation::Ack(None) => Ok(()),
            lapin::Confirmation::Ack(Some(returned)) => {
                Err(PublishError::Unroutable(returned.reply_text.to_string()))
            }
            lapin::Confirmation::Nack(_) => Err(PublishError::Nacked),
            lapin::Confirmation::NotRequested => {
                unreachable!("the publish channel is in confirm mode")
            }
        }
    }

    /// Publishes a progress event without waiting for its confirm (events are transient; a lost
    /// one is not redelivered).
    pub(super) async fn event(&self, id: &str, event: &Event) {
        let o = message::event_message(&self.cfg.names, id, event);
        if let Err(e) = self.send(o, false).await {
            tracing::debug!(id, error = %e, "event not published");
        }
    }
}

/// What a delivery ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// The result is confirmed: acknowledge.
    Ack,
    /// Back to its queue (nack with requeue), for this runner or another.
    Requeue,
    /// Rejected without requeue: to the dead-letter exchange.
    DeadLetter,
    /// Nothing: the channel is gone, and the broker redelivers the message. `true`: a finished
    /// result was not published.
    Abandon(bool),
}

/// Everything one delivery needs.
pub(super) struct Ctx {
    pub(super) cfg: Arc<QueueConfig>,
    pub(super) judger: Arc<dyn Judger>,
    pub(super) counters: Arc<QueueCounters>,
    /// The judge's capacity: a delivery judges only while it holds a permit.
    pub(super) permits: Arc<Semaphore>,
    pub(super) publisher: Publisher,
    /// The daemon's stop phase.
    pub(super) phase: watch::Receiver<Phase>,
    /// True once this delivery's session (connection) is gone; set by the session, or here when
    /// the publish channel fails (the session then closes the connection, so that nothing it
    /// holds stays unacknowledged on a live channel).
    pub(super) lost: Arc<watch::Sender<bool>>,
    /// True once the session cancelled its consumers for a stop.
    pub(super) cancelled: Arc<watch::Sender<bool>>,
}

impl Ctx {
    fn mark_lost(&self) {
        self.lost.send_replace(true);
    }

    /// Publishes a result and waits for its confirm, unless the daemon aborts first.
    async fn publish_result(
        &self,
        result: &SubmissionResult,
        reply: &Reply,
    ) -> Result<(), PublishError> {
        tokio::select! {
            r = self.publisher.result(result, reply) => {
                if matches!(r, Err(PublishError::Lost(_))) {
                    self.mark_lost();
                }
                r
            }
            () = aborted(self) => Err(PublishError::Aborted),
        }
    }
}

/// Handles one delivery of the queue of `language`, to its settlement.
pub(super) async fn handle(ctx: &Ctx, language: &str, d: Delivery) {
    let redelivered = message::was_delivered_before(d.redelivered, d.properties.headers().as_ref());
    ctx.counters.delivered(redelivered);
    let p = &d.properties;
    let incoming = Incoming {
        body: &d.data,
        queue_language: language,
        message_id: p.message_id().as_ref().map(|s| s.as_str()),
        reply_to: p.reply_to().as_ref().map(|s| s.as_str()),
        correlation_id: p.correlation_id().as_ref().map(|s| s.as_str()),
    };
    let settle = match message::decode(&incoming, ctx.cfg.max_message_bytes) {
        Decoded::Bad(bad) => {
            tracing::warn!(
                queue = %ctx.cfg.names.queue_of(language),
                reason = ?bad.reason,
                "bad message: dead-lettered"
            );
            match bad.result {
                Some(x) => match ctx.publish_result(&x.0, &x.1).await {
                    Ok(()) | Err(PublishError::Unroutable(_) | PublishError::Nacked) => {
                        Settle::DeadLetter
                    }
                    Err(PublishError::Aborted) => Settle::Requeue,
                    Err(PublishError::Lost(_)) => Settle::Abandon(false),
                },
                None => Settle::DeadLetter,
            }
        }
        Decoded::Submission(sub) => judge(ctx, *sub, redelivered).await,
    };
    settle_delivery(ctx, &d, settle).await;
}

async fn settle_delivery(ctx: &Ctx, d: &Delivery, settle: Settle) {
    let acker = &d.acker;
    let done = match settle {
        Settle::Ack => acker.ack(BasicAckOptions::default()).await,
        Settle::Requeue => {
            acker
                .nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await
        }
        Settle::DeadLetter => acker.reject(BasicRejectOptions { requeue: false }).await,
        Settle::Abandon(with_result) => {
            ctx.counters.abandoned(with_result);
            return;
        }
    };
    match done {
        Ok(true) => match settle {
            Settle::Ack => ctx.counters.acked(),
            Settle::Requeue => ctx.counters.nacked(),
            Settle::DeadLetter => ctx.counters.dead_lettered(),
            Settle::Abandon(_) => {}
        },
        // The channel is gone (the acker refuses): the broker redelivers the message.
        Ok(false) | Err(_) => {
            tracing::debug!(?settle, "delivery not settled: its channel is gone");
            ctx.counters.abandoned(settle == Settle::Ack);
        }
    }
}

/// Resolves once `rx` reads `true` (never, if its sender goes without).
async fn until_true(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Resolves once the stop began and every consumer of this session is cancelled, or the session
/// is lost. A delivery given back before its session's consumers are cancelled could come
/// straight back to one of them.
async fn stopped(ctx: &Ctx) {
    let mut cancelled = ctx.cancelled.subscribe();
    let mut lost = ctx.lost.subscribe();
    tokio::select! {
        () = until_true(&mut cancelled) => {}
        () = until_true(&mut lost) => {}
    }
}

/// Resolves once the stop is an abort and [`stopped`] holds.
async fn aborted(ctx: &Ctx) {
    let mut phase = ctx.phase.clone();
    loop {
        if *phase.borrow_and_update() == Phase::Abort {
            break;
        }
        if phase.changed().await.is_err() {
            break;
        }
    }
    stopped(ctx).await;
}

async fn judge(ctx: &Ctx, sub: Submission, redelivered: bool) -> Settle {
    let Submission { id, request, reply } = sub;
    let language = request.language_id.clone();
    if !ctx.judger.serves(&language) {
        tracing::warn!(id, language, "language not served here: requeued");
        return Settle::Requeue;
    }
    let mut lost_rx = ctx.lost.subscribe();
    // A slot of the judge's capacity; a stop before one frees up gives the delivery back.
    let permit = tokio::select! {
        biased;
        () = until_true(&mut lost_rx) => return Settle::Abandon(false),
        () = stopped(ctx) => return Settle::Requeue,
        p = ctx.permits.clone().acquire_owned() => match p {
            Ok(p) => p,
            Err(_) => return Settle::Requeue,
        },
    };
    let mut judging = loop {
        match ctx.judger.judge(id.clone(), request.clone()).await {
            Ok(j) => break j,
            Err(Refusal::UnknownLanguage(_)) => {
                tracing::warn!(id, language, "language not served here: requeued");
                return Settle::Requeue;
            }
            Err(Refusal::Invalid(reason)) => {
                tracing::warn!(id, language, %reason, "submission cannot be judged: dead-lettered");
                let result = message::ie_result(
                    id.clone(),
                    request.testset.problem().to_owned(),
                    request.testset.version().to_owned(),
                    language.clone(),
                    &reason,
                );
                return match ctx.publish_result(&result, &reply).await {
                    Err(PublishError::Lost(_)) => Settle::Abandon(false),
                    Err(PublishError::Aborted) => Settle::Requeue,
                    Ok(()) | Err(PublishError::Nacked | PublishError::Unroutable(_)) => {
                        Settle::DeadLetter
                    }
                };
            }
            Err(Refusal::Busy(why)) => {
                tracing::debug!(id, %why, "judge busy: retrying");
                tokio::select! {
                    () = tokio::time::sleep(BUSY_RETRY) => {}
                    () = stopped(ctx) => return Settle::Requeue,
                }
            }
        }
    };
    tracing::info!(id, language, redelivered, "judging");
    // The events, in order, until `done`; an abort cancels the judging and gives it back, and
    // so does a stop while the judge has not started it yet (it waits behind other work, HTTP
    // submissions say): "finish" finishes what runs, and a SIGTERM's drain would leave it
    // unstarted until the drain timeout.
    let mut started = false;
    let result = loop {
        tokio::select! {
            ev = judging.events.recv() => match ev {
                Some(Event::Done(r)) => {
                    ctx.publisher.event(&id, &Event::Done(r.clone())).await;
                    break Some(*r);
                }
                Some(e) => {
                    started |= e != Event::Status(Status::Queued);
                    ctx.publisher.event(&id, &e).await;
                }
                None => break None,
            },
            () = stopped(ctx), if !started => {
                judging.cancel();
                tracing::info!(id, "stopping: not started by the judge yet, requeued");
                return Settle::Requeue;
            }
            () = aborted(ctx) => {
                judging.cancel();
                tracing::info!(id, "stopping: judging aborted, requeued");
                return Settle::Requeue;
            }
        }
    };
    drop(permit);
    let Some(result) = result else {
        // Whatever still runs of it must not hold a slot for a delivery given back.
        judging.cancel();
        tracing::error!(id, "the judge ended without a result: requeued");
        return Settle::Requeue;
    };
    if *ctx.lost.borrow() {
        tracing::warn!(
            id,
            "connection lost while judging: result dropped (the broker redelivers the message)"
        );
        return Settle::Abandon(true);
    }
    match ctx.publish_result(&result, &reply).await {
        Ok(()) => Settle::Ack,
        Err(PublishError::Lost(e)) => {
            tracing::warn!(id, error = %e, "result not published: connection lost (redelivered)");
            Settle::Abandon(true)
        }
        Err(PublishError::Aborted) => {
            tracing::info!(id, "stopping: publish aborted, requeued");
            Settle::Requeue
        }
        Err(PublishError::Nacked) => {
            tracing::warn!(id, "the broker nacked the result: requeued");
            Settle::Requeue
        }
        Err(PublishError::Unroutable(why)) => {
            tracing::warn!(
                id,
                %why,
                "result unroutable (no queue bound for it): submission dead-lettered"
            );
            Settle::DeadLetter
        }
    }
}
