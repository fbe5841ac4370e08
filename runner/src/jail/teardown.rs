//! Deferred teardown: releasing what a finished step still holds when the release waits for an
//! RCU grace period, on threads of its own, so that no request and no slot waits for it
//! (docs/jail.md, "Teardown off the request path").
//!
//! Unmounting anything ends in the kernel's `namespace_unlock`, which calls
//! `synchronize_rcu_expedited` before it frees the unmounted mounts: the caller sleeps for a
//! grace period, ≈0.3–4 ms on a 2-CPU VM. Two such waits used to sit on every step's path: the
//! jail's init dropping the last reference to its mount namespace at exit (the daemon waits for
//! that exit), and the daemon unmounting the run directory's tmpfs (on an async worker). The
//! daemon now holds a reference to the jail's mount namespace while init exits and drops it
//! here, and unmounts run directories here. Concurrent callers share one grace period, so a few
//! threads keep up with any step rate a host reaches.
//!
//! On a hybrid host a slot's v1 memory group is reused run after run, and what a run wrote in
//! its tmpfs stays charged to it until released: the slot's [`Fence`] counts its releases in
//! flight, and the slot's next step waits for none before it sets its limits (`Jail::spawn`,
//! step 2). On a pure v2 host every step has a memory cgroup of its own and nothing waits.
//!
//! Owns: [`Teardown`] (its threads and queue), [`Release`] (what can be released, and how:
//! dropping one releases it), [`Held`] and [`Fence`]. Must not: decide what to hold
//! (`Jail::spawn` and `RunDir` do), or leave anything behind: a release that cannot be queued (queue full, threads
//! gone) happens at once, on the caller's thread, and the threads finish the queue before they
//! end (when the jail and the last run directory are dropped).

use std::fs;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use super::cpath;
use crate::sys;

/// Threads that release; each sleeps through the grace periods of its releases, and concurrent
/// releases share grace periods.
const THREADS: usize = 4;

/// Releases that may wait in the queue; more happen on the caller's thread (as before this
/// module existed), so a backlog cannot grow without bound.
const QUEUE: usize = 256;

/// Something a finished step still holds. Dropping it releases it.
#[derive(Debug)]
pub(super) enum Release {
    /// A jail's mount namespace, held (as an nsfs descriptor) so that init's exit did not tear
    /// it down; closing the descriptor does.
    MountNs(#[expect(dead_code, reason = "held only to be closed")] OwnedFd),
    /// A run directory: its tmpfs is unmounted (lazily), then the empty mount point removed.
    RunDir(PathBuf),
}

impl Drop for Release {
    fn drop(&mut self) {
        match self {
            // The descriptor closes when the field is dropped, right after this.
            Release::MountNs(_) => {}
            Release::RunDir(host) => unmount_run_dir(host),
        }
    }
}

/// The tmpfs goes with everything in it, so nothing the program left in it (links, FIFOs,
/// directories of mode 000) is ever walked. Lazily: a descriptor the daemon may still hold must
/// not make the unmount fail.
fn unmount_run_dir(host: &std::path::Path) {
    if let Ok(p) = cpath(host)
        && let Err(err) = sys::umount2(&p, libc::MNT_DETACH)
    {
        tracing::error!(err = ?err.into_io(), dir = %host.display(), "failed to unmount run directory");
    }
    // Now an empty mount point. Should the unmount have failed, remove_dir_all does not follow
    // symlinks (CVE-2022-21658 fixed it); root may remove whatever modes the program set.
    if let Err(err) = fs::remove_dir_all(host) {
        tracing::error!(?err, dir = %host.display(), "failed to remove run directory");
    }
}

/// The release threads and their queue. Dropped with the jail and the last run directory
/// (each holds an `Arc`): the threads then finish the queue and are joined.
#[derive(Debug)]
pub(super) struct Teardown {
    tx: Option<mpsc::SyncSender<Queued>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Teardown {
    /// Starts the threads. Without them (a thread cannot be made) every release happens on its
    /// caller's thread.
    pub(super) fn start() -> Arc<Teardown> {
        let (tx, rx) = mpsc::sync_channel::<Queued>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let threads: Vec<_> = (0..THREADS)
            .filter_map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("runner-teardown-{i}"))
                    .spawn(move || release_loop(&rx))
                    .ok()
            })
            .collect();
        let tx = (!threads.is_empty()).then_some(tx);
        Arc::new(Teardown { tx, threads })
    }

    /// Releases `what` on a teardown thread, or here if none can take it now; `fence` (the
    /// slot's, on a hybrid host) counts it until it is released.
    pub(super) fn release(&self, what: Release, fence: Option<&Arc<Fence>>) {
        let queued = Queued {
            _what: what,
            _pending: fence.map(|f| f.enter()),
        };
        if let Some(tx) = &self.tx
            && let Err(e) = tx.try_send(queued)
        {
            drop(match e {
                mpsc::TrySendError::Full(q) | mpsc::TrySendError::Disconnected(q) => q,
            });
        }
    }

    /// Holds `what` until the returned guard is dropped, then releases it as `release` does.
    pub(super) fn hold(self: &Arc<Self>, what: Release, fence: Option<&Arc<Fence>>) -> Held {
        Held {
            what: Some(what),
            fence: fence.cloned(),
            teardown: self.clone(),
        }
    }
}

