//! The output of planning a job against a profile: exact argv lists, limits and files, ready for
//! the jail. Everything here is already validated and clamped; the jail trusts it.

use std::time::Duration;

/// Resource limits of one jailed step (compile or run).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// CPU time of the whole cgroup (all processes together).
    pub cpu: Duration,
    /// Wall-clock time, counted from just before the jail's clone3 (setup included) to the kill.
    pub wall: Duration,
    /// Real memory of the cgroup (memory.max / memory.limit_in_bytes), swap off.
    pub memory_bytes: u64,
    /// RLIMIT_FSIZE and the size of the private /tmp.
    pub disk_bytes: u64,
    /// Each of stdout and stderr is truncated at this many bytes.
    pub stream_bytes: u64,
    /// pids.max: processes plus threads.
    pub procs: u32,
    /// `RLIMIT_AS` (address space) of the program, `None`: not set. Profiles of native code
    /// (`limit_address_space`) set it to `memory_bytes`, as Jobe does, so that a huge `malloc`
    /// returns NULL instead of succeeding on untouched pages; the cgroup's real-memory limit
    /// stays the limit that gives outcome 17.
    pub address_space_bytes: Option<u64>,
}

/// One command to run in a jail.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// `argv[0]` is resolved by the jail: an absolute path, or `./name` relative to the run dir, or
    /// a bare name looked up in the jail's PATH.
    pub argv: Vec<String>,
    /// The complete environment: the jail adds nothing.
    pub env: Vec<(String, String)>,
    pub limits: Limits,
}

/// How `cmpinfo` is built from the compile step (docs/jobe-api.md §1.12).
#[derive(Debug, Clone, PartialEq)]
pub enum CmpinfoRule {
    /// cmpinfo = compiler stderr; when `stdout_separator` is set and both stdout and stderr are
    /// non-empty, cmpinfo = stdout + separator + stderr (Jobe's python3 and php quirks).
    Stderr { stdout_separator: Option<String> },
    /// cmpinfo = the content of `file` (in the run dir) iff `unless_exists` was not produced
    /// (Jobe's pascal rule).
    FileUnlessExists { file: String, unless_exists: String },
}

/// A regular expression of a profile, compared by its pattern (so that plans stay comparable).
#[derive(Debug, Clone)]
pub struct Pattern(regex::bytes::Regex);

impl Pattern {
    /// Compiles `pattern` (the profile's validation reports the error).
    pub fn new(pattern: &str) -> Result<Pattern, regex::Error> {
        regex::bytes::Regex::new(pattern).map(Pattern)
    }

    pub fn is_match(&self, haystack: &[u8]) -> bool {
        self.0.is_match(haystack)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.as_str() == other.as_str()
    }
}

/// When the compile step of a deferred plan runs after all (docs/profiles.md, "Deferred
/// check"): the run went first, and its output decides whether the check could have said
/// something.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeferredCheck {
    /// The check runs when the run's stdout matches (php: a compile diagnostic printed first).
    pub check_if_stdout_matches: Option<Pattern>,
    /// The check is not needed when the run's stderr starts with this (python3: a traceback,
    /// which the interpreter prints only after the main file compiled without a warning).
    pub no_check_if_stderr_starts_with: Option<String>,
}

impl DeferredCheck {
    /// Whether the check must run after a run that produced `stdout` and `stderr` (each cut at
    /// `cap` bytes) and ended as `exited_0` says: always, unless the run exited with status 0,
    /// printed nothing on stderr and nothing on stdout that looks like a diagnostic, and
    /// neither stream reached the cap (cut output vouches for nothing); or it proved it got
    /// past compiling.
    pub fn needed(&self, exited_0: bool, stdout: &[u8], stderr: &[u8], cap: u64) -> bool {
        if self
            .no_check_if_stderr_starts_with
            .as_ref()
            .is_some_and(|p| stderr.starts_with(p.as_bytes()))
        {
            return false;
        }
        let cut = |s: &[u8]| s.len() as u64 >= cap;
        !exited_0
            || !stderr.is_empty()
            || cut(stdout)
            || cut(stderr)
            || self
                .check_if_stdout_matches
                .as_ref()
                .is_some_and(|p| p.is_match(stdout))
    }
}

/// Post-processing of the run step's stderr (Jobe's octave filter).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StderrFilter {
    pub strip_cr: bool,
    pub trim_trailing_blank_lines: bool,
    /// If the last line matches one of these regexes it is dropped.
    pub drop_final_line: Vec<String>,
}

/// Everything needed to execute one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Files to create in the run directory before the compile step: the source (and any copies
    /// the profile asks for) and the `file_list` files. Names are validated single path
    /// components.
    pub files: Vec<(String, Vec<u8>)>,
    pub compile: Option<Step>,
    /// `Some`: the compile step is a check that runs after the run step, and only when the run's
    /// output says it is needed (docs/profiles.md, "Deferred check"); `None`: it runs first.
    pub deferred: Option<DeferredCheck>,
    pub cmpinfo: CmpinfoRule,
    pub run: Step,
    pub stderr_filter: StderrFilter,
    /// stdin of the run step; `None` means /dev/null (Jobe: input `""` or `"0"`).
    pub stdin: Option<Vec<u8>>,
    /// Name of the seccomp policy (a file in `profiles/seccomp/`).
    pub seccomp: String,
    /// Extra host paths visible read-only in the jail.
    pub extra_ro_paths: Vec<String>,
}
