//! runner's eBPF programs (kernel side), built and embedded by `runner/build.rs`, loaded by
//! `runner/src/monitor` (aya 0.14). Each hook is a thin shell over a `try_<hook>()`.
//!
//! Only the jobs' cgroups matter: every program first looks the current task's cgroup2 id up in
//! `JOBS` (user space registers a job before its first process exists and removes it after the
//! last one is gone), so processes outside the jail cost one hash lookup.
//!
//! - `runner_exit` (tp_btf/sched_process_exit): pid, tgid and `exit_code` of job processes.
//! - `runner_oom` (tp_btf/mark_victim): the OOM killer's victim in a job → MLE at once.
//! - `runner_runtime` (tp_btf/sched_stat_runtime): CPU time per job, the kernel's own per-task
//!   runtime deltas; at the budget one `EVENT_BUDGET` and, if `KILL_CURRENT`, SIGKILL to the
//!   running task. User space then kills the cgroup. It also stamps the CPU's slot (below).
//! - `runner_switch` (tp_btf/sched_switch): stamps the CPU's slot for the task switched in.
//! - `runner_sample` (perf_event, a cpu-clock sample on every CPU): SIGKILLs a running task of a
//!   job over its budget, and decides the budget between scheduler ticks from the job's charged
//!   sum plus the uncharged run time of its running tasks (the slots).
//! - `runner_connect4/6`, `runner_sendmsg4/6` (cgroup sock_addr): deny, beside the empty netns.
//!
//! Rust eBPF has no CO-RE relocations, so the kernel struct offsets used below are globals that
//! user space sets at load time from the running kernel's BTF (never hard-coded).
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(
    internal_features,
    reason = "atomic_xadd: AtomicU64::fetch_add does not exist for BPF"
)]

use core::ffi::c_void;
use core::intrinsics::AtomicOrdering;

use aya_ebpf::helpers::generated::{
    bpf_get_current_cgroup_id, bpf_get_current_task, bpf_get_smp_processor_id, bpf_ktime_get_ns,
    bpf_send_signal,
};
use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel};
use aya_ebpf::macros::{btf_tracepoint, cgroup_sock_addr, map, perf_event};
use aya_ebpf::maps::{Array, HashMap, RingBuf};
use aya_ebpf::programs::{BtfTracePointContext, PerfEventContext, SockAddrContext};
use runner_common::{
    BUDGET_CHARGED, BUDGET_ESTIMATED, CODE_UNKNOWN, EVENT_BUDGET, EVENT_EXIT, EVENT_NET_DENIED,
    EVENT_OOM, Event, JobState, MAX_CPUS, OFFSET_UNKNOWN,
};

/// Job cgroup2 id → budget and usage. Written by user space (insert/remove), updated here.
#[map]
static JOBS: HashMap<u64, JobState> = HashMap::with_max_entries(4096, 0);

/// Events for user space (read through epoll, no polling).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// What one CPU is running, as far as the budget goes: the task, its `se.exec_start` and the
/// `bpf_ktime_get_ns()` at which that `exec_start` was set (or just after), and the job of the
/// task (0: none). Written only on its own CPU, with the run queue locked (so never by two
/// programs at once), under `seq` (odd while writing), so that another CPU's reader never
/// mixes two versions; read by `runner_sample` on every CPU.
#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    seq: u64,
    task: u64,
    exec_start: u64,
    ktime: u64,
    cgroup: u64,
}

/// One `Slot` per CPU (index = CPU number).
#[map]
static SLOTS: Array<Slot> = Array::with_max_entries(MAX_CPUS, 0);

