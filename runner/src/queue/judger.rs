//! What queue mode needs of a judge: judge this request, give me its events ending with `done`,
//! cancel it. The daemon's judge engine implements it (`judge`); so may a test of pure broker
//! behaviour, where the judging itself is irrelevant.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;

use crate::judge::{Event, SubmissionRequest};

/// A boxed future, `Send`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a judge would not take a submission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The language is not (or no longer) judged here: the delivery goes back to its queue.
    #[error("language {0} is not served here")]
    UnknownLanguage(String),
    /// The submission can never be judged as sent (an unknown test set without an origin, …):
    /// it is dead-lettered with an IE result.
    #[error("{0}")]
    Invalid(String),
    /// Full or draining right now: try again later.
    #[error("busy: {0}")]
    Busy(String),
}

/// A submission being judged: its events, in order, the last one `Event::Done`.
pub struct Judging {
    /// The events; the channel closes after `Done` (or without it when the judging was
    /// cancelled or failed).
    pub events: mpsc::Receiver<Event>,
    cancel: Option<Box<dyn FnOnce() + Send>>,
}

impl Judging {
    /// `cancel` aborts the judging (running jails killed); called at most once.
    pub fn new(events: mpsc::Receiver<Event>, cancel: Box<dyn FnOnce() + Send>) -> Judging {
        Judging {
            events,
            cancel: Some(cancel),
        }
    }

    /// Aborts the judging. Its events may still arrive; queue mode no longer reads them.
    pub fn cancel(&mut self) {
        if let Some(c) = self.cancel.take() {
            c();
        }
    }
}

/// The judge, as queue mode uses it.
pub trait Judger: Send + Sync + 'static {
    /// The languages judged here, for the queues to declare and consume.
    fn languages(&self) -> Vec<String>;
    /// Whether `language` is judged here now (checked per delivery: the set may shrink).
    fn serves(&self, language: &str) -> bool;
    /// Submissions judged at once: the flow-control window is this plus `prefetch`.
    fn capacity(&self) -> usize;
    /// Starts judging `request` under `id`, anew even if `id` was judged before (a redelivered
    /// message is judged again).
    fn judge(
        &self,
        id: String,
        request: SubmissionRequest,
    ) -> BoxFuture<'_, Result<Judging, Refusal>>;
}
