//! Execution slots: the identities a job runs under, made once at start-up and reused run after
//! run (one run at a time per slot; the scheduler hands them out).
//!
//! Owns: [`Slot`] (uid, empty network namespace, its spawner thread, on hybrid hosts its v1
//! cgroups), [`Spawner`] (the thread that runs `clone3` for the slot's jails, living in the
//! slot's template mount namespace, which it builds when it starts: docs/jail.md, "Slot
//! template"), and making them ([`make_slots`]). Must not: order a jail's steps (`Jail::spawn`
//! does) or choose which slot a job gets (the scheduler does).

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, mpsc};

use super::cgroup::{self, Cgroups, SlotCgroup};
use super::mount::MountOp;
use super::teardown::Fence;
use super::{JailError, sys_err};
use crate::sys;

/// One execution slot: its own uid and its own empty network namespace, reused run after run
/// (only one run at a time uses a slot).
#[derive(Debug)]
pub struct Slot {
    pub index: usize,
    pub uid: u32,
    pub(super) netns: OwnedFd,
    /// The thread that clones this slot's jails, from inside the slot's template mount namespace
    /// (and on hybrid hosts its v1 groups). Declared before `cgroup` so it is joined before the
    /// groups are removed.
    spawner: Spawner,
    pub(super) cgroup: Option<SlotCgroup>,
    /// On hybrid hosts (the slot's v1 memory group is reused run after run), the releases of
    /// this slot's finished steps in flight, which its next step waits for (`teardown.rs`).
    pub(super) fence: Option<Arc<Fence>>,
}

/// Work for the thread that clones a slot's jails.
pub(super) type SpawnTask = Box<dyn FnOnce() + Send>;

impl Slot {
    /// Runs `task` on this slot's spawner thread: a clone there starts in a copy of the slot's
    /// template mount namespace (and inherits the thread's v1 groups on hybrid hosts).
    pub(super) fn run_clone(&self, task: SpawnTask) -> Result<(), JailError> {
        if self.spawner.run(task) {
            Ok(())
        } else {
            Err(JailError::Syscall {
                call: "clone3",
                source: io::Error::other("slot thread is gone"),
            })
        }
    }

    /// The host thread id of the slot's spawner thread (tests look at its mount namespace).
    pub fn spawner_tid(&self) -> i32 {
        self.spawner.tid
    }
}

/// How every slot's template is built (docs/jail.md, "Slot template"): the operations of
/// `mount::template` on `root`, which then becomes the spawner thread's root.
#[derive(Debug)]
pub(super) struct Template {
    pub(super) root: CString,
    pub(super) ops: Vec<MountOp>,
}

/// Creates `n` slots, each with an empty network namespace made once, here: creating a
/// namespace per run costs ≈0.7 ms plus asynchronous teardown. Slot `i` runs as
/// `uid_base + i`; it gets a spawner thread in a template mount namespace of its own built from
/// `template`, and on hybrid hosts its v1 groups.
pub(super) fn make_slots(
    cgroups: &Cgroups,
    uid_base: u32,
    n: usize,
    template: Template,
) -> Result<Vec<Slot>, JailError> {
    let template = Arc::new(template);
    (0..n)
        .map(|index| {
            let netns = new_netns()?;
            let cgroup = cgroups.create_slot(index)?;
            let spawner = Spawner::start(index, cgroup.as_ref(), template.clone())?;
            Ok(Slot {
                index,
                uid: uid_base + index as u32,
                netns,
                spawner,
                fence: cgroup.as_ref().map(|_| Arc::default()),
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

/// A thread that runs `clone3` for one slot (see `cgroup::SlotCgroup` for why on hybrid hosts,
/// and docs/jail.md, "Slot template", for its mount namespace).
#[derive(Debug)]
struct Spawner {
    tx: Option<mpsc::Sender<SpawnTask>>,
    thread: Option<std::thread::JoinHandle<()>>,
    tid: i32,
}

impl Spawner {
    fn start(
        index: usize,
        slot_cg: Option<&SlotCgroup>,
        template: Arc<Template>,
    ) -> Result<Spawner, JailError> {
        let (tx, rx) = mpsc::channel::<SpawnTask>();
        let (ready_tx, ready_rx) = mpsc::channel();
        // First things on the new thread: move it into the slot's v1 groups, then into the
        // slot's template mount namespace, once.
        let enter = slot_cg.map(SlotCgroup::entry);
        let thread = std::thread::Builder::new()
            .name(format!("runner-slot-{index}"))
            .spawn(move || {
                let entered = enter
                    .map_or(Ok(()), |enter| enter().map_err(JailError::from))
                    .and_then(|()| enter_template(&template))
                    .map(|()| sys::gettid());
                drop(template);
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
        let tid = match ready_rx.recv() {
            Ok(Ok(tid)) => tid,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(JailError::Syscall {
                    call: "spawn slot thread",
                    source: io::Error::other("thread died"),
                });
            }
        };
        Ok(Spawner {
            tx: Some(tx),
            thread: Some(thread),
            tid,
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
            // join returns when the thread's tid is cleared, before the kernel takes it out of
            // the slot's v1 groups; those are removed next (`Slot`'s field order).
            if !cgroup::wait_thread_gone(self.tid) {
                tracing::warn!(tid = self.tid, "slot thread still exiting after 5 s");
            }
        }
    }
}

/// On the slot's spawner thread, once: a mount namespace of the thread's own whose root is the
/// slot template (docs/jail.md, "Slot template", rows T1–T8). Each jail's `clone3(CLONE_NEWNS)`
/// from this thread copies it. Nothing mounted here reaches the host: the namespace is made
/// private first, and the host's tree is detached once the template is the root.
fn enter_template(t: &Template) -> Result<(), JailError> {
    let err = |call: &'static str| sys_err(call);
    // The thread's own root, working directory and mount namespace (CLONE_FS: unshared from the
    // daemon's other threads, which keep theirs).
    sys::unshare(libc::CLONE_FS | libc::CLONE_NEWNS).map_err(err("unshare(CLONE_NEWNS)"))?;
    // No mount event propagates to or from the host.
    sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(err("mount(MS_PRIVATE)"))?;
    // T1–T7: the tree (`mount::template`).
    for op in &t.ops {
        op.apply().map_err(err("build the slot template"))?;
    }
    // T8: the template becomes this thread's root; pivot_root(".", ".") stacks the old root
    // under the new one, and detaching it leaves only the template (pivot_root(2), NOTES).
    sys::chdir(&t.root).map_err(err("chdir(template root)"))?;
    sys::pivot_root(c".", c".").map_err(err("pivot_root"))?;
    sys::umount2(c".", libc::MNT_DETACH).map_err(err("umount2(old root)"))?;
    sys::chdir(c"/").map_err(err("chdir(/)"))?;
    // The root and /dev hold only mount points, links and device nodes: read-only from now on
    // (their superblocks; the device nodes are bind mounts of their own and stay writable).
    sys::mount(
        None,
        c"/",
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        None,
    )
    .map_err(err("remount / read-only"))?;
    sys::mount(
        None,
        c"/dev",
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NOEXEC,
        None,
    )
    .map_err(err("remount /dev read-only"))?;
    Ok(())
}
