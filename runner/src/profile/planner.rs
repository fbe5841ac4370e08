//! `Profile::plan`: resolving a `Job` against a profile into a `Plan` (argv, limits, files, env).
//!
//! Follows Jobe (docs/jobe-api.md §1.6, §1.12): a supplied argument list replaces the default
//! and is word-split as `sh -c` would (see [`split_args`]); numeric parameters take the profile
//! default when absent; the compile step gets Jobe's compile minima; sizes use runguard's units
//! (1 MB = 1,024,000 bytes).

use std::time::Duration;

use super::plan::{CmpinfoRule, DeferredCheck, Limits, Plan, Step};
use super::schema::{DeferRule, Profile, is_plain_name, render, splice_name};
use crate::job::Job;

/// Server-wide settings that bound every plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanConfig {
    /// A larger `cputime` is rejected (Jobe's `cputime_upper_limit_secs`, 120).
    pub cputime_max_secs: f64,
    /// Wall-clock limit = `wall_factor` × cputime (Jobe: 2).
    pub wall_factor: f64,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            cputime_max_secs: 120.0,
            wall_factor: 2.0,
        }
    }
}

/// Why a job cannot be planned. Every variant is the client's fault: answer 400 with the message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// Jobe's exact message.
    #[error("cputime exceeds maximum allowed on this Jobe server ({max} secs)")]
    CputimeTooLarge { max: String },
    #[error("invalid {param} parameter: {reason}")]
    InvalidParam { param: &'static str, reason: String },
    #[error("{param} has an unbalanced quote or a trailing backslash: {joined}")]
    UnbalancedQuotes { param: &'static str, joined: String },
    #[error("a file in file_list has the same name as the program: {name}")]
    FileNameClash { name: String },
    #[error("the source file name {name:?} is not a plain file name")]
    BadSourceName { name: String },
}

/// Jobe's `$min_params_compile`: each is a floor for the compile step unless the value is 0.
const COMPILE_MIN_DISK_MB: f64 = 20.0;
const COMPILE_MIN_CPU_SECS: f64 = 2.0;
const COMPILE_MIN_MEMORY_MB: f64 = 500.0;
const COMPILE_MIN_PROCS: f64 = 5.0;

/// The smallest memory limit a step gets, whatever the request: below about a megabyte the
/// cgroup cannot even hold the jail's own init while it execs the program, and the run would
/// fail as a daemon error instead of ending as what it is, a program out of memory (outcome 17).
const MIN_MEMORY_MB: f64 = 1.0;

/// runguard's unit: parameters in MB are passed as `1000*M` kB and runguard multiplies by 1024.
pub(super) const BYTES_PER_MB: f64 = 1_024_000.0;

/// The base environment of every step; the profile's `env` is added (and may override).
const BASE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Formats a number as Jobe would print it: `120`, not `120.0`.
fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Jobe joins an argument list with spaces and hands the line to `sh -c`; this applies the same
/// POSIX word splitting and quote removal without a shell. `$`, backquotes, globs, `~`, `;`, `|`,
/// `&`, `<`, `>` are kept literally (no expansion, no operators); a word starting with `#` starts a
/// comment, as in `sh`. An unbalanced quote is the client's error.
pub fn split_args(param: &'static str, list: &[String]) -> Result<Vec<String>, PlanError> {
    let joined = list.join(" ");
    shlex::split(&joined).ok_or(PlanError::UnbalancedQuotes { param, joined })
}

/// Requested numeric parameters after validation, before per-step rules. Units: seconds, MB.
#[derive(Debug, Clone, Copy)]
struct Requested {
    cputime: f64,
    memorylimit: f64,
    disklimit: f64,
    streamsize: f64,
    numprocs: f64,
}

fn invalid(param: &'static str, reason: impl Into<String>) -> PlanError {
    PlanError::InvalidParam {
        param,
        reason: reason.into(),
    }
}

fn mb_to_bytes(mb: f64) -> u64 {
    // `as` saturates for floats; mb is finite and >= 0 here.
    (mb * BYTES_PER_MB).round() as u64
}

impl Profile {
    fn requested(&self, job: &Job, cfg: &PlanConfig) -> Result<Requested, PlanError> {
        let p = &job.params;
        let d = &self.params;
        let r = Requested {
            cputime: p.cputime.unwrap_or(d.cputime),
            memorylimit: p.memorylimit.unwrap_or(d.memorylimit),
            disklimit: p.disklimit.unwrap_or(d.disklimit),
            streamsize: p.streamsize.unwrap_or(d.streamsize),
            numprocs: p.numprocs.unwrap_or(d.numprocs),
        };
        for (name, v) in [
            ("cputime", r.cputime),
            ("memorylimit", r.memorylimit),
            ("disklimit", r.disklimit),
            ("streamsize", r.streamsize),
            ("numprocs", r.numprocs),
        ] {
            if !v.is_finite() {
                return Err(invalid(name, "must be a finite number"));
            }
        }
        // Jobe checks only intval(cputime) against the maximum, so 120.5 passes with a 120 limit.
        if r.cputime.trunc() > cfg.cputime_max_secs {
            return Err(PlanError::CputimeTooLarge {
                max: fmt_num(cfg.cputime_max_secs),
            });
        }
        if r.cputime <= 0.0 {
            return Err(invalid(
                "cputime",
                format!(
                    "must be greater than 0 seconds (got {})",
                    fmt_num(r.cputime)
                ),
            ));
        }
        if r.memorylimit < 0.0 {
            return Err(invalid(
                "memorylimit",
                format!(
                    "must be >= 0 MB, 0 meaning the maximum (got {})",
                    fmt_num(r.memorylimit)
                ),
            ));
        }
        if r.disklimit < 0.0 && r.disklimit != -1.0 {
            return Err(invalid(
                "disklimit",
                format!(
                    "must be >= 0 MB, or -1 meaning the maximum (got {})",
                    fmt_num(r.disklimit)
                ),
            ));
        }
        if r.streamsize < 0.0 {
            return Err(invalid(
                "streamsize",
                format!("must be >= 0 MB (got {})", fmt_num(r.streamsize)),
            ));
        }
        if r.numprocs < 1.0 {
            return Err(invalid(
                "numprocs",
                format!("must be at least 1 (got {})", fmt_num(r.numprocs)),
            ));
        }
        Ok(r)
    }

    /// Limits of one step. `compile` applies Jobe's compile minima (not to a value of 0).
    fn limits(&self, r: Requested, cfg: &PlanConfig, compile: bool) -> Limits {
        let d = &self.params;
        let floor = |v: f64, min: f64| if compile && v != 0.0 { v.max(min) } else { v };

        let cpu = floor(r.cputime, COMPILE_MIN_CPU_SECS);
        // Memory 0 means Jobe's "unlimited": the profile maximum.
        let mem = floor(r.memorylimit, COMPILE_MIN_MEMORY_MB);
        let mem = if mem == 0.0 {
            d.memorylimit_max
        } else {
            mem.max(d.memorylimit_min).min(d.memorylimit_max)
        };
        let mem = mem.max(MIN_MEMORY_MB);
        // Disk -1 means Jobe's "unlimited": the profile maximum.
        let disk = if r.disklimit == -1.0 {
            d.disklimit_max
        } else {
            floor(r.disklimit, COMPILE_MIN_DISK_MB).min(d.disklimit_max)
        };
        let stream = r.streamsize.min(d.streamsize_max);
        let procs = floor(r.numprocs, COMPILE_MIN_PROCS)
            .max(d.numprocs_min)
            .min(d.numprocs_max)
            .floor();
        Limits {
            cpu: Duration::from_secs_f64(cpu),
            wall: Duration::from_secs_f64(cfg.wall_factor * cpu),
            memory_bytes: mb_to_bytes(mem),
            disk_bytes: mb_to_bytes(disk),
            stream_bytes: mb_to_bytes(stream),
            procs: procs as u32,
            address_space_bytes: self.limit_address_space.then(|| mb_to_bytes(mem)),
        }
    }

    /// The largest stdout (and stderr) a run of this language may keep, in bytes: the profile's
    /// `streamsize_max` (judge mode clamps a test set's `output_limit` to it).
    pub fn stream_bytes_max(&self) -> u64 {
        mb_to_bytes(self.params.streamsize_max)
    }

    /// The source file name of `job`: the client's, else derived from the code, else the default.
    pub fn source_name(&self, job: &Job) -> String {
        job.source_name
            .clone()
            .or_else(|| self.source_name_from_code(&job.source))
            .unwrap_or_else(|| self.default_source_name.clone())
    }

    /// Whether this job's check may run after its run (docs/profiles.md, "Deferred check"): only
    /// when the run compiles the source exactly as the check does, so that a check that would
    /// fail or speak shows in the run's output. Not when the client chose its own arguments (they
    /// may change how, or whether, the source is compiled), the source name would be read as an
    /// option, or the profile's rule sends this request down the two-step path. (The caller
    /// also keeps the two steps for a disk limit of 0.)
    /// The check this job gets has its `compiled_after_cpu` resolved for the job's main source
    /// and the run's memory limit `run_memory_bytes`.
    fn deferral(
        &self,
        rule: &DeferRule,
        job: &Job,
        files: &[(String, Vec<u8>)],
        run_memory_bytes: u64,
    ) -> Result<Option<DeferredCheck>, PlanError> {
        let p = &job.params;
        let d = &self.params;
        for (param, given, default) in [
            ("compileargs", &p.compileargs, &d.compileargs),
            ("linkargs", &p.linkargs, &d.linkargs),
            ("interpreterargs", &p.interpreterargs, &d.interpreterargs),
        ] {
            if let Some(given) = given
                && split_args(param, given)? != split_args(param, default)?
            {
                return Ok(None);
            }
        }
        let src = files.first().map_or("", |(name, _)| name.as_str());
        let eager = src.starts_with('-')
            || rule
                .eager_if_file_name_matches
                .as_ref()
                .is_some_and(|re| files.iter().any(|(name, _)| re.is_match(name)))
            || rule
                .eager_if_source_matches
                .as_ref()
                .is_some_and(|re| re.is_match(&job.source));
        Ok((!eager).then(|| DeferredCheck {
            compiled_after_cpu: rule
                .compiled_after_cpu
                .and_then(|b| b.for_run(job.source.len() as u64, run_memory_bytes)),
            ..rule.check.clone()
        }))
    }

    /// Plans `job` against this profile. `run_dir` is the run directory as seen inside the jail.
    pub fn plan(&self, job: &Job, cfg: &PlanConfig, run_dir: &str) -> Result<Plan, PlanError> {
        let src = self.source_name(job);
        if !is_plain_name(&src) {
            return Err(PlanError::BadSourceName { name: src });
        }
        let stem = src.split('.').next().unwrap_or_default().to_owned();
        let main_class = job
            .params
            .main_class
            .clone()
            .unwrap_or_else(|| stem.clone());
        let vars = |name: &str| -> Option<String> {
            match name {
                "src" => Some(src.clone()),
                "stem" => Some(stem.clone()),
                "main_class" => Some(main_class.clone()),
                "run_dir" => Some(run_dir.to_owned()),
                _ => None,
            }
        };
        // Templates were checked by validation, so rendering cannot fail here; keep the text as
        // is rather than panic if it somehow does.
        let expand = |s: &str| render(s, &vars).unwrap_or_else(|_| s.to_owned());

        let requested = self.requested(job, cfg)?;
        let p = &job.params;
        let d = &self.params;
        let splices = [
            (
                "compileargs",
                split_args(
                    "compileargs",
                    p.compileargs.as_ref().unwrap_or(&d.compileargs),
                )?,
            ),
            (
                "linkargs",
                split_args("linkargs", p.linkargs.as_ref().unwrap_or(&d.linkargs))?,
            ),
            (
                "interpreterargs",
                split_args(
                    "interpreterargs",
                    p.interpreterargs.as_ref().unwrap_or(&d.interpreterargs),
                )?,
            ),
            (
                "runargs",
                split_args("runargs", p.runargs.as_ref().unwrap_or(&d.runargs))?,
            ),
        ];
        let argv = |template: &[String]| -> Vec<String> {
            let mut out = Vec::with_capacity(template.len() + 8);
            for element in template {
                match splice_name(element) {
                    Some(name) => {
                        if let Some((_, words)) = splices.iter().find(|(n, _)| *n == name) {
                            out.extend(words.iter().cloned());
                        }
                    }
                    None => out.push(expand(element)),
                }
            }
            out
        };

        let mut env = vec![
            ("PATH".to_owned(), BASE_PATH.to_owned()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            // HOME and TMPDIR inside the run directory (the foundation issue): temporary files
            // count against the run's own disk and are removed with it. /tmp is private too.
            ("HOME".to_owned(), run_dir.to_owned()),
            ("TMPDIR".to_owned(), run_dir.to_owned()),
            ("OPENBLAS_NUM_THREADS".to_owned(), "4".to_owned()),
        ];
        for (key, value) in &self.env {
            let value = expand(value);
            match env.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => env.push((key.clone(), value)),
            }
        }

        let mut files = vec![(src.clone(), job.source.as_bytes().to_vec())];
        if let Some(copy) = &self.source_copy {
            let copy = expand(copy);
            if !is_plain_name(&copy) {
                return Err(PlanError::BadSourceName { name: copy });
            }
            if copy != src {
                files.push((copy, job.source.as_bytes().to_vec()));
            }
        }
        for f in &job.files {
            if files.iter().any(|(name, _)| *name == f.name) {
                return Err(PlanError::FileNameClash {
                    name: f.name.clone(),
                });
            }
        }
        files.extend(
            job.files
                .iter()
                .map(|f| (f.name.clone(), f.contents.clone())),
        );

        let compile = self.compile_argv.as_ref().map(|t| Step {
            argv: argv(t),
            env: env.clone(),
            limits: self.limits(requested, cfg, true),
        });
        let run_limits = self.limits(requested, cfg, false);
        let deferred = match (&self.deferred, &compile) {
            // A disk limit of 0 is not raised to the compile minimum (Jobe's rule), and a check
            // that writes (py_compile's bytecode) fails on it where the run need not.
            (Some(rule), Some(c)) if c.limits.disk_bytes > 0 => {
                self.deferral(rule, job, &files, run_limits.memory_bytes)?
            }
            _ => None,
        };
        let cmpinfo = match &self.cmpinfo {
            CmpinfoRule::FileUnlessExists {
                file,
                unless_exists,
            } => CmpinfoRule::FileUnlessExists {
                file: expand(file),
                unless_exists: expand(unless_exists),
            },
            other => other.clone(),
        };
        let run = Step {
            argv: argv(&self.run_argv),
            env,
            limits: run_limits,
        };
        let stdin = match job.input.as_str() {
            // Jobe (PHP truthiness): "" and "0" both mean no stdin.
            "" | "0" => None,
            s => Some(s.as_bytes().to_vec()),
        };
        Ok(Plan {
            files,
            compile,
            deferred,
            cmpinfo,
            run,
            stderr_filter: self.stderr_filter.clone(),
            stdin,
            seccomp: self.seccomp.clone(),
            extra_ro_paths: self.extra_ro_paths.clone(),
        })
    }
}