// Set by user space from BTF (`EbpfLoader::set_global`); `u32::MAX` = unknown.
#[unsafe(no_mangle)]
static OFF_TASK_PID: u32 = OFFSET_UNKNOWN;
#[unsafe(no_mangle)]
static OFF_TASK_TGID: u32 = OFFSET_UNKNOWN;
#[unsafe(no_mangle)]
static OFF_TASK_EXIT_CODE: u32 = OFFSET_UNKNOWN;
#[unsafe(no_mangle)]
static OFF_TASK_CGROUPS: u32 = OFFSET_UNKNOWN;
#[unsafe(no_mangle)]
static OFF_CSS_SET_DFL_CGRP: u32 = OFFSET_UNKNOWN;
#[unsafe(no_mangle)]
static OFF_CGROUP_KN: u32 = OFFSET_UNKNOWN;
#[unsafe(no_mangle)]
static OFF_KERNFS_NODE_ID: u32 = OFFSET_UNKNOWN;
#[unsafe(no_mangle)]
static OFF_TASK_EXEC_START: u32 = OFFSET_UNKNOWN;
#[unsafe(no_mangle)]
static KILL_CURRENT: u32 = 0;
#[unsafe(no_mangle)]
static NR_CPUS: u32 = 0;
#[unsafe(no_mangle)]
static ESTIMATE_GUARD_NS: u32 = 0;

const SIGKILL: u32 = 9;

/// Reads a global that user space may have rewritten (volatile, or the compiler folds it).
#[inline(always)]
fn global(g: &u32) -> u32 {
    // SAFETY: a valid reference to a static.
    unsafe { core::ptr::read_volatile(g) }
}

#[inline(always)]
fn current_cgroup() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_get_current_cgroup_id() }
}

#[inline(always)]
fn emit(ev: Event) {
    // A full ring buffer loses the event; user space still has its cgroup-file fallback checks.
    let _ = EVENTS.output::<Event>(ev, 0);
}

