//! Watching a running job and telling how it ended: docs/jail.md steps 31–34.
//!
//! Owns: the watcher ([`watch`]: init's exit, the CPU budget, the wall clock, denied syscalls,
//! OOM — the first of them kills the job), reading the job's pipes, reaping init, and the pure
//! rules that turn what was seen into [`Usage`] and an [`End`] ([`usage`], [`decide_end`]).
//! Must not: poll at a fixed tick (every wait is computed or event-driven), or turn an `End` into
//! a Jobe outcome (the scheduler does).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::AsyncReadExt;
use tokio::io::unix::AsyncFd;

use super::End;
use super::cgroup::JobCgroup;
use super::seccomp::Policy;
use crate::job::Usage;
use crate::monitor::{JobEvent, JobWatch};
use crate::sys;

/// With the eBPF monitor, how much later than the budget the cpu.stat check looks.
const EBPF_BACKSTOP: Duration = Duration::from_millis(50);

/// The most a pipe read asks for at once.
const READ_CHUNK: usize = 64 * 1024;

/// How long a killed job may take to disappear before its init is killed directly.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// What the watcher needs of one running job.
#[derive(Debug)]
pub(super) struct Watched<'a> {
    pub(super) cg: &'a JobCgroup,
    /// Init's pidfd: readable once init has exited.
    pub(super) pidfd: &'a OwnedFd,
    /// Names a denied syscall by its number.
    pub(super) policy: &'a Policy,
    pub(super) cpu_budget: Duration,
    /// When the wall-clock limit passes.
    pub(super) wall_deadline: Instant,
    /// CPUs of the host: the job cannot use its budget faster than this many seconds per second.
    pub(super) ncpu: u32,
    /// The job's eBPF monitor events (`None` in the no-eBPF mode).
    pub(super) events: Option<&'a mut JobWatch>,
    /// Kill the job once this reads `true` (judge mode's cancel; `StepExtras::cancel`).
    pub(super) cancel: Option<tokio::sync::watch::Receiver<bool>>,
    /// Kill the job once this reads `true`: its stdout passed the cap
    /// (`StepExtras::kill_on_stdout_overflow`).
    pub(super) overflow: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Why the daemon (or the kernel's OOM killer) ended the job, and when `cgroup.kill` was
/// written; both `None` if the job ended by itself.
#[derive(Debug, Default)]
pub(super) struct Killed {
    pub(super) reason: Option<End>,
    pub(super) at: Option<SystemTime>,
}

impl Killed {
    fn kill(&mut self, cg: &JobCgroup, reason: End) {
        cg.kill();
        self.reason = Some(reason);
        self.at = Some(SystemTime::now());
    }
}

/// Step 31: waits for the job's init to exit, killing the job when a limit is reached first.
/// `listener` is the seccomp user-notification descriptor (`None` if the program never got as
/// far as installing the filter).
pub(super) async fn watch(mut w: Watched<'_>, listener: Option<OwnedFd>) -> Killed {
    let mut killed = Killed::default();
    let exited = match sys::async_fd(w.pidfd.as_fd()) {
        Ok(fd) => fd,
        Err(err) => {
            tracing::error!(?err, "cannot watch pidfd; killing job");
            w.cg.kill();
            return killed;
        }
    };
    let mut notify = listener
        .as_ref()
        .and_then(|fd| sys::async_fd(fd.as_fd()).ok());
    // Hybrid hosts without the eBPF monitor: the v1 OOM eventfd. It fires when the OOM *starts*,
    // before the kernel picks a victim; with the monitor the verdict waits for the victim
    // (`mark_victim`), which names the process (and `oom_kill` backs it up after the exit).
    let oom_fd = if w.events.is_some() {
        None
    } else {
        w.cg.v1_oom_eventfd().ok().flatten()
    };
    let oom = oom_fd
        .as_ref()
        .and_then(|fd| sys::async_fd(fd.as_fd()).ok());
    // Pure v2 hosts without the monitor: `memory.events` changes at an OOM kill. The kernel
    // kills one process (no `memory.oom.group`: docs/jail.md, "Cgroups"); the rest go here.
    let v2_events = if w.events.is_some() {
        None
    } else {
        w.cg.v2_memory_events()
    };
    let v2_oom = v2_events
        .as_ref()
        .and_then(|f| sys::async_fd_priority(f.as_fd()).ok());
    let wall_deadline = tokio::time::Instant::from_std(w.wall_deadline);
    loop {
        let used = w.cg.cpu_usage();
        if killed.reason.is_none() && used >= w.cpu_budget {
            killed.kill(w.cg, End::CpuTime);
        }
        let backstop = w.events.is_some();
        let cpu_check = cpu_check_after(w.cpu_budget.saturating_sub(used), w.ncpu, backstop);
        let running = killed.reason.is_none();
        tokio::select! {
            r = exited.readable() => {
                if let Ok(mut g) = r { g.retain_ready(); }
                return killed;
            }
            _ = tokio::time::sleep_until(wall_deadline), if running => {
                killed.kill(w.cg, End::WallTime);
            }
            // Belt and braces: if init has not gone a second after a kill (cgroup.kill failed?),
            // kill init itself; its death takes the whole pid namespace with it.
            _ = tokio::time::sleep(KILL_GRACE), if !running => {
                tracing::error!("job survived cgroup.kill; killing its init");
                let _ = sys::pidfd_send_signal(w.pidfd.as_raw_fd(), libc::SIGKILL);
            }
            _ = tokio::time::sleep(cpu_check), if running => {}
            r = readable(&notify), if running => match denied_syscall(r, &notify) {
                Some(nr) => killed.kill(w.cg, End::Syscall(w.policy.syscall_name(nr))),
                None => notify = None,
            },
            ev = next_event(&mut w.events), if running => match ev {
                JobEvent::Oom { .. } => killed.kill(w.cg, End::Memory),
                // The eBPF side decided the budget (docs/ebpf.md, "CPU budget"): from the
                // kernel's own runtime deltas of the job's tasks, which the kernel adds to
                // cpu.stat right after, or from its sample's estimate, past a guard, between two
                // of them ("Between ticks"); it has already killed the task it caught running
                // and kills every other it samples. The rest go now, not at cpu.stat's next
                // charge (up to a scheduler tick later).
                JobEvent::Budget { .. } => killed.kill(w.cg, End::CpuTime),
                JobEvent::Exit { .. } | JobEvent::NetDenied => {} // next_event skips these
            },
            r = readable(&oom), if running => {
                if r {
                    killed.kill(w.cg, End::Memory);
                }
            }
            () = changed(&v2_oom), if running => {
                if v2_events.as_ref().is_some_and(|f| super::cgroup::oom_kills_in(f) > 0) {
                    killed.kill(w.cg, End::Memory);
                }
            }
            () = cancelled(&mut w.cancel, true), if running => {
                killed.kill(w.cg, End::Signaled(libc::SIGKILL));
            }
            () = cancelled(&mut w.overflow, false), if running => {
                killed.kill(w.cg, End::Signaled(libc::SIGKILL));
            }
        }
    }
}

/// How long to sleep before looking at cpu.stat again: the least wall time in which the job
/// could use what is `left` of its budget with every CPU busy (at least 1 ms). Converges
/// geometrically; no fixed tick. With the eBPF monitor (`backstop`) its budget event is the
/// verdict and this check only backs it up (a lost ring-buffer record), so it looks later than
/// the event can come.
fn cpu_check_after(left: Duration, ncpu: u32, backstop: bool) -> Duration {
    let check = (left / ncpu.max(1)).max(Duration::from_millis(1));
    if backstop {
        check + EBPF_BACKSTOP
    } else {
        check
    }
}

/// The syscall number of a denied call, if the seccomp listener became readable because of one.
/// The listener is also readable (POLLHUP) once no task uses the filter any more; only a
/// successful NOTIF_RECV is a denied syscall.
fn denied_syscall(readable: bool, notify: &Option<AsyncFd<BorrowedFd<'_>>>) -> Option<i32> {
    let n = notify.as_ref().filter(|_| readable)?;
    sys::seccomp_notif_recv(n.get_ref().as_raw_fd())
        .ok()
        .map(|(_, nr)| nr)
}

/// The next event of a job watched by the eBPF monitor; pending forever without one.
/// Only the events that decide a verdict (budget, OOM) wake the watcher: exits and denied
/// connects are recorded in the job's stats by `JobWatch::next` and need no cpu.stat read.
async fn next_event(events: &mut Option<&mut JobWatch>) -> JobEvent {
    match events {
        Some(w) => loop {
            let ev = w.next().await;
            if matches!(ev, JobEvent::Budget { .. } | JobEvent::Oom { .. }) {
                return ev;
            }
        },
        None => std::future::pending().await,
    }
}

/// Resolves once the flag reads `true`, or, with `gone_too`, once its sender is dropped (whoever
/// could cancel the step is gone: a judge task that was aborted); pending forever without a flag.
async fn cancelled(flag: &mut Option<tokio::sync::watch::Receiver<bool>>, gone_too: bool) {
    match flag {
        Some(rx) => {
            if rx.wait_for(|c| *c).await.is_err() {
                *flag = None;
                if !gone_too {
                    std::future::pending::<()>().await;
                }
            }
        }
        None => std::future::pending().await,
    }
}

/// Resolves when a cgroup v2 file registered for poll priority changed; pending forever
/// without one (or if polling it fails).
async fn changed(fd: &Option<AsyncFd<BorrowedFd<'_>>>) {
    match fd {
        Some(fd) => match fd.ready(tokio::io::Interest::PRIORITY).await {
            Ok(mut g) => g.clear_ready(),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

async fn readable(fd: &Option<AsyncFd<BorrowedFd<'_>>>) -> bool {
    match fd {
        Some(fd) => match fd.readable().await {
            Ok(mut g) => {
                g.clear_ready();
                true
            }
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Reaps the jail's init (bounded: it has exited or been killed by now).
pub(super) async fn reap(pidfd: &OwnedFd) {
    for _ in 0..200 {
        match sys::reap_pidfd(pidfd.as_raw_fd()) {
            Ok(true) | Err(_) => return,
            Ok(false) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    tracing::error!("jail init was not reaped within 200 ms");
}

/// Reads a pipe to EOF.
pub(super) async fn read_all(fd: OwnedFd) -> io::Result<Vec<u8>> {
    let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
    let mut buf = Vec::new();
    rx.read_to_end(&mut buf).await?;
    Ok(buf)
}

/// The program's wait status from the status pipe; `None` if init died without writing it.
pub(super) async fn read_status(fd: OwnedFd) -> Option<i32> {
    let b = read_all(fd).await.ok()?;
    let b: [u8; 4] = b.get(..4)?.try_into().ok()?;
    Some(i32::from_ne_bytes(b))
}

/// What [`read_capped`] kept of a pipe, and whether it dropped anything beyond the cap.
#[derive(Debug, Default)]
pub(super) struct Captured {
    pub(super) bytes: Vec<u8>,
    /// More than `cap` bytes arrived (judge mode's output limit, OLE).
    pub(super) dropped: bool,
}

/// Reads a pipe to EOF, keeping the first `cap` bytes and discarding the rest (as Jobe's
/// runguard: output beyond the limit is silently dropped while the program keeps running), and
/// says whether it dropped any.
pub(super) async fn read_capped(fd: OwnedFd, cap: u64) -> Captured {
    read_capped_flagged(fd, cap, None).await
}

/// [`read_capped`]; with `overflow`, the first byte beyond `cap` also sets it to `true` (the
/// watcher then kills the job) and the rest is still read and dropped until EOF.
pub(super) async fn read_capped_flagged(
    fd: OwnedFd,
    cap: u64,
    overflow: Option<tokio::sync::watch::Sender<bool>>,
) -> Captured {
    let mut got = Captured::default();
    let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return got;
    };
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    // Read straight into the result while it has room (no zeroed scratch buffer per pipe: the
    // daemon's pages are shared copy-on-write with the jail's init while the step runs, so
    // every page written costs a copy; docs/performance.md); past the cap, into a small
    // buffer that is thrown away.
    let mut discard = Vec::new();
    loop {
        let room = cap.saturating_sub(got.bytes.len()).min(READ_CHUNK);
        let read = if room > 0 {
            got.bytes.reserve(room);
            (&mut rx).take(room as u64).read_buf(&mut got.bytes).await
        } else {
            discard.clear();
            discard.reserve(READ_CHUNK);
            rx.read_buf(&mut discard).await
        };
        if !matches!(read, Ok(n) if n > 0) {
            return got;
        }
        if room == 0 && !got.dropped {
            got.dropped = true;
            if let Some(o) = &overflow {
                o.send_replace(true);
            }
        }
    }
}

/// What the job's cgroup counted, read after init is gone and before the cgroup is removed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Counted {
    pub(super) cpu: Duration,
    pub(super) oom_kills: u64,
    pub(super) peak_memory: u64,
}

impl Counted {
    pub(super) fn read(cg: &JobCgroup) -> Counted {
        Counted {
            cpu: cg.cpu_usage(),
            oom_kills: cg.oom_kills(),
            peak_memory: cg.peak_memory(),
        }
    }
}

/// The step's resource usage: the counters, the wall time, the program's wait `status` and
/// when the daemon killed it.
pub(super) fn usage(
    counted: &Counted,
    wall: Duration,
    status: Option<i32>,
    killed_at: Option<SystemTime>,
) -> Usage {
    let mut usage = Usage {
        cpu_secs: counted.cpu.as_secs_f64(),
        wall_secs: wall.as_secs_f64(),
        peak_memory_bytes: counted.peak_memory,
        exit_code: None,
        signal: None,
        killed_at_unix: killed_at
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64()),
    };
    if let Some(st) = status {
        if libc::WIFEXITED(st) {
            usage.exit_code = Some(libc::WEXITSTATUS(st));
        } else if libc::WIFSIGNALED(st) {
            usage.signal = Some(libc::WTERMSIG(st));
        }
    }
    usage
}

/// Step 34, how the step ended, in this order (docs/jail.md, "Verdicts"): the reason the
/// watcher recorded or an exec failure; an OOM kill the cgroup counted; the CPU budget used up
/// and the program killed by SIGKILL or SIGXCPU (the `RLIMIT_CPU` backstop, or our timer racing
/// the exit), or the eBPF monitor's budget event came (it killed the task it caught running)
/// and the program died of SIGKILL or took init with it; the program's own exit status or
/// signal; init gone without a status: killed.
pub(super) fn decide_end(
    reason: Option<End>,
    counted: &Counted,
    cpu_budget: Duration,
    usage: &Usage,
    ebpf_budget_event: bool,
) -> End {
    let sigkill_or_gone = matches!(
        (usage.exit_code, usage.signal),
        (None, Some(libc::SIGKILL) | None)
    );
    match reason {
        Some(e) => e,
        None if counted.oom_kills > 0 => End::Memory,
        None if counted.cpu >= cpu_budget
            && matches!(usage.signal, Some(libc::SIGKILL | libc::SIGXCPU)) =>
        {
            End::CpuTime
        }
        // The event can come before `cpu.stat` shows the budget, and the program's death can
        // end the watch before the event is read (a busy machine): the kill is the budget's.
        None if ebpf_budget_event && sigkill_or_gone => End::CpuTime,
        None => match (usage.exit_code, usage.signal) {
            (Some(c), _) => End::Exited(c),
            (_, Some(s)) => End::Signaled(s),
            // Init died without reporting: it was killed from outside.
            _ => End::Signaled(libc::SIGKILL),
        },
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The pure rules (the watcher on real jobs:
    //! tests/tests/jail_steps.rs, verdicts.rs).
    use super::*;

    const BUDGET: Duration = Duration::from_secs(1);

    fn exited(code: i32) -> i32 {
        code << 8
    }

    fn decide(reason: Option<End>, cpu_ms: u64, oom_kills: u64, status: Option<i32>) -> End {
        let counted = Counted {
            cpu: Duration::from_millis(cpu_ms),
            oom_kills,
            peak_memory: 0,
        };
        let u = usage(&counted, Duration::ZERO, status, None);
        decide_end(reason, &counted, BUDGET, &u, false)
    }

    /// Issue 15's flake: a run killed by the eBPF budget (SIGKILL) whose watch ended at the
    /// program's death, before the event was read and with `cpu.stat` a little short, was
    /// answered "Killed" (outcome 12) instead of TLE.
    #[test]
    fn issue_15_ebpf_budget_event_makes_a_sigkill_cpu_time() {
        let counted = Counted {
            cpu: Duration::from_millis(990),
            oom_kills: 0,
            peak_memory: 0,
        };
        for status in [Some(libc::SIGKILL), None] {
            let u = usage(&counted, Duration::ZERO, status, None);
            assert_eq!(decide_end(None, &counted, BUDGET, &u, true), End::CpuTime);
            assert_eq!(
                decide_end(None, &counted, BUDGET, &u, false),
                End::Signaled(libc::SIGKILL)
            );
        }
        // A program that exited by itself (the task killed was a child of it) keeps its exit.
        let u = usage(&counted, Duration::ZERO, Some(exited(0)), None);
        assert_eq!(decide_end(None, &counted, BUDGET, &u, true), End::Exited(0));
    }

    #[test]
    fn test_usage_from_wait_status() {
        let counted = Counted {
            cpu: Duration::from_millis(1500),
            oom_kills: 0,
            peak_memory: 4096,
        };
        let at = std::time::UNIX_EPOCH + Duration::from_secs(100);
        let u = usage(&counted, Duration::from_secs(2), Some(exited(3)), Some(at));
        assert_eq!((u.exit_code, u.signal), (Some(3), None));
        assert_eq!((u.cpu_secs, u.wall_secs), (1.5, 2.0));
        assert_eq!(u.peak_memory_bytes, 4096);
        assert_eq!(u.killed_at_unix, Some(100.0));
        let u = usage(&counted, Duration::ZERO, Some(libc::SIGSEGV), None);
        assert_eq!((u.exit_code, u.signal), (None, Some(libc::SIGSEGV)));
        let u = usage(&counted, Duration::ZERO, None, None);
        assert_eq!(
            (u.exit_code, u.signal, u.killed_at_unix),
            (None, None, None)
        );
    }

    #[test]
    fn test_recorded_reason_wins() {
        let got = decide(Some(End::WallTime), 2000, 1, Some(libc::SIGKILL));
        assert_eq!(got, End::WallTime);
        let got = decide(Some(End::ExecFailed(libc::ENOENT)), 0, 0, Some(exited(127)));
        assert_eq!(got, End::ExecFailed(libc::ENOENT));
    }

    #[test]
    fn test_counted_oom_kill_is_memory() {
        assert_eq!(decide(None, 0, 1, Some(libc::SIGKILL)), End::Memory);
        // Even if the program exited normally after a child of it was OOM-killed.
        assert_eq!(decide(None, 0, 1, Some(exited(0))), End::Memory);
    }

    #[test]
    fn test_cpu_backstop_kill_is_cpu_time() {
        for sig in [libc::SIGKILL, libc::SIGXCPU] {
            assert_eq!(decide(None, 1000, 0, Some(sig)), End::CpuTime);
        }
        // Below the budget, the same signal is the program's own.
        assert_eq!(
            decide(None, 999, 0, Some(libc::SIGKILL)),
            End::Signaled(libc::SIGKILL)
        );
        // At the budget but exited by itself: the exit counts.
        assert_eq!(decide(None, 1000, 0, Some(exited(0))), End::Exited(0));
    }

    #[test]
    fn test_exit_signal_or_killed_init() {
        assert_eq!(decide(None, 0, 0, Some(exited(2))), End::Exited(2));
        assert_eq!(
            decide(None, 0, 0, Some(libc::SIGSEGV)),
            End::Signaled(libc::SIGSEGV)
        );
        assert_eq!(decide(None, 0, 0, None), End::Signaled(libc::SIGKILL));
    }

    /// What `read_capped` keeps of `data` written into a pipe, with `cap`.
    fn capped(data: Vec<u8>, cap: u64) -> Captured {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
        let (r, w) = sys::pipe().expect("pipe");
        let writer = std::thread::spawn(move || {
            let mut w = std::fs::File::from(w);
            std::io::Write::write_all(&mut w, &data).expect("write");
        });
        let out = rt.block_on(read_capped(r, cap));
        writer.join().expect("writer");
        out
    }

    #[test]
    fn test_read_capped_keeps_the_first_cap_bytes_and_drains_the_rest() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let kept = |data: &[u8], cap: u64| {
            let c = capped(data.to_vec(), cap);
            (c.bytes, c.dropped)
        };
        assert_eq!(kept(&data, 1 << 20), (data.clone(), false));
        assert_eq!(kept(&data, 300_000), (data.clone(), false));
        assert_eq!(kept(&data, 100_001), (data[..100_001].to_vec(), true));
        assert_eq!(kept(&data, 0), (Vec::new(), true));
        assert_eq!(kept(b"hi\n", 2), (b"hi".to_vec(), true));
        assert_eq!(kept(b"", 10), (Vec::new(), false));
    }

    #[test]
    fn test_cpu_check_interval() {
        let ms = Duration::from_millis;
        // All CPUs busy: the budget left, shared by the CPUs.
        assert_eq!(cpu_check_after(ms(800), 4, false), ms(200));
        // Never a busy loop.
        assert_eq!(cpu_check_after(Duration::ZERO, 4, false), ms(1));
        assert_eq!(cpu_check_after(ms(800), 0, false), ms(800));
        // Behind the eBPF budget event.
        assert_eq!(cpu_check_after(ms(800), 4, true), ms(250));
    }
}
