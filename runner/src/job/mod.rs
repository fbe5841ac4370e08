//! What a client asks for and what it gets back, independent of HTTP and of the jail.
//!
//! `Job` is a request that passed the wire-level checks of `api` (types, names, file ids) and whose
//! files were resolved from the cache. `Params` keeps the *requested* values: resolving them against
//! a language profile (defaults, maxima, Jobe's compile minima) is `profile::plan`'s job.
//! `Outcome` is the Jobe/ideone outcome code. What the untrusted program did is always an `Outcome`,
//! never an error.

use std::fmt;

/// Jobe's outcome codes (jobe-api.md §1.9). Serialised as a JSON integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    CompilationError,
    RuntimeError,
    TimeLimit,
    Success,
    MemoryLimit,
    IllegalSyscall,
    InternalError,
    ServerOverload,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::CompilationError,
        Outcome::RuntimeError,
        Outcome::TimeLimit,
        Outcome::Success,
        Outcome::MemoryLimit,
        Outcome::IllegalSyscall,
        Outcome::InternalError,
        Outcome::ServerOverload,
    ];

    pub fn code(self) -> u8 {
        match self {
            Outcome::CompilationError => 11,
            Outcome::RuntimeError => 12,
            Outcome::TimeLimit => 13,
            Outcome::Success => 15,
            Outcome::MemoryLimit => 17,
            Outcome::IllegalSyscall => 19,
            Outcome::InternalError => 20,
            Outcome::ServerOverload => 21,
        }
    }

    /// Short lowercase name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::CompilationError => "compilation_error",
            Outcome::RuntimeError => "runtime_error",
            Outcome::TimeLimit => "time_limit",
            Outcome::Success => "success",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::IllegalSyscall => "illegal_syscall",
            Outcome::InternalError => "internal_error",
            Outcome::ServerOverload => "server_overload",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.name())
    }
}

/// The Jobe `parameters` a client supplied, after Jobe's type rules (jobe-api.md §1.6): a numeric
/// key whose value is not numeric is treated as absent (Jobe silently uses the default); list keys
/// are lists of strings. `None` means "use the profile default".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    /// Seconds of CPU time (fractional allowed).
    pub cputime: Option<f64>,
    /// MB of memory; 0 means "the profile maximum" (Jobe: unlimited).
    pub memorylimit: Option<f64>,
    /// MB of disk (RLIMIT_FSIZE and /tmp size); -1 means "the profile maximum" (Jobe: unlimited).
    pub disklimit: Option<f64>,
    /// MB of each of stdout and stderr.
    pub streamsize: Option<f64>,
    /// Maximum number of processes and threads.
    pub numprocs: Option<f64>,
    pub compileargs: Option<Vec<String>>,
    pub linkargs: Option<Vec<String>>,
    pub interpreterargs: Option<Vec<String>>,
    pub runargs: Option<Vec<String>>,
    /// Java only: the class to run instead of the one derived from the source name.
    pub main_class: Option<String>,
}

/// A file from the client's `file_list`, already read from the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFile {
    /// Validated by `api` (Jobe's rule: `[A-Za-z0-9._-]`, at least one alphanumeric, not `.`/`..`).
    pub name: String,
    pub contents: Vec<u8>,
}

/// One run request, checked at the wire level.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Lower-cased language id.
    pub language: String,
    pub source: String,
    /// `None`: the profile's default name (also for `""` and the legacy `"prog.java"`).
    /// `Some` values passed Jobe's `isValidSourceFilename`.
    pub source_name: Option<String>,
    /// Exactly as given; Jobe treats `""` and `"0"` as "no stdin" (`/dev/null`).
    pub input: String,
    pub files: Vec<JobFile>,
    pub params: Params,
    pub debug: bool,
    /// The client asked for the rich result (`"runner_details": true`, a key Jobe ignores): the
    /// response gets a sixth key `details` with the usage. Not a Jobe feature.
    pub details: bool,
}

/// What a run produced, before JSON encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    pub outcome: Outcome,
    pub cmpinfo: Vec<u8>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Resources used by the run step (the compile step for outcome 11), for logs, metrics and the
    /// opt-in rich result.
    pub usage: Usage,
}

impl RunResult {
    /// Jobe's overload answer: outcome 21, everything empty.
    pub fn overload() -> Self {
        RunResult {
            outcome: Outcome::ServerOverload,
            cmpinfo: Vec::new(),
            stdout: Vec::new(),
            stderr: Vec::new(),
            usage: Usage::default(),
        }
    }
}

/// Resources a jailed step used, measured by the kernel (cgroup counters, wait status).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub cpu_secs: f64,
    pub wall_secs: f64,
    pub peak_memory_bytes: u64,
    /// Exit code of the step's main process, if it exited.
    pub exit_code: Option<i32>,
    /// Signal that ended the step's main process, if one did.
    pub signal: Option<i32>,
    /// When the daemon killed the step for a limit (seconds since the Unix epoch); for
    /// measuring kill-to-response time (`cargo xtask bench verdicts`).
    pub killed_at_unix: Option<f64>,
}
