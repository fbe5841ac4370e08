//! runner's eBPF programs (kernel side). Each hook is a thin shell over a `try_<hook>()`
//! returning `Result`; user space (aya 0.14) loads `target/bpf/runner-ebpf.o`.
//!
//! For now a single, minimal program proves the toolchain end to end:
//! `runner_exit` on `tp_btf/sched_process_exit`, which does nothing and returns 0.
#![no_std]
#![no_main]

use aya_ebpf::macros::btf_tracepoint;
use aya_ebpf::programs::BtfTracePointContext;

/// `tp_btf/sched_process_exit`: will report pid, exit code and cgroup ids of job processes.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn runner_exit(ctx: BtfTracePointContext) -> i32 {
    match try_runner_exit(&ctx) {
        Ok(ret) | Err(ret) => ret,
    }
}

fn try_runner_exit(_ctx: &BtfTracePointContext) -> Result<i32, i32> {
    Ok(0)
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
