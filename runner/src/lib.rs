//! runner: a Jobe-compatible sandbox runner daemon.
//!
//! Data flow: `api` (HTTP, Jobe wire format) → `sched` (slots, queue) → `profile::plan` (argv,
//! limits) → `jail` (namespaces, cgroup, Landlock, seccomp; it also watches the job's kernel
//! events) → back as a `job::RunResult`. See docs/ARCHITECTURE.md.

#![deny(unsafe_code)]

pub mod api;
pub mod cache;
pub mod config;
pub mod dispatch;
mod enums;
pub(crate) mod hex;
pub mod jail;
pub mod job;
pub mod judge;
pub mod live;
pub(crate) mod lru;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod peer;
pub mod profile;
pub mod queue;
pub mod reload;
pub mod sched;
pub mod server;
pub(crate) mod sync;
#[allow(
    unsafe_code,
    reason = "the daemon's raw syscalls are confined to this one module"
)]
pub mod sys;
pub mod telemetry;
pub mod version;
