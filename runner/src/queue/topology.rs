//! The broker topology every runner declares, idempotently, each time it connects
//! (docs/queue.md, "Topology"):
//!
//! - `runner.judge`: durable direct exchange; submissions, routing key = `language_id`;
//! - `judge.<language>`: one durable quorum queue per language this runner serves, bound to
//!   `runner.judge` with the language as key, with a delivery limit and `runner.dead` as its
//!   dead-letter exchange;
//! - `runner.results`: durable topic exchange; results without `reply_to`, key = `language_id`;
//! - `runner.events`: durable topic exchange; progress events, key = `<id>.<event>`;
//! - `runner.dead`: durable fanout exchange with a durable queue of the same name bound to it.
//!
//! Owns: the declarations and the queue arguments. Must not: consume or publish.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, ExchangeKind};

use super::config::Names;

/// The arguments of a per-language queue: a quorum queue, its delivery limit, its dead-letter
/// exchange. Declaring a queue that exists with other arguments fails (`PRECONDITION_FAILED`).
pub fn judge_queue_arguments(names: &Names, delivery_limit: u32) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(delivery_limit)),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(names.dead_letter.as_str().into()),
    );
    args
}

fn durable() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

/// Whether `e` is the broker's `PRECONDITION_FAILED` (406): a queue or exchange exists with
/// other arguments or another type.
fn is_precondition_failed(e: &lapin::Error) -> bool {
    matches!(
        e.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if *amqp.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
    )
}

/// Declares `queue` with `args`. If it exists with other arguments (the broker refuses and
/// closes the channel), it is used as it is: a warning says so, and `channel` is replaced by a
/// fresh one.
async fn queue(
    conn: &Connection,
    channel: &mut Channel,
    queue: &str,
    args: FieldTable,
) -> lapin::Result<()> {
    match channel
        .queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions::durable(),
            args,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_precondition_failed(&e) => {
            *channel = conn.create_channel().await?;
            ready(channel, queue).await?;
            tracing::warn!(
                queue,
                "queue mode: the queue exists with other arguments; used as it is (its own \
                 type, delivery limit and dead-lettering apply)"
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Declares the exchanges, the dead-letter queue, and the queue of each of `languages` with its
/// binding. Safe to repeat: every runner does it on every connect. Returns an open channel for
/// later queue-depth polls.
pub async fn declare(
    conn: &Connection,
    names: &Names,
    delivery_limit: u32,
    languages: &[String],
) -> lapin::Result<Channel> {
    let mut channel = conn.create_channel().await?;
    let exchanges = [
        (&names.judge_exchange, ExchangeKind::Direct),
        (&names.results_exchange, ExchangeKind::Topic),
        (&names.events_exchange, ExchangeKind::Topic),
        (&names.dead_letter, ExchangeKind::Fanout),
    ];
    for (name, kind) in exchanges {
        channel
            .exchange_declare(
                ShortString::from(name.as_str()),
                kind,
                durable(),
                FieldTable::default(),
            )
            .await?;
    }
    let mut dead_args = FieldTable::default();
    dead_args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    queue(conn, &mut channel, &names.dead_letter, dead_args).await?;
    bind(&channel, &names.dead_letter, &names.dead_letter, "").await?;
    let args = judge_queue_arguments(names, delivery_limit);
    for language in languages {
        let name = names.queue_of(language);
        queue(conn, &mut channel, &name, args.clone()).await?;
        bind(&channel, &name, &names.judge_exchange, language).await?;
    }
    Ok(channel)
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    channel
        .queue_bind(
            ShortString::from(queue),
            ShortString::from(exchange),
            ShortString::from(key),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// Ready messages in `queue` (a passive declare: it creates nothing).
pub async fn ready(channel: &Channel, queue: &str) -> lapin::Result<u64> {
    let q = channel
        .queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions::default().passive(),
            FieldTable::default(),
        )
        .await?;
    Ok(u64::from(q.message_count()))
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The per-language queue's arguments.
    use super::*;

    #[test]
    fn test_judge_queue_is_quorum_with_limit_and_dead_letter() {
        let args = judge_queue_arguments(&Names::default(), 7);
        let m = args.inner();
        assert_eq!(
            m.get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
        assert_eq!(m.get("x-delivery-limit"), Some(&AMQPValue::LongLongInt(7)));
        assert_eq!(
            m.get("x-dead-letter-exchange"),
            Some(&AMQPValue::LongString("runner.dead".into()))
        );
    }
}