/// A release in the queue. Fields drop in order: the release, then the fence's count.
#[derive(Debug)]
struct Queued {
    _what: Release,
    _pending: Option<Pending>,
}

fn release_loop(rx: &Mutex<mpsc::Receiver<Queued>>) {
    loop {
        // The lock is held only while waiting for the next release, not while releasing it.
        let next = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match next {
            Ok(what) => drop(what),
            Err(mpsc::RecvError) => return,
        }
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        // Closing the queue ends each thread once the queue is empty.
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A [`Release`] that happens on a teardown thread when the guard is dropped.
#[derive(Debug)]
pub(super) struct Held {
    what: Option<Release>,
    fence: Option<Arc<Fence>>,
    teardown: Arc<Teardown>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(what) = self.what.take() {
            self.teardown.release(what, self.fence.as_ref());
        }
    }
}

/// The releases in flight of one slot's steps (hybrid hosts), which the slot's next step waits
/// for.
#[derive(Debug, Default)]
pub(super) struct Fence {
    pending: AtomicUsize,
    released: tokio::sync::Notify,
}

/// One release counted by a [`Fence`] until dropped.
#[derive(Debug)]
struct Pending(Arc<Fence>);

impl Fence {
    fn enter(self: &Arc<Self>) -> Pending {
        self.pending.fetch_add(1, Ordering::SeqCst);
        Pending(self.clone())
    }

    /// Returns once no release counted by this fence is in flight.
    pub(super) async fn passed(&self) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a release finishing in between still wakes us.
            released.as_mut().enable();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            released.await;
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.0.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.released.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The queue and its threads, with a socket standing in for
    //! the held descriptor (closed ⇔ its peer reads EOF). Run directories need root:
    //! tests/tests/jail_steps.rs.
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    /// A descriptor to hold, and its peer, which reads EOF once the descriptor is closed.
    fn held_and_peer() -> (OwnedFd, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (OwnedFd::from(a), b)
    }

    fn closed(mut peer: &UnixStream) -> bool {
        peer.set_nonblocking(true).unwrap();
        let r = peer.read(&mut [0u8; 1]);
        peer.set_nonblocking(false).unwrap();
        matches!(r, Ok(0))
    }

    #[test]
    fn test_held_descriptor_is_closed_after_the_guard_and_before_teardown_ends() {
        let t = Teardown::start();
        assert_eq!(t.threads.len(), THREADS);
        let (fd, peer) = held_and_peer();
        let held = t.hold(Release::MountNs(fd), None);
        assert!(!closed(&peer), "closed while held");
        drop(held);
        // A teardown thread closes it: the blocking read ends with EOF.
        assert_eq!((&peer).read(&mut [0u8; 1]).unwrap(), 0);
        // Queued and not yet released when the last Arc goes: the threads finish the queue.
        let peers: Vec<_> = (0..64)
            .map(|_| {
                let (fd, peer) = held_and_peer();
                t.release(Release::MountNs(fd), None);
                peer
            })
            .collect();
        drop(t);
        assert!(peers.iter().all(closed), "a queued release was lost");
    }

    #[test]
    fn test_without_threads_or_room_the_release_happens_at_once() {
        let t = Teardown {
            tx: None,
            threads: Vec::new(),
        };
        let (fd, peer) = held_and_peer();
        t.release(Release::MountNs(fd), None);
        assert!(closed(&peer));
        // A queue nobody reads, with no room: the release happens on the caller's thread too.
        let (tx, _rx) = mpsc::sync_channel(0);
        let t = Teardown {
            tx: Some(tx),
            threads: Vec::new(),
        };
        let (fd, peer) = held_and_peer();
        t.release(Release::MountNs(fd), None);
        assert!(closed(&peer));
    }

    #[tokio::test]
    async fn test_a_fence_passes_once_its_releases_are_done() {
        let t = Teardown::start();
        let fence = Arc::new(Fence::default());
        // Nothing in flight: passes at once.
        fence.passed().await;
        let (fd, peer) = held_and_peer();
        let held = t.hold(Release::MountNs(fd), Some(&fence));
        // Held, not yet handed over: the step is not over, nothing is in flight for the fence.
        fence.passed().await;
        // Handed over: in flight until released, and released before the fence passes.
        let (tx, rx) = mpsc::sync_channel(1);
        drop(held);
        let f = fence.clone();
        let waiter = tokio::spawn(async move {
            f.passed().await;
            tx.send(closed(&peer)).unwrap();
        });
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the fence passed within 5 s")
            .unwrap();
        assert!(rx.recv().unwrap(), "the fence passed before the release");
        assert_eq!(fence.pending.load(Ordering::SeqCst), 0);
    }
}
