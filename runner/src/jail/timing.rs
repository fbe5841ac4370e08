//! What each step of a jail costs: timestamps taken by the daemon, the jail's init and the
//! program at the end of each numbered step of docs/jail.md, for `runner bench-jail`
//! (docs/jail.md, "What each step costs").
//!
//! Owns: [`Mark`] (the timed points, named by the step numbers of docs/jail.md, with the mark each
//! step's cost is measured from) and [`StepClock`] (one jail's timestamps, in a shared mapping, so
//! that a mark taken in any process of the jail reaches the daemon).
//! Must not: change what a jail does. Normal runs have no clock and every mark is a no-op; with a
//! clock a mark is one vDSO clock read and one atomic store (async-signal-safe, no allocation).

use std::sync::Arc;

use crate::enums::enum_with_all;
use crate::sys;

/// Who takes a mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The daemon's task in `Jail::spawn` (and the slot's spawner thread).
    Daemon,
    /// The jail's init (`child::init`).
    Init,
    /// The program before its `execve` (`child::program`).
    Program,
    /// The kernel between two processes (a clone, an exec, an exit).
    Kernel,
}

enum_with_all! {
    /// A timed point of one jail, at the end of the step of docs/jail.md it names. The cost of a
    /// step is the time from [`Mark::from`] to the mark.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Mark {
        Start,
        Policy,
        Cgroup,
        Pipes,
        Ruleset,
        Prepared,
        CloneCall,
        InitStart,
        Started,
        InCgroup,
        Resumed,
        ParentDeath,
        CloseFds,
        MountRun,
        Hostname,
        Netns,
        Readers,
        Session,
        Stdio,
        Chdir,
        Rlimits,
        OomNice,
        Credentials,
        NoNewPrivs,
        Landlock,
        Seccomp,
        Cloexec,
        Execed,
        ProgramExited,
        InitGone,
        SetupReport,
        Listener,
        Status,
        Counted,
        Destroyed,
        Decided,
    }
}

impl Mark {
    /// The step of docs/jail.md this mark ends, and what it covers.
    pub fn step(self) -> (&'static str, &'static str) {
        match self {
            Mark::Start => ("0", "spawn called"),
            Mark::Policy => ("1", "seccomp policy"),
            Mark::Cgroup => ("2", "job cgroup created, limits written, eBPF registration"),
            Mark::Pipes => ("3", "pipes, socketpair, stdin"),
            Mark::Ruleset => ("4", "Landlock ruleset with host rules"),
            Mark::Prepared => ("5", "argv, envp, rlimits, mounts, detached trees, keep_fds"),
            Mark::CloneCall => ("6", "hand-off to the slot's spawner thread"),
            Mark::InitStart => ("6", "clone3 until init runs"),
            Mark::Started => ("7", "write started"),
            Mark::InCgroup => ("8", "check its own cgroup.procs"),
            Mark::Resumed => ("7", "the daemon's task reads started"),
            Mark::ParentDeath => ("9", "PR_SET_PDEATHSIG"),
            Mark::CloseFds => ("10", "close inherited descriptors"),
            Mark::MountRun => ("11", "per-run mounts on the template copy"),
            Mark::Hostname => ("12", "sethostname"),
            Mark::Netns => ("13", "setns into the slot's netns"),
            Mark::Readers => ("15", "start output readers"),
            Mark::Session => ("16, 18", "vfork the program, setsid"),
            Mark::Stdio => ("19", "dup2 stdio"),
            Mark::Chdir => ("20", "chdir run dir"),
            Mark::Rlimits => ("21", "setrlimit"),
            Mark::OomNice => ("22", "oom_score_adj, nice"),
            Mark::Credentials => ("23", "capabilities, groups, gid, uid"),
            Mark::NoNewPrivs => ("24", "no_new_privs"),
            Mark::Landlock => ("25", "Landlock jail rules, restrict_self"),
            Mark::Seccomp => ("26", "seccomp filter, send listener"),
            Mark::Cloexec => ("27", "close-on-exec the rest"),
            Mark::Execed => ("28", "execve until init resumes"),
            Mark::ProgramExited => ("17", "the program runs and is reaped"),
            Mark::InitGone => ("17, 31", "init exits, namespaces torn down, daemon wakes"),
            Mark::SetupReport => ("29", "error pipe EOF (the daemon's view of exec)"),
            Mark::Listener => ("30", "receive seccomp listener"),
            Mark::Status => ("32", "status, reap init, output"),
            Mark::Counted => ("33", "read counters"),
            Mark::Destroyed => ("33", "destroy job cgroup"),
            Mark::Decided => ("34", "decide the end"),
        }
    }