/// Reads `T` at `base + off` in kernel memory; `None` for an unknown offset or a fault.
#[inline(always)]
fn read_at<T: Copy>(base: *const u8, off: u32) -> Option<T> {
    if off == OFFSET_UNKNOWN || base.is_null() {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one returns an error.
    unsafe { bpf_probe_read_kernel(base.add(off as usize).cast::<T>()).ok() }
}

/// The cgroup2 id of `task`: task->cgroups->dfl_cgrp->kn->id.
#[inline(always)]
fn task_cgroup(task: *const u8) -> Option<u64> {
    let cset: *const u8 = read_at(task, global(&OFF_TASK_CGROUPS))?;
    let cgrp: *const u8 = read_at(cset, global(&OFF_CSS_SET_DFL_CGRP))?;
    let kn: *const u8 = read_at(cgrp, global(&OFF_CGROUP_KN))?;
    read_at(kn, global(&OFF_KERNFS_NODE_ID))
}

/// `tp_btf/sched_process_exit(struct task_struct *p, ...)`: called in do_exit() of `p` (the
/// current task), after `exit_code` is set.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn runner_exit(ctx: BtfTracePointContext) -> i32 {
    match try_runner_exit(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

fn try_runner_exit(ctx: &BtfTracePointContext) -> Result<i32, i32> {
    let cg = current_cgroup();
    let job = JOBS.get_ptr_mut(&cg).ok_or(0)?;
    // SAFETY: a pointer to a live map value; the add is atomic.
    unsafe {
        core::intrinsics::atomic_xadd::<_, _, { AtomicOrdering::Relaxed }>(
            &raw mut (*job).exits,
            1u64,
        )
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let (pid, tgid) = (pid_tgid as u32, (pid_tgid >> 32) as u32);
    // One event per process (its leader), not one per thread.
    if pid != tgid {
        return Ok(0);
    }
    let task: *const c_void = ctx.arg(0);
    let code =
        read_at::<i32>(task.cast(), global(&OFF_TASK_EXIT_CODE)).map_or(CODE_UNKNOWN, |c| c as u32);
    emit(Event {
        kind: EVENT_EXIT,
        pid,
        tgid,
        code,
        cgroup_id: cg,
        value: 0,
    });
    Ok(0)
}

/// `tp_btf/mark_victim(struct task_struct *task, uid_t uid)`: the OOM killer picked `task`.
#[btf_tracepoint(function = "mark_victim")]
pub fn runner_oom(ctx: BtfTracePointContext) -> i32 {
    match try_runner_oom(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

fn try_runner_oom(ctx: &BtfTracePointContext) -> Result<i32, i32> {
    let task: *const c_void = ctx.arg(0);
    let task: *const u8 = task.cast();
    // The victim's own cgroup; without the offsets, the allocating task's (a memcg OOM runs in
    // the context of the task whose charge failed, which is in the same job).
    let cg = task_cgroup(task).unwrap_or_else(current_cgroup);
    if JOBS.get_ptr(&cg).is_none() {
        return Err(0);
    }
    let pid = read_at::<i32>(task, global(&OFF_TASK_PID)).unwrap_or(0) as u32;
    let tgid = read_at::<i32>(task, global(&OFF_TASK_TGID)).unwrap_or(0) as u32;
    emit(Event {
        kind: EVENT_OOM,
        pid,
        tgid,
        code: 0,
        cgroup_id: cg,
        value: 0,
    });
    Ok(0)
}

/// `tp_btf/sched_stat_runtime(struct task_struct *p, u64 runtime)`: the scheduler has just
/// added `runtime` ns to `p`'s `se.sum_exec_runtime` (`update_curr_task`, called at every
/// switch, every scheduler tick and every wake-up preemption check); the same delta is charged
/// to `p`'s cgroups right after (`cgroup_account_cputime`). Summing it per job therefore gives
/// exactly the job's `cpu.stat` usage, never more: the budget event is a verdict, not an
/// estimate, and the task that crosses the budget (and any other task of the job charged after
/// that while it runs) gets SIGKILL here if `KILL_CURRENT` (only `current` can be signalled).
#[btf_tracepoint(function = "sched_stat_runtime")]
pub fn runner_runtime(ctx: BtfTracePointContext) -> i32 {
    let task: *const c_void = ctx.arg(0);
    let runtime: u64 = ctx.arg(1);
    charge(task.cast(), runtime);
    0
}

#[inline(always)]
fn charge(task: *const u8, runtime: u64) {
    // `p` is the task of the CPU's run queue, usually `current` (then one read and a helper
    // find its cgroup), but `update_curr` also runs from another CPU (a wake-up or a migration
    // holding that run queue's lock): then the task's own cgroup, and `current`'s only when the
    // offsets are unknown.
    let pid_tgid = bpf_get_current_pid_tgid();
    let is_current =
        read_at::<i32>(task, global(&OFF_TASK_PID)).is_some_and(|p| p as u32 == pid_tgid as u32);
    let cg = if is_current {
        current_cgroup()
    } else {
        task_cgroup(task).unwrap_or_else(current_cgroup)
    };
    let Some(job) = JOBS.get_ptr_mut(&cg) else {
        return;
    };
    // The slot first, the sum after: a reader on another CPU reads the sum first, so it never
    // counts this delta twice (once in the sum, once as time since the old stamp).
    if is_current {
        stamp(task, cg);
    }
    // SAFETY: a pointer to a live map value; the add is atomic (tasks of one job on many CPUs).
    // Its return value is not used: BPF's v1 instruction set (`--cpu generic`) has an atomic
    // add without fetch; the read after it sees at least our own add.
    let used = unsafe {
        core::intrinsics::atomic_xadd::<_, _, { AtomicOrdering::Relaxed }>(
            &raw mut (*job).used_ns,
            runtime,
        );
        core::ptr::read_volatile(&raw const (*job).used_ns)
    };
    // SAFETY: as above; plain reads and a racy flag (a duplicate event is harmless).
    let first = unsafe {
        if used < (*job).budget_ns {
            // Below the charged budget, unless `runner_sample` decided it from its estimate.
            if core::ptr::read_volatile(&raw const (*job).fired) == 0 {
                return;
            }
            false
        } else {
            let first = (*job).fired == 0;
            (*job).fired = 1;
            first
        }
    };
    if first {
        emit(Event {
            kind: EVENT_BUDGET,
            pid: pid_tgid as u32,
            tgid: (pid_tgid >> 32) as u32,
            code: BUDGET_CHARGED,
            cgroup_id: cg,
            value: used,
        });
    }
    if is_current {
        kill_current();
    }
}

/// SIGKILLs the current task if `KILL_CURRENT`: stops the task that is burning the CPU now,
/// before user space wakes up; the rest of the job goes with cgroup.kill. From the scheduler
/// (run-queue lock held, interrupts off) and from the sampling interrupt the kernel delivers it
/// through irq_work, right after.
#[inline(always)]
fn kill_current() {
    if global(&KILL_CURRENT) != 0 {
        // SAFETY: a helper with a signal number.
        unsafe { bpf_send_signal(SIGKILL) };
    }
}

/// Records in this CPU's slot that `task` (of job `cg`, 0 for none) runs here from its current
/// `se.exec_start` on. Called with the run queue locked, after the kernel set `exec_start`.
#[inline(always)]
fn stamp(task: *const u8, cg: u64) {
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let Some(slot) = SLOTS.get_ptr_mut(cpu) else {
        return;
    };
    // A job task whose `exec_start` cannot be read is recorded as no job (estimate 0).
    let exec_start = if cg == 0 {
        None
    } else {
        read_at::<u64>(task, global(&OFF_TASK_EXEC_START))
    };
    let cg = if exec_start.is_some() { cg } else { 0 };
    // SAFETY: a pointer to a live array element; only this CPU writes it (run queue locked,
    // interrupts off), readers on other CPUs check `seq`. Volatile keeps the stores in order
    // (and x86 keeps stores in program order for the other CPUs).
    unsafe {
        if cg == 0 && core::ptr::read_volatile(&raw const (*slot).cgroup) == 0 {
            return;
        }
        let seq = core::ptr::read_volatile(&raw const (*slot).seq);
        core::ptr::write_volatile(&raw mut (*slot).seq, seq | 1);
        core::ptr::write_volatile(&raw mut (*slot).task, task as u64);
        core::ptr::write_volatile(&raw mut (*slot).exec_start, exec_start.unwrap_or(0));
        core::ptr::write_volatile(&raw mut (*slot).ktime, bpf_ktime_get_ns());
        core::ptr::write_volatile(&raw mut (*slot).cgroup, cg);
        core::ptr::write_volatile(&raw mut (*slot).seq, (seq | 1) + 1);
    }
}

/// `tp_btf/sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next, ...)`:
/// called in `__schedule` after `next` was picked (its `se.exec_start` set to the run queue's
/// task clock), before the switch. Stamps the CPU's slot for `next`.
#[btf_tracepoint(function = "sched_switch")]
pub fn runner_switch(ctx: BtfTracePointContext) -> i32 {
    let next: *const c_void = ctx.arg(2);
    let next: *const u8 = next.cast();
    let cg = task_cgroup(next).unwrap_or(0);
    let cg = if cg != 0 && JOBS.get_ptr(&cg).is_some() {
        cg
    } else {
        0
    };
    stamp(next, cg);
    0
}

/// A cpu-clock sample (perf_event, every `SAMPLE_PERIOD` on every CPU, in its timer interrupt):
/// SIGKILLs the current task if its job is over budget, and decides the budget of the job
/// between scheduler ticks from its charged sum plus what its running tasks have run since
/// their last charge (docs/ebpf.md, "Between ticks").
#[perf_event]
pub fn runner_sample(_ctx: PerfEventContext) -> u32 {
    sample();
    0
}

#[inline(always)]
fn sample() {
    let cg = current_cgroup();
    let Some(job) = JOBS.get_ptr_mut(&cg) else {
        return;
    };
    // SAFETY: a pointer to a live map value; plain reads and a racy flag, as in `charge`. The
    // sum is read before the slots (see `charge`).
    unsafe {
        if core::ptr::read_volatile(&raw const (*job).fired) == 0 {
            let used = core::ptr::read_volatile(&raw const (*job).used_ns);
            let budget = (*job).budget_ns;
            if used < budget {
                let guard = u64::from(global(&ESTIMATE_GUARD_NS));
                let estimate = used + uncharged(cg);
                if estimate < budget.saturating_add(guard) {
                    return;
                }
                let first = core::ptr::read_volatile(&raw const (*job).fired) == 0;
                (*job).fired = 1;
                if first {
                    let pid_tgid = bpf_get_current_pid_tgid();
                    emit(Event {
                        kind: EVENT_BUDGET,
                        pid: pid_tgid as u32,
                        tgid: (pid_tgid >> 32) as u32,
                        code: BUDGET_ESTIMATED,
                        cgroup_id: cg,
                        value: estimate - guard,
                    });
                }
            }
            // At or over the charged budget: `runner_runtime` reports it.
        }
    }
    kill_current();
}

/// The time job `cg`'s running tasks have run since their runtime was last charged, summed
/// over the CPUs' slots; 0 for a slot that is being written, that no longer matches its task's
/// `exec_start` (charged since, or switched out), or without the `exec_start` offset. Never
/// more than the wall time since the stamps, so never time already in the charged sum.
#[inline(always)]
fn uncharged(cg: u64) -> u64 {
    let off = global(&OFF_TASK_EXEC_START);
    if off == OFFSET_UNKNOWN {
        return 0;
    }
    // SAFETY: helpers without arguments.
    let (now, me, current) = unsafe {
        (
            bpf_ktime_get_ns(),
            bpf_get_smp_processor_id(),
            bpf_get_current_task(),
        )
    };
    let n = global(&NR_CPUS);
    let mut total = 0u64;
    for cpu in 0..MAX_CPUS {
        if cpu >= n {
            break;
        }
        let Some(slot) = SLOTS.get_ptr(cpu) else {
            break;
        };
        // SAFETY: a pointer to a live array element; `seq` brackets the reads (odd: being
        // written; changed: written meanwhile).
        let (task, exec_start, ktime, slot_cg) = unsafe {
            let seq = core::ptr::read_volatile(&raw const (*slot).seq);
            let read = (
                core::ptr::read_volatile(&raw const (*slot).task),
                core::ptr::read_volatile(&raw const (*slot).exec_start),
                core::ptr::read_volatile(&raw const (*slot).ktime),
                core::ptr::read_volatile(&raw const (*slot).cgroup),
            );
            if seq & 1 != 0 || core::ptr::read_volatile(&raw const (*slot).seq) != seq {
                continue;
            }
            read
        };
        if slot_cg != cg || (cpu == me && task != current) || now <= ktime {
            continue;
        }
        // Still the same stretch of running: nothing charged since the stamp.
        if read_at::<u64>(task as *const u8, off) != Some(exec_start) {
            continue;
        }
        total += now - ktime;
    }
    total
}

#[inline(always)]
fn deny(family: u64) -> i32 {
    let cg = current_cgroup();
    if JOBS.get_ptr(&cg).is_some() {
        let pid_tgid = bpf_get_current_pid_tgid();
        emit(Event {
            kind: EVENT_NET_DENIED,
            pid: pid_tgid as u32,
            tgid: (pid_tgid >> 32) as u32,
            code: 0,
            cgroup_id: cg,
            value: family,
        });
    }
    // 0 = reject: the call fails with EPERM.
    0
}

/// Attached to the daemon's cgroup2 subtree of jobs (inherited by every job): no job may
/// connect or send to any address, whatever its network namespace holds.
#[cgroup_sock_addr(connect4)]
pub fn runner_connect4(_ctx: SockAddrContext) -> i32 {
    deny(2)
}

#[cgroup_sock_addr(connect6)]
pub fn runner_connect6(_ctx: SockAddrContext) -> i32 {
    deny(10)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn runner_sendmsg4(_ctx: SockAddrContext) -> i32 {
    deny(2)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn runner_sendmsg6(_ctx: SockAddrContext) -> i32 {
    deny(10)
}

/// Tracing programs may call GPL-only helpers only when the object declares a GPL-compatible license.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects unbounded loops, so a reachable panic fails at load time, not at run time.
    loop {}
}
