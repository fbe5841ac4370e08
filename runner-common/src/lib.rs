//! `#[repr(C)]` types shared by the daemon (`runner/src/monitor`) and the eBPF programs in
//! `runner-ebpf`: the ring-buffer event, the per-job map value, and the names of the maps and
//! globals. Both sides compile this file, so a layout change cannot reach only one of them.
//!
//! Feature `user`: `aya::Pod` for the types user space reads from or writes into maps.
#![no_std]

/// A process (thread-group leader) of a job exited. `code` is the kernel's `task->exit_code`
/// (wait status: `code & 0x7f` = signal, `(code >> 8) & 0xff` = exit status), or
/// [`CODE_UNKNOWN`] when the running kernel's BTF did not give the field's offset.
pub const EVENT_EXIT: u32 = 1;
/// The OOM killer chose a victim in a job (`oom/mark_victim`); `pid` is the victim.
pub const EVENT_OOM: u32 = 2;
/// A job's CPU time (summed over all its tasks) reached its budget; `value` = ns used, `code`
/// = [`BUDGET_CHARGED`] or [`BUDGET_ESTIMATED`] (how `value` was counted).
pub const EVENT_BUDGET: u32 = 3;
/// A job tried `connect()` or `sendmsg()` to an address and the cgroup program refused.
pub const EVENT_NET_DENIED: u32 = 4;

/// `Event::code` when the exit code could not be read.
pub const CODE_UNKNOWN: u32 = u32::MAX;

/// `EVENT_BUDGET` code: `value` is the sum of the runtime the kernel has charged to the job's
/// tasks (`sched_stat_runtime`), exactly what its `cpu.stat` shows.
pub const BUDGET_CHARGED: u32 = 0;
/// `EVENT_BUDGET` code: `value` is that sum plus the time the job's running tasks have run
/// since their last charge, counted by the sampling program (minus [`GLOBAL_ESTIMATE_GUARD_NS`]
/// of it: docs/ebpf.md, "Between ticks").
pub const BUDGET_ESTIMATED: u32 = 1;

/// Ring-buffer record, one per kernel event of a job.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// One of `EVENT_*`.
    pub kind: u32,
    /// Host pid (thread id) of the task concerned.
    pub pid: u32,
    /// Host tgid of the task concerned.
    pub tgid: u32,
    /// `EVENT_EXIT`: `task->exit_code`; `EVENT_BUDGET`: `BUDGET_*`; otherwise 0.
    pub code: u32,
    /// The cgroup2 id of the job (the inode number of its cgroup2 directory).
    pub cgroup_id: u64,
    /// `EVENT_BUDGET`: CPU ns used; `EVENT_NET_DENIED`: address family; otherwise 0.
    pub value: u64,
}

/// Value of the `JOBS` map, keyed by the job's cgroup2 id (`u64`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobState {
    /// CPU budget in ns (all tasks of the job together).
    pub budget_ns: u64,
    /// CPU ns used so far: the sum of the kernel's runtime deltas of the job's tasks
    /// (`sched_stat_runtime`), the same ones its `cpu.stat` usage sums.
    pub used_ns: u64,
    /// Non-zero once the budget event was sent.
    pub fired: u64,
    /// Task exits seen (all threads).
    pub exits: u64,
}

/// Map names, as user space looks them up.
pub const MAP_JOBS: &str = "JOBS";
pub const MAP_EVENTS: &str = "EVENTS";

/// Globals user space sets at load time: byte offsets of kernel struct fields, read from the
/// running kernel's BTF (`/sys/kernel/btf/vmlinux`); `u32::MAX` = not found, do not read.
pub const GLOBAL_OFF_TASK_PID: &str = "OFF_TASK_PID";
pub const GLOBAL_OFF_TASK_TGID: &str = "OFF_TASK_TGID";
pub const GLOBAL_OFF_TASK_EXIT_CODE: &str = "OFF_TASK_EXIT_CODE";
pub const GLOBAL_OFF_TASK_CGROUPS: &str = "OFF_TASK_CGROUPS";
pub const GLOBAL_OFF_CSS_SET_DFL_CGRP: &str = "OFF_CSS_SET_DFL_CGRP";
pub const GLOBAL_OFF_CGROUP_KN: &str = "OFF_CGROUP_KN";
pub const GLOBAL_OFF_KERNFS_NODE_ID: &str = "OFF_KERNFS_NODE_ID";
/// `task_struct.se` + `sched_entity.exec_start`: when the task's runtime was last charged (or
/// it was switched in), in its run queue's task clock.
pub const GLOBAL_OFF_TASK_EXEC_START: &str = "OFF_TASK_EXEC_START";
/// Non-zero: on a budget overrun also `bpf_send_signal(SIGKILL)` the task running it.
pub const GLOBAL_KILL_CURRENT: &str = "KILL_CURRENT";
/// CPUs whose slots the sampling program sums (possible CPUs, at most [`MAX_CPUS`]).
pub const GLOBAL_NR_CPUS: &str = "NR_CPUS";
/// The sampling program decides a budget from its estimate only once the estimate is this many
/// ns past the budget (docs/ebpf.md, "Between ticks").
pub const GLOBAL_ESTIMATE_GUARD_NS: &str = "ESTIMATE_GUARD_NS";

/// The most CPUs the sampling program sums (its loop bound; CPUs past it count as idle, which
/// only makes the estimate lower).
pub const MAX_CPUS: u32 = 64;

/// An offset that was not found in BTF.
pub const OFFSET_UNKNOWN: u32 = u32::MAX;

#[cfg(feature = "user")]
mod user {
    // SAFETY: #[repr(C)], only integer fields, no padding (checked by the size asserts below).
    unsafe impl aya::Pod for super::Event {}
    // SAFETY: #[repr(C)], only u64 fields, no padding.
    unsafe impl aya::Pod for super::JobState {}
}

const _: () = assert!(core::mem::size_of::<Event>() == 32);
const _: () = assert!(core::mem::size_of::<JobState>() == 32);