    /// Who takes this mark.
    pub fn actor(self) -> Actor {
        match self {
            Mark::InitStart | Mark::Execed | Mark::InitGone => Actor::Kernel,
            Mark::Started
            | Mark::InCgroup
            | Mark::ParentDeath
            | Mark::CloseFds
            | Mark::MountRun
            | Mark::Hostname
            | Mark::Netns
            | Mark::ProgramExited => Actor::Init,
            Mark::Session
            | Mark::Stdio
            | Mark::Chdir
            | Mark::Rlimits
            | Mark::OomNice
            | Mark::Credentials
            | Mark::NoNewPrivs
            | Mark::Landlock
            | Mark::Seccomp
            | Mark::Cloexec => Actor::Program,
            _ => Actor::Daemon,
        }
    }

    /// The mark this one's cost is measured from (`None` for the first).
    pub fn from(self) -> Option<Mark> {
        Some(match self {
            Mark::Start => return None,
            Mark::InitStart => Mark::CloneCall,
            Mark::Started => Mark::InitStart,
            Mark::Resumed => Mark::Started,
            Mark::Readers => Mark::Resumed,
            Mark::Session => Mark::Netns,
            Mark::Execed => Mark::Cloexec,
            Mark::ProgramExited => Mark::Execed,
            Mark::InitGone => Mark::ProgramExited,
            Mark::SetupReport => Mark::Readers,
            Mark::Listener => Mark::SetupReport,
            Mark::Status => Mark::InitGone,
            // Otherwise the previous mark of the same actor, in declaration order.
            m => {
                let i = Mark::ALL.iter().position(|x| *x == m).unwrap_or(0);
                let actor = m.actor();
                return Mark::ALL[..i]
                    .iter()
                    .rev()
                    .copied()
                    .find(|x| x.actor() == actor);
            }
        })
    }
}

/// One jail's timestamps (ns of `CLOCK_MONOTONIC`), written by the daemon and the jail's
/// processes alike.
#[derive(Debug)]
pub struct StepClock {
    cells: sys::SharedCells,
}

impl StepClock {
    pub fn new() -> std::io::Result<Arc<StepClock>> {
        let cells = sys::SharedCells::new(Mark::ALL.len()).map_err(sys::Errno::into_io)?;
        Ok(Arc::new(StepClock { cells }))
    }

    /// The time now, at `mark`.
    pub fn mark(&self, mark: Mark) {
        self.cells.store(mark as usize, sys::monotonic_ns());
    }

    /// When `mark` was taken (`None`: never).
    pub fn at(&self, mark: Mark) -> Option<u64> {
        Some(self.cells.load(mark as usize)).filter(|&t| t != 0)
    }

    /// Each mark's cost in ns (from [`Mark::from`] to the mark), for the marks taken.
    pub fn costs(&self) -> Vec<(Mark, u64)> {
        Mark::ALL
            .iter()
            .filter_map(|&m| {
                let (from, to) = (self.at(m.from()?)?, self.at(m)?);
                Some((m, to.saturating_sub(from)))
            })
            .collect()
    }
}

/// An optional clock: every normal spawn has none, and marking is then a no-op.
#[derive(Debug, Clone, Default)]
pub(super) struct Clock(pub(super) Option<Arc<StepClock>>);

impl Clock {
    pub(super) fn mark(&self, mark: Mark) {
        if let Some(c) = &self.0 {
            c.mark(mark);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md).
    use super::*;

    #[test]
    fn test_every_mark_but_the_first_has_an_earlier_origin() {
        for (i, &m) in Mark::ALL.iter().enumerate() {
            match m.from() {
                None => assert_eq!(i, 0, "{m:?}"),
                Some(f) => assert_ne!(f, m, "{m:?}"),
            }
        }
    }

    #[test]
    fn test_marks_in_a_child_are_seen_by_the_parent() {
        let clock = StepClock::new().expect("clock");
        clock.mark(Mark::Start);
        let c = clock.clone();
        std::thread::spawn(move || c.mark(Mark::Policy))
            .join()
            .expect("thread");
        let costs = clock.costs();
        assert_eq!(costs.len(), 1);
        assert_eq!(costs[0].0, Mark::Policy);
    }
}
