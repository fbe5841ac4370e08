//! What a client asks for and what it gets back, independent of HTTP and of the jail.
//!
//! `Job` is a request that passed the wire-level checks of `api` (types, names, file ids) and whose
//! files were resolved from the cache. `Params` keeps the *requested* values: resolving them against
//! a language profile (defaults, maxima, Jobe's compile minima) is `profile::plan`'s job.
//! `Outcome` is the Jobe/ideone outcome code. What the untrusted program did is always an `Outcome`,
//! never an error.

use std::fmt;

pub mod wire;

/// Writes `Outcome` and its one table: every variant with its Jobe code and its metrics/log
/// name, so that the variant list, `ALL`, `code`, `name` and `from_code` cannot drift apart.
/// Two variants with one code would make `from_code`'s match unreachable (a compile error
/// under `-D warnings`); `test_outcome_table_round_trip` checks the rest.
macro_rules! outcomes {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal, $name:literal;)*) => {
        /// Jobe's outcome codes (docs/jobe-api.md §1.9). Serialised as a JSON integer.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(into = "u8", try_from = "u8")]
        pub enum Outcome {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Outcome {
            /// Every outcome, in code order.
            pub const ALL: [Outcome; [$($code),*].len()] = [$(Outcome::$variant),*];

            /// The code on the wire.
            pub fn code(self) -> u8 {
                match self {
                    $(Outcome::$variant => $code,)*
                }
            }

            /// Short lowercase name for logs and metrics.
            pub fn name(self) -> &'static str {
                match self {
                    $(Outcome::$variant => $name,)*
                }
            }

            /// The outcome with wire code `code`, if there is one.
            pub fn from_code(code: u8) -> Option<Outcome> {
                match code {
                    $($code => Some(Outcome::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

outcomes! {
    /// 11: the compile step failed (non-empty `cmpinfo`).
    CompilationError = 11, "compilation_error";
    /// 12: the program wrote to stderr or ended abnormally.
    RuntimeError = 12, "runtime_error";
    /// 13: CPU or wall time limit.
    TimeLimit = 13, "time_limit";
    /// 15: ran to its end, nothing on stderr.
    Success = 15, "success";
    /// 17: memory limit.
    MemoryLimit = 17, "memory_limit";
    /// 19: a forbidden system call.
    IllegalSyscall = 19, "illegal_syscall";
    /// 20: a fault of the server while running the job.
    InternalError = 20, "internal_error";
    /// 21: no slot freed up in time.
    ServerOverload = 21, "server_overload";
}

impl From<Outcome> for u8 {
    fn from(o: Outcome) -> u8 {
        o.code()
    }
}

impl TryFrom<u8> for Outcome {
    type Error = UnknownOutcome;

    fn try_from(code: u8) -> Result<Outcome, UnknownOutcome> {
        Outcome::from_code(code).ok_or(UnknownOutcome(code))
    }
}

/// A number that is not one of Jobe's outcome codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a Jobe outcome code")]
pub struct UnknownOutcome(pub u8);

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.name())
    }
}

/// The Jobe `parameters` a client supplied, after Jobe's type rules (docs/jobe-api.md §1.6): a
/// numeric key whose value is not numeric is treated as absent (Jobe silently uses the default);
/// list keys are lists of strings. `None` means "use the profile default".
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

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The outcome table.
    use std::collections::HashSet;

    use super::*;

    /// Every variant: code → outcome → code, name unique, and no other byte decodes.
    #[test]
    fn test_outcome_table_round_trip() {
        let mut names = HashSet::new();
        for o in Outcome::ALL {
            assert_eq!(Outcome::from_code(o.code()), Some(o), "{o}");
            assert_eq!(Outcome::try_from(u8::from(o)), Ok(o));
            assert!(names.insert(o.name()), "{} twice", o.name());
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(json, o.code().to_string());
            assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), o);
        }
        let decoded = (0..=u8::MAX).filter_map(Outcome::from_code).count();
        assert_eq!(decoded, Outcome::ALL.len());
        assert_eq!(Outcome::try_from(14), Err(UnknownOutcome(14)));
        assert!(serde_json::from_str::<Outcome>("99").is_err());
        assert_eq!(Outcome::ServerOverload.to_string(), "21 (server_overload)");
    }
}
