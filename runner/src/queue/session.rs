//! One connection to the broker, from connect to close: declare the topology, start the window's
//! units (one consumer each, prefetch 1), move idle units to the languages that have work, and on
//! a stop cancel every consumer and wait for the deliveries held.
//!
//! Owns: the connection and its three channels (declarations and queue-depth polls; publishing
//! in confirm mode; consuming), the units and their consumer tags. Must not: settle a delivery
//! (`delivery` does), outlive a failure of any channel (the connection is closed, so every
//! delivery it held is redelivered).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_core::Stream;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Phase;
use super::Shared;
use super::delivery::{self, Ctx, Publisher};
use super::topology;
use super::window::{self, UnitView};

/// Longest wait for the TCP connection and the AMQP handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How often idle units may move to languages with waiting messages.
const REBALANCE_EVERY: Duration = Duration::from_millis(200);

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    #[error("cannot connect: {0}")]
    Connect(#[source] lapin::Error),
    #[error("connecting timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("cannot set up the topology or channels: {0}")]
    Setup(#[source] lapin::Error),
    #[error("connection lost: {0}")]
    Lost(#[source] lapin::Error),
    #[error("the broker cancelled the consumer of {0} (queue deleted?)")]
    ConsumerCancelled(String),
    #[error("a publish failed: connection closed to redeliver what it held")]
    PublishFailed,
}

/// A unit's consumer, as the session tracks it.
struct Unit {
    language: String,
    tag: ShortString,
    idle: Arc<AtomicBool>,
    /// Cancelled by the session: for a move (to this language) or a stop (`None`).
    cancelled: Option<Option<String>>,
}

/// A unit task's end: its id and, if its consumer failed, the error.
pub(super) struct UnitExit {
    id: u64,
    error: Option<lapin::Error>,
}

/// What a session leaves behind when it fails: the unit tasks still holding deliveries (they
/// finish judging, and cannot settle: the broker redelivers).
pub(super) struct Orphans(JoinSet<UnitExit>);

impl Orphans {
    pub(super) async fn wait(mut self) {
        while self.0.join_next().await.is_some() {}
    }
}

static SESSION_SEQ: AtomicU64 = AtomicU64::new(0);

/// A session: connected, consuming, until a stop (`Ok`) or a failure (`Err`, with the units
/// still running). `on_connected` is called once consuming began.
pub(super) async fn run(
    shared: &Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
    on_connected: impl FnOnce(),
) -> Result<(), (SessionError, Option<Orphans>)> {
    let cfg = &shared.cfg;
    let props = ConnectionProperties::default().with_connection_name(
        format!(
            "runner pid {} on {}",
            std::process::id(),
            hostname().unwrap_or_else(|| "?".into())
        )
        .into(),
    );
    let conn = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        Connection::connect_uri(cfg.url.uri(), props),
    )
    .await
    {
        Err(_) => return Err((SessionError::ConnectTimeout(CONNECT_TIMEOUT), None)),
        Ok(Err(e)) => return Err((SessionError::Connect(e), None)),
        Ok(Ok(c)) => c,
    };
    let setup = async {
        let languages = shared.judger.languages();
        let control = topology::declare(&conn, &cfg.names, cfg.delivery_limit, &languages).await?;
        let publish = conn.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let consume = conn.create_channel().await?;
        // Per consumer (quorum queues have no channel-wide prefetch): one delivery per unit.
        consume
            .basic_qos(1, BasicQosOptions { global: false })
            .await?;
        Ok::<_, lapin::Error>((control, publish, consume, languages))
    };
    let (control, publish, consume, languages) = match setup.await {
        Ok(x) => x,
        Err(e) => {
            let _ = conn.close(320, ShortString::from("setup failed")).await;
            return Err((SessionError::Setup(e), None));
        }
    };
    let lost = Arc::new(watch::channel(false).0);
    let cancelled = Arc::new(watch::channel(false).0);
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        judger: shared.judger.clone(),
        counters: shared.counters.clone(),
        permits: shared.permits.clone(),
        publisher: Publisher::new(publish, cfg.clone(), shared.counters.clone()),
        phase: phase.clone(),
        lost: lost.clone(),
        cancelled: cancelled.clone(),
    });
    let session = SESSION_SEQ.fetch_add(1, Ordering::Relaxed);
    let mut s = Units {
        ctx,
        consume,
        session,
        next: 0,
        units: BTreeMap::new(),
        tasks: JoinSet::new(),
    };
    let size = window::size(shared.judger.capacity(), cfg.prefetch);
    shared.counters.set_window(size);
    for language in window::initial(&languages, size) {
        if let Err(e) = s.start(language).await {
            let _ = conn.close(320, ShortString::from("setup failed")).await;
            return Err((SessionError::Setup(e), Some(Orphans(s.tasks))));
        }
    }
    if languages.is_empty() {
        tracing::warn!("queue mode: this runner serves no language; consuming nothing");
    }
    tracing::info!(
        broker = %cfg.url.host(),
        vhost = %cfg.url.vhost(),
        languages = %languages.join(" "),
        window = size,
        "queue mode: connected, consuming"
    );
    on_connected();
    let result = s.run(&control, &languages, &mut phase, &lost, &conn).await;
    match result {
        Ok(()) => {
            let _ = conn.close(200, ShortString::from("runner stopping")).await;
            Ok(())
        }
        Err(e) => {
            lost.send_replace(true);
            let _ = conn
                .close(320, ShortString::from("runner reconnecting"))
                .await;
            Err((e, Some(Orphans(s.tasks))))
        }
    }
}

