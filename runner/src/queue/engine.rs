//! The judge engine ([`judge::Judge`](crate::judge::Judge)) as queue mode's [`Judger`]: every
//! delivery is submitted as [`SubmitMode::Redelivered`] (a finished submission with the same id
//! is judged again, a running one is not started twice), and its events are those of the
//! engine's subscription, read through the daemon's drain (queue mode stops as `on_stop` says,
//! not when the HTTP side drains).

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::judge::{Event, Judge, SubmissionRequest, SubmitError, SubmitMode};

use super::judger::{BoxFuture, Judger, Judging, Refusal};

/// Events buffered between the engine and the publisher of one delivery.
const EVENT_BUFFER: usize = 64;

/// The engine, with the languages the daemon serves (the queues queue mode consumes).
#[derive(Clone)]
pub struct EngineJudger {
    judge: Judge,
    languages: Arc<Vec<String>>,
}

impl EngineJudger {
    pub fn new(judge: Judge, languages: Vec<String>) -> EngineJudger {
        EngineJudger {
            judge,
            languages: Arc::new(languages),
        }
    }
}

impl Judger for EngineJudger {
    fn languages(&self) -> Vec<String> {
        self.languages.as_ref().clone()
    }

    fn serves(&self, language: &str) -> bool {
        self.languages.iter().any(|l| l == language)
    }

    fn capacity(&self) -> usize {
        self.judge.settings().concurrent
    }

    fn judge(
        &self,
        id: String,
        mut request: SubmissionRequest,
    ) -> BoxFuture<'_, Result<Judging, Refusal>> {
        Box::pin(async move {
            request.id = Some(id.clone());
            match self.judge.submit(request, SubmitMode::Redelivered).await {
                Ok(_) => {}
                Err(SubmitError::UnknownLanguage(l)) => return Err(Refusal::UnknownLanguage(l)),
                Err(e @ (SubmitError::UnknownTestset(_) | SubmitError::Invalid { .. })) => {
                    return Err(Refusal::Invalid(e.to_string()));
                }
                Err(e @ (SubmitError::Draining | SubmitError::QueueFull(_))) => {
                    return Err(Refusal::Busy(e.to_string()));
                }
                Err(e @ SubmitError::Journal(_)) => return Err(Refusal::Busy(e.to_string())),
            }
            let (tx, rx) = mpsc::channel(EVENT_BUFFER);
            let judge = self.judge.clone();
            let key = id.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = forward(&judge, &key, &tx) => {}
                    // The delivery let go of it (an abort): stop reading.
                    () = tx.closed() => {}
                }
            });
            let judge = self.judge.clone();
            let cancel = Box::new(move || {
                tokio::spawn(async move {
                    let _ = judge.cancel(&id).await;
                });
            });
            Ok(Judging::new(rx, cancel))
        })
    }
}

/// Sends the submission's events to `tx` until `done`. The stream is read through the drain
/// that a SIGTERM begins (the HTTP API's waits and event streams end then, while queue mode
/// finishes or aborts what it holds as `on_stop` says). Should it end without `done` (the engine
/// shut down), a final result is sent as `done` if there is one.
async fn forward(judge: &Judge, id: &str, tx: &mpsc::Sender<Event>) {
    if let Some(sub) = judge.subscribe(id, None).await {
        let mut sub = sub.through_drain();
        while let Some((_, event)) = sub.next().await {
            let done = matches!(event, Event::Done(_));
            if tx.send(event).await.is_err() || done {
                return;
            }
        }
    }
    if let Some(result) = judge.get(id).await
        && result.status.is_final()
    {
        let _ = tx.send(Event::Done(Box::new(result))).await;
    }
}
