//! Execution slots: the identities a job runs under, made once at start-up and reused run after
//! run (one run at a time per slot; the scheduler hands them out).
//!
//! Owns: [`Slot`] (uid, empty network namespace, on hybrid hosts its v1 cgroups and its spawner
//! thread), [`Spawner`] (the thread that runs `clone3` for the slot's jails), and making them
//! ([`make_slots`]). Must not: order a jail's steps (`Jail::spawn` does) or choose which slot a
//! job gets (the scheduler does).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::mpsc;

use super::cgroup::{Cgroups, SlotCgroup};
use super::{JailError, sys_err};
use crate::sys;

/// One execution slot: its own uid and its own empty network namespace, reused run after run
/// (only one run at a time uses a slot).
#[derive(Debug)]
pub struct Slot {
    pub index: usize,
    pub uid: u32,
    pub(super) netns: OwnedFd,
    /// Hybrid hosts: the thread that clones this slot's jails from inside its v1 groups.
    /// Declared before `cgroup` so it is joined before the groups are removed.
    spawner: Option<Spawner>,
    pub(super) cgroup: Option<SlotCgroup>,
}

/// Work for the thread that clones a slot's jails.
pub(super) type SpawnTask = Box<dyn FnOnce() + Send>;

impl Slot {
    /// Runs `task` where this slot's jails are cloned: on its spawner thread on hybrid hosts
    /// (the clone inherits the thread's v1 groups), else right here on the calling thread.
    pub(super) fn run_clone(&self, task: SpawnTask) -> Result<(), JailError> {
        let Some(spawner) = &self.spawner else {
            task();
            return Ok(());
        };
        if spawner.run(task) {
            Ok(())
        } else {
            Err(JailError::Syscall {
                call: "clone3",
                source: io::Error::other("slot thread is gone"),
            })
        }
    }
}

/// Creates `n` slots, each with an empty network namespace made once, here: creating a
/// namespace per run costs ≈0.7 ms plus asynchronous teardown. Slot `i` runs as
/// `uid_base + i`; on hybrid hosts it also gets its v1 groups and spawner thread.
pub(super) fn make_slots(
    cgroups: &Cgroups,
    uid_base: u32,
    n: usize,
) -> Result<Vec<Slot>, JailError> {
    (0..n)
        .map(|index| {
            let netns = new_netns()?;
            let cgroup = cgroups.create_slot(index)?;
            let spawner = cgroup
                .as_ref()
                .map(|cg| Spawner::start(index, cg))
                .transpose()?;
            Ok(Slot {
                index,
                uid: uid_base + index as u32,
                netns,
                spawner,
                cgroup,
            })
        })
        .collect()
}

/// A new, empty network namespace (only a loopback interface, down), held by its descriptor.
fn new_netns() -> Result<OwnedFd, JailError> {
    // unshare(CLONE_NEWNET) changes only the calling thread, so do it in a short-lived thread
    // and keep the namespace alive through its descriptor.
    std::thread::spawn(|| -> Result<OwnedFd, sys::Errno> {
        sys::unshare(libc::CLONE_NEWNET)?;
        sys::open_owned(c"/proc/thread-self/ns/net", libc::O_RDONLY)
    })
    .join()
    .map_err(|_| JailError::Syscall {
        call: "unshare(CLONE_NEWNET)",
        source: io::Error::other("thread panicked"),
    })?
    .map_err(sys_err("unshare(CLONE_NEWNET)"))
}

/// A thread that runs `clone3` for one slot (see `cgroup::SlotCgroup` for why).
#[derive(Debug)]
struct Spawner {
    tx: Option<mpsc::Sender<SpawnTask>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spawner {
    fn start(index: usize, slot_cg: &SlotCgroup) -> Result<Spawner, JailError> {
        let (tx, rx) = mpsc::channel::<SpawnTask>();
        let (ready_tx, ready_rx) = mpsc::channel();
        // First thing on the new thread: move it into the slot's v1 groups, once.
        let enter = slot_cg.entry();
        let thread = std::thread::Builder::new()
            .name(format!("runner-slot-{index}"))
            .spawn(move || {
                let entered = enter().map_err(JailError::from);
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if ok {
                    for task in rx {
                        task();
                    }
                }
            })
            .map_err(|source| JailError::Syscall {
                call: "spawn slot thread",
                source,
            })?;
        ready_rx.recv().map_err(|_| JailError::Syscall {
            call: "spawn slot thread",
            source: io::Error::other("thread died"),
        })??;
        Ok(Spawner {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `task` on the spawner thread.
    fn run(&self, task: SpawnTask) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(task).is_ok())
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
