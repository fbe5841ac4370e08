//! Settings that may change while the daemon runs (`SIGHUP` reloads the config file).
//!
//! Owns: [`Live`], a module's read handle on the current snapshot of its settings, and
//! [`Publisher`], the one writer that replaces it. A module that takes reloadable settings is
//! constructed with a `Live<ItsSettings>` and calls [`Live::get`] **once per unit of work** (a
//! request, a run, a probe round): the `Arc` it gets is one consistent snapshot, unchanged for as
//! long as it is held, so a run that started before a reload finishes with the settings it
//! started with and the next one sees the new ones. A module that must act on a change (restart a
//! task, rebuild a list) awaits [`Live::changed`]. `reload` (the assembler) holds the publishers:
//! see docs/ARCHITECTURE.md, "Reloading the configuration", for how to plug a new section in.
//!
//! Must not: import anything from the crate (every module may import it).

use std::sync::Arc;

use tokio::sync::watch;

/// A read handle on a section's current settings. Cheap to clone.
#[derive(Debug)]
pub struct Live<T>(watch::Receiver<Arc<T>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T> Live<T> {
    /// Settings that never change (tests, CLI commands, a module wired without reload).
    pub fn fixed(value: T) -> Live<T> {
        let (_, rx) = watch::channel(Arc::new(value));
        Live(rx)
    }

    /// The current snapshot. Take it once per unit of work and keep the `Arc` for its duration.
    pub fn get(&self) -> Arc<T> {
        self.0.borrow().clone()
    }

    /// Waits until a new snapshot is published; `false` once the publisher is gone (then no
    /// change will ever come).
    pub async fn changed(&mut self) -> bool {
        self.0.changed().await.is_ok()
    }
}

/// The writer of one section's settings.
#[derive(Debug)]
pub struct Publisher<T>(watch::Sender<Arc<T>>);

impl<T> Publisher<T> {
    /// A publisher holding `value`, and a first reader.
    pub fn new(value: T) -> (Publisher<T>, Live<T>) {
        let (tx, rx) = watch::channel(Arc::new(value));
        (Publisher(tx), Live(rx))
    }

    /// Replaces the snapshot: readers see `value` from their next [`Live::get`] on, and every
    /// [`Live::changed`] wakes up. Snapshots already taken are not affected.
    pub fn publish(&self, value: T) {
        self.0.send_replace(Arc::new(value));
    }

    /// Another reader.
    pub fn subscribe(&self) -> Live<T> {
        Live(self.0.subscribe())
    }

    /// The snapshot readers see now.
    pub fn current(&self) -> Arc<T> {
        self.0.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Snapshots and change notification.
    use super::*;

    #[test]
    fn test_snapshot_taken_survives_a_publish() {
        let (p, live) = Publisher::new(1);
        let before = live.get();
        p.publish(2);
        assert_eq!(
            *before, 1,
            "a snapshot taken is never changed under its holder"
        );
        assert_eq!(*live.get(), 2);
        assert_eq!(*p.subscribe().get(), 2);
        assert_eq!(*p.current(), 2);
        assert_eq!(*Live::fixed(7).get(), 7);
    }

    #[tokio::test]
    async fn test_changed_wakes_readers_and_ends_with_the_publisher() {
        let (p, mut live) = Publisher::new("a");
        let waiter = tokio::spawn(async move {
            let woke = live.changed().await;
            (woke, *live.get())
        });
        tokio::task::yield_now().await;
        p.publish("b");
        assert_eq!(waiter.await.unwrap(), (true, "b"));
        let mut orphan = p.subscribe();
        drop(p);
        assert!(!orphan.changed().await);
        assert_eq!(*orphan.get(), "b");
        assert!(!Live::fixed(0).changed().await);
    }
}
