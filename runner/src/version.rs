//! What this binary is, embedded at build time by `runner/build.rs`: the package version, the
//! git commit (`unknown` when built from a tarball without `.git` and without
//! `RUNNER_GIT_COMMIT`), cargo's build profile, and whether an eBPF object is embedded. Shown by
//! `runner --version`, `GET /version`, `GET /health` and the `runner_build_info` metric.
//!
//! Owns: these four facts. Must not: import anything from the crate.

/// The build this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BuildInfo {
    pub version: &'static str,
    pub commit: &'static str,
    /// `release` or `debug` (cargo's `PROFILE`).
    pub profile: &'static str,
    /// Whether an eBPF object is embedded (the monitor may still be inactive at run time, e.g.
    /// without BTF or with `[monitor] ebpf = "off"`).
    pub ebpf_object: bool,
}

/// This binary.
pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    commit: env!("RUNNER_GIT_COMMIT"),
    profile: env!("RUNNER_BUILD_PROFILE"),
    ebpf_object: matches!(env!("RUNNER_EBPF_EMBEDDED").as_bytes(), b"yes"),
};

/// `runner --version`: `0.1.0 (commit 1a2b3c4d…, release, eBPF object embedded)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RUNNER_GIT_COMMIT"),
    ", ",
    env!("RUNNER_BUILD_PROFILE"),
    " build, eBPF object embedded: ",
    env!("RUNNER_EBPF_EMBEDDED"),
    ")"
);

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The embedded facts are present and consistent.
    use super::*;

    #[test]
    fn test_build_info_is_embedded() {
        assert_eq!(BUILD.version, env!("CARGO_PKG_VERSION"));
        assert!(!BUILD.commit.is_empty());
        // A checkout builds with its commit (40 hex digits); a tarball says `unknown`.
        assert!(
            BUILD.commit == "unknown"
                || BUILD.commit.len() >= 7 && BUILD.commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "{}",
            BUILD.commit
        );
        assert!(
            ["debug", "release"].contains(&BUILD.profile),
            "{}",
            BUILD.profile
        );
        assert!(LONG_VERSION.starts_with(BUILD.version));
        assert!(LONG_VERSION.contains(BUILD.commit));
    }
}
