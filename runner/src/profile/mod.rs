//! Language profiles (`profiles/*.toml`) and planning a job against one.
//!
//! Owns: the profile schema and its validation ([`Profile::from_toml`]), the [`Registry`] of
//! languages detected on the host, and [`Profile::plan`], which turns a `job::Job` into a
//! [`plan::Plan`] (argv lists, clamped limits, files, env) for the jail. Also the pure output
//! rules [`cmpinfo`] and [`filter_stderr`]. Must not: run jobs, touch the run directory or the
//! jail; the only process it starts is a language's version command at startup.
//! See docs/profiles.md.

pub mod plan;

mod output;
mod planner;
mod registry;
mod schema;

pub use output::{cmpinfo, filter_stderr};
pub use planner::{PlanConfig, PlanError, split_args};
pub use registry::{
    HostProbe, PROBE_TIMEOUT, ProbeError, Registry, VersionProbe, dir_profiles, embedded_profiles,
    merge,
};
pub use schema::{ParamDefaults, Profile, ProfileError, SourceNameRule};

#[cfg(test)]
mod tests;
