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
    /// A non-empty stdout (that `check_if_stdout_matches` lets pass) proves the main file
    /// compiled: the interpreter writes nothing there before the program runs.
    pub compiled_if_stdout: bool,
    /// A run that used at least this much CPU time got past compiling its main file: more than
    /// the interpreter's start and the compile of a source of this size can take. Resolved for
    /// the job by the planner from the profile's `compiled_after_cpu` (`None`: the source is
    /// too large, or the memory limit too small, for the bound to hold).
    pub compiled_after_cpu: Option<Duration>,
}

/// What the deferred check decides on: how the run step ended and what it wrote.
#[derive(Debug, Clone, Copy)]
pub struct RunEvidence<'a> {
    /// The run exited with status 0.
    pub exited_0: bool,
    /// CPU time the run's processes used together.
    pub cpu: Duration,
    /// Its stdout and stderr as the program wrote them (before any blanking), each cut at
    /// `cap` bytes.
    pub stdout: &'a [u8],
    pub stderr: &'a [u8],
    pub cap: u64,
}

impl DeferredCheck {
    /// Whether the check must run after `run`. The check would pass and print nothing once
    /// the run proved that its main file compiled without a word; so it is not needed when
    /// * the run's stderr starts with `no_check_if_stderr_starts_with` (it got past compiling
    ///   and printed nothing before), or
    /// * the run printed nothing on stderr, nothing on stdout that looks like a diagnostic,
    ///   neither stream reached the cap (cut output vouches for nothing), and the run got past
    ///   compiling: it exited with status 0, or (`compiled_if_stdout`) it printed on stdout,
    ///   or it used at least `compiled_after_cpu` of CPU time, however it ended (a limit, a
    ///   signal, an exit status).
    pub fn needed(&self, run: &RunEvidence<'_>) -> bool {
        if self
            .no_check_if_stderr_starts_with
            .as_ref()
            .is_some_and(|p| run.stderr.starts_with(p.as_bytes()))
        {
            return false;
        }
        let cut = |s: &[u8]| s.len() as u64 >= run.cap;
        if !run.stderr.is_empty()
            || cut(run.stdout)
            || cut(run.stderr)
            || self
                .check_if_stdout_matches
                .as_ref()
                .is_some_and(|p| p.is_match(run.stdout))
        {
            return true;
        }
        let compiled = run.exited_0
            || (self.compiled_if_stdout && !run.stdout.is_empty())
            || self.compiled_after_cpu.is_some_and(|min| run.cpu >= min);
        !compiled
    }
}

/// A profile's bound on what starting the interpreter and compiling a main file can cost
/// (`compiled_after_cpu`, docs/profiles.md "Deferred check"); a run that used more CPU time
/// got past compiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompileCpuBound {
    /// The interpreter's start (and the jail's part of the step).
    pub base: Duration,
    /// Per KiB (1024 bytes) of the main source.
    pub per_kib: Duration,
    /// The bound holds for a main source up to this many bytes only.
    pub max_source_bytes: u64,
    /// And only when the run's real-memory limit is at least this (bytes): near its limit a
    /// process can burn CPU time in reclaim without getting anywhere.
    pub min_memory_bytes: u64,
}

impl CompileCpuBound {
    /// The CPU time that proves a run of a `source_bytes` main file under `memory_bytes` got
    /// past compiling it, if the bound holds there.
    pub fn for_run(&self, source_bytes: u64, memory_bytes: u64) -> Option<Duration> {
        if source_bytes > self.max_source_bytes || memory_bytes < self.min_memory_bytes {
            return None;
        }
        let kib = source_bytes.div_ceil(1024);
        Some(self.base + self.per_kib * u32::try_from(kib).ok()?)
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