struct Units {
    ctx: Arc<Ctx>,
    consume: Channel,
    session: u64,
    next: u64,
    units: BTreeMap<u64, Unit>,
    tasks: JoinSet<UnitExit>,
}

impl Units {
    /// Starts a unit on `language`'s queue.
    async fn start(&mut self, language: String) -> lapin::Result<()> {
        let id = self.next;
        self.next += 1;
        let tag = ShortString::from(format!(
            "runner-{}-{}-{id}",
            std::process::id(),
            self.session
        ));
        let consumer = self
            .consume
            .basic_consume(
                ShortString::from(self.ctx.cfg.names.queue_of(&language)),
                tag.clone(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let idle = Arc::new(AtomicBool::new(true));
        self.units.insert(
            id,
            Unit {
                language: language.clone(),
                tag,
                idle: idle.clone(),
                cancelled: None,
            },
        );
        self.tasks
            .spawn(unit(self.ctx.clone(), id, language, consumer, idle));
        Ok(())
    }

    /// Cancels unit `id`'s consumer; `to`: start a unit there once it is gone.
    async fn cancel(&mut self, id: u64, to: Option<String>) -> lapin::Result<()> {
        let Some(u) = self.units.get_mut(&id) else {
            return Ok(());
        };
        if u.cancelled.is_some() {
            return Ok(());
        }
        u.cancelled = Some(to);
        u.idle.store(false, Ordering::Relaxed);
        self.consume
            .basic_cancel(u.tag.clone(), BasicCancelOptions::default())
            .await
    }

    async fn run(
        &mut self,
        control: &Channel,
        languages: &[String],
        phase: &mut watch::Receiver<Phase>,
        lost: &watch::Sender<bool>,
        conn: &Connection,
    ) -> Result<(), SessionError> {
        let mut lost_rx = lost.subscribe();
        let mut events = Box::pin(conn.events_listener());
        let mut tick = tokio::time::interval(REBALANCE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping = false;
        loop {
            if stopping && self.units.is_empty() {
                return Ok(());
            }
            tokio::select! {
                exit = self.tasks.join_next(), if !self.units.is_empty() => {
                    let Some(exit) = exit else { continue };
                    let exit = match exit {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::error!(error = %e, "queue mode: a unit task failed");
                            continue;
                        }
                    };
                    let unit = self.units.remove(&exit.id);
                    if let Some(e) = exit.error {
                        return Err(SessionError::Lost(e));
                    }
                    let Some(unit) = unit else { continue };
                    match unit.cancelled {
                        Some(Some(to)) if !stopping => {
                            self.start(to).await.map_err(SessionError::Lost)?;
                        }
                        Some(_) => {}
                        None if stopping => {}
                        None => {
                            let queue = self.ctx.cfg.names.queue_of(&unit.language);
                            return Err(SessionError::ConsumerCancelled(queue));
                        }
                    }
                }
                changed = phase.changed(), if !stopping => {
                    if changed.is_err() || *phase.borrow() != Phase::Run {
                        stopping = true;
                        let held = self.held();
                        let ids: Vec<u64> = self.units.keys().copied().collect();
                        for id in ids {
                            self.cancel(id, None).await.map_err(SessionError::Lost)?;
                        }
                        self.ctx.cancelled.send_replace(true);
                        tracing::info!(held, "queue mode: consumers cancelled");
                    }
                }
                _ = tick.tick(), if !stopping && languages.len() > 1 => {
                    self.rebalance(control, languages).await?;
                }
                () = wait_true(&mut lost_rx) => return Err(SessionError::PublishFailed),
                ev = next_event(&mut events) => {
                    if let Some(lapin::Event::Error(e)) = ev {
                        return Err(SessionError::Lost(e));
                    }
                }
            }
        }
    }

    /// Units holding a delivery.
    fn held(&self) -> usize {
        self.units
            .values()
            .filter(|u| !u.idle.load(Ordering::Relaxed))
            .count()
    }

    /// Moves idle units to languages with ready messages and no idle unit.
    async fn rebalance(
        &mut self,
        control: &Channel,
        languages: &[String],
    ) -> Result<(), SessionError> {
        let views: Vec<UnitView> = self
            .units
            .values()
            .filter(|u| u.cancelled.is_none())
            .map(|u| UnitView {
                language: u.language.clone(),
                idle: u.idle.load(Ordering::Relaxed),
            })
            .collect();
        let poll = window::to_poll(languages, &views);
        if poll.is_empty() {
            return Ok(());
        }
        let mut ready = Vec::with_capacity(poll.len());
        for l in poll {
            let n = topology::ready(control, &self.ctx.cfg.names.queue_of(&l))
                .await
                .map_err(SessionError::Lost)?;
            ready.push((l, n));
        }
        for m in window::rebalance(languages, &views, &ready) {
            let id = self
                .units
                .iter()
                .find(|(_, u)| {
                    u.cancelled.is_none() && u.language == m.from && u.idle.load(Ordering::Relaxed)
                })
                .map(|(id, _)| *id);
            if let Some(id) = id {
                tracing::debug!(from = %m.from, to = %m.to, "queue mode: moving an idle unit");
                self.cancel(id, Some(m.to))
                    .await
                    .map_err(SessionError::Lost)?;
            }
        }
        Ok(())
    }
}

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn next_event<S: Stream<Item = lapin::Event>>(s: &mut Pin<Box<S>>) -> Option<lapin::Event> {
    std::future::poll_fn(|cx| s.as_mut().poll_next(cx)).await
}

async fn next_delivery(c: &mut Consumer) -> Option<lapin::Result<lapin::message::Delivery>> {
    std::future::poll_fn(|cx| Pin::new(&mut *c).poll_next(cx)).await
}

/// A unit: takes its consumer's deliveries one at a time (prefetch 1) until the consumer ends.
async fn unit(
    ctx: Arc<Ctx>,
    id: u64,
    language: String,
    mut consumer: Consumer,
    idle: Arc<AtomicBool>,
) -> UnitExit {
    loop {
        match next_delivery(&mut consumer).await {
            Some(Ok(d)) => {
                idle.store(false, Ordering::Relaxed);
                delivery::handle(&ctx, &language, d).await;
                idle.store(true, Ordering::Relaxed);
            }
            Some(Err(e)) => return UnitExit { id, error: Some(e) },
            None => return UnitExit { id, error: None },
        }
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
}
