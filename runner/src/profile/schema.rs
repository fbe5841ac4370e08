//! The profile TOML schema (`RawProfile`, serde with `deny_unknown_fields`) and its validation into
//! a [`Profile`]. Validation checks everything that can be checked without a job: regexes compile,
//! placeholders are known, splices stand alone, minima ≤ defaults ≤ maxima. A `Profile` that exists
//! can always be planned against, up to the job's own errors.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use super::plan::{CmpinfoRule, CompileCpuBound, DeferredCheck, Pattern, StderrFilter};
use super::planner::BYTES_PER_MB;

/// Placeholders allowed inside an argv element, `source_copy`, cmpinfo file names and env values.
pub(crate) const INLINE_PLACEHOLDERS: [&str; 4] = ["src", "stem", "main_class", "run_dir"];
/// Placeholders that must be a whole argv element: they splice zero or more words.
pub(crate) const SPLICES: [&str; 4] = ["compileargs", "linkargs", "interpreterargs", "runargs"];

/// Errors loading or validating a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("failed to read profile {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse profile {name}")]
    Parse {
        name: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid profile {name}: {reason}")]
    Invalid { name: String, reason: String },
}

fn default_seccomp() -> String {
    "default".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    id: String,
    version_command: Vec<String>,
    version_regex: String,
    default_source_name: String,
    #[serde(default)]
    source_name_from_code: Option<RawSourceNameFromCode>,
    #[serde(default)]
    source_copy: Option<String>,
    #[serde(default)]
    compile: Option<RawCompile>,
    run: RawRun,
    #[serde(default)]
    params: RawParams,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    extra_ro_paths: Vec<String>,
    #[serde(default = "default_seccomp")]
    seccomp: String,
    #[serde(default)]
    stderr_filter: Option<RawStderrFilter>,
    #[serde(default)]
    limit_address_space: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSourceNameFromCode {
    regex: String,
    group: usize,
    format: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompile {
    argv: Vec<String>,
    #[serde(default)]
    cmpinfo: RawCmpinfo,
    #[serde(default)]
    deferred: Option<RawDeferred>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeferred {
    #[serde(default)]
    eager_if_file_name_matches: Option<String>,
    #[serde(default)]
    eager_if_source_matches: Option<String>,
    #[serde(default)]
    check_if_stdout_matches: Option<String>,
    #[serde(default)]
    no_check_if_stderr_starts_with: Option<String>,
    #[serde(default)]
    compiled_if_stdout: bool,
    #[serde(default)]
    compiled_after_cpu: Option<RawCpuBound>,
}

/// `compiled_after_cpu = { base_ms, per_kib_ms, max_source_kib, min_memory_mb }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCpuBound {
    base_ms: u64,
    per_kib_ms: u64,
    max_source_kib: u64,
    min_memory_mb: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawCmpinfo {
    #[default]
    Stderr,
    StderrWithStdout {
        separator: String,
    },
    FileUnlessExists {
        file: String,
        unless_exists: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    argv: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStderrFilter {
    #[serde(default)]
    strip_cr: bool,
    #[serde(default)]
    trim_trailing_blank_lines: bool,
    #[serde(default)]
    drop_final_line: Vec<String>,
}

/// Parameter defaults, minima and maxima of a profile (Jobe units: seconds and MB).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParamDefaults {
    pub compileargs: Vec<String>,
    pub linkargs: Vec<String>,
    pub interpreterargs: Vec<String>,
    pub runargs: Vec<String>,
    pub cputime: f64,
    pub memorylimit: f64,
    /// A smaller request is raised to this (java: the JVM needs its heap and code cache).
    pub memorylimit_min: f64,
    pub memorylimit_max: f64,
    pub disklimit: f64,
    pub disklimit_max: f64,
    pub streamsize: f64,
    pub streamsize_max: f64,
    pub numprocs: f64,
    /// A smaller request is raised to this (Jobe's java rule: 256).
    pub numprocs_min: f64,
    pub numprocs_max: f64,
}

type RawParams = ParamDefaults;

impl Default for ParamDefaults {
    /// Jobe's global `$default_params`, with runner's maxima.
    fn default() -> Self {
        ParamDefaults {
            compileargs: Vec::new(),
            linkargs: Vec::new(),
            interpreterargs: Vec::new(),
            runargs: Vec::new(),
            cputime: 5.0,
            memorylimit: 400.0,
            memorylimit_min: 0.0,
            memorylimit_max: 4000.0,
            disklimit: 20.0,
            disklimit_max: 200.0,
            streamsize: 2.0,
            streamsize_max: 20.0,
            numprocs: 30.0,
            numprocs_min: 1.0,
            numprocs_max: 200.0,
        }
    }
}

/// How to derive the source file name from the code (Jobe's JavaTask).
#[derive(Debug, Clone)]
pub struct SourceNameRule {
    pub regex: Regex,
    pub group: usize,
    /// `{}` is replaced by the captured text.
    pub format: String,
}

/// A profile's `[compile.deferred]`: the compile step is a check that may run after the run
/// step instead of before it (docs/profiles.md, "Deferred check").
#[derive(Debug, Clone)]
pub struct DeferRule {
    /// A request with a file (the source or a `file_list` file) of a matching name takes the
    /// two-step path: the check would find that file where the run does not look (python3:
    /// `python3 -m py_compile` imports modules from the run directory).
    pub eager_if_file_name_matches: Option<Regex>,
    /// A source that matches takes the two-step path: the check and the run would compile it
    /// differently (php: the check has the CLI's php.ini, the run has none).
    pub eager_if_source_matches: Option<Regex>,
    /// What decides, after the run, whether the check runs (its `compiled_after_cpu` is
    /// resolved per job from the bound below).
    pub check: DeferredCheck,
    /// `compiled_after_cpu`: what starting the interpreter and compiling a main file can cost.
    pub compiled_after_cpu: Option<CompileCpuBound>,
}

/// A validated language profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub id: String,
    pub version_command: Vec<String>,
    pub version_regex: Regex,
    pub default_source_name: String,
    pub source_name_from_code: Option<SourceNameRule>,
    /// Template of a second name the source is written under (nodejs `{src}.js`, octave `{src}.m`).
    pub source_copy: Option<String>,
    /// argv template of the compile step, if any.
    pub compile_argv: Option<Vec<String>>,
    /// cmpinfo rule; its file names are templates, expanded by `plan`.
    pub cmpinfo: CmpinfoRule,
    /// `[compile.deferred]`: the check may run after the run step (`None`: always before).
    pub deferred: Option<DeferRule>,
    pub run_argv: Vec<String>,
    pub params: ParamDefaults,
    /// Extra environment; values are templates.
    pub env: Vec<(String, String)>,
    pub extra_ro_paths: Vec<String>,
    pub seccomp: String,
    pub stderr_filter: StderrFilter,
    /// Also limit the program's address space (`RLIMIT_AS`) to the memory limit, as Jobe does:
    /// for native code (c, cpp, pascal), never for runtimes that reserve large address ranges
    /// they never touch (JVM, V8).
    pub limit_address_space: bool,
}

/// Expands `{name}` placeholders in `s` with `lookup`; `{{` and `}}` are literal braces.
/// Returns the unknown or malformed placeholder as the error.
pub(crate) fn render(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if tail.starts_with('}') {
            return Err(format!("unmatched '}}' in {s:?}"));
        } else {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("unterminated placeholder in {s:?}"))?;
            let name = &tail[1..end];
            let value =
                lookup(name).ok_or_else(|| format!("unknown placeholder {{{name}}} in {s:?}"))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// If `element` is exactly a splice placeholder, its name.
pub(crate) fn splice_name(element: &str) -> Option<&'static str> {
    SPLICES
        .iter()
        .find(|name| {
            element.len() == name.len() + 2
                && element.starts_with('{')
                && element.ends_with('}')
                && &element[1..element.len() - 1] == **name
        })
        .copied()
}

fn check_template(s: &str) -> Result<(), String> {
    render(s, &|name| {
        INLINE_PLACEHOLDERS.contains(&name).then(String::new)
    })
    .map(|_| ())
}

fn check_argv(what: &str, argv: &[String]) -> Result<(), String> {
    let Some(first) = argv.first() else {
        return Err(format!("{what} argv is empty"));
    };
    if splice_name(first).is_some() {
        return Err(format!("{what} argv[0] must not be a splice placeholder"));
    }
    for element in argv {
        if splice_name(element).is_none() {
            check_template(element).map_err(|e| {
                if SPLICES.iter().any(|s| element.contains(&format!("{{{s}}}"))) {
                    format!("{what} argv: {{compileargs}}-style splices must be a whole element ({element:?})")
                } else {
                    format!("{what} argv: {e}")
                }
            })?;
        }
    }
    Ok(())
}

fn check_number(name: &str, v: f64) -> Result<(), String> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(format!("params.{name} is not a finite number"))
    }
}

fn check_params(p: &ParamDefaults) -> Result<(), String> {
    for (name, v) in [
        ("cputime", p.cputime),
        ("memorylimit", p.memorylimit),
        ("memorylimit_min", p.memorylimit_min),
        ("memorylimit_max", p.memorylimit_max),
        ("disklimit", p.disklimit),
        ("disklimit_max", p.disklimit_max),
        ("streamsize", p.streamsize),
        ("streamsize_max", p.streamsize_max),
        ("numprocs", p.numprocs),
        ("numprocs_min", p.numprocs_min),
        ("numprocs_max", p.numprocs_max),
    ] {
        check_number(name, v)?;
    }
    if p.cputime <= 0.0 {
        return Err("params.cputime must be > 0".into());
    }
    let ordered = |name: &str, min: f64, default: f64, max: f64| {
        if min <= default && default <= max && min >= 0.0 {
            Ok(())
        } else {
            Err(format!(
                "params.{name}: need 0 <= {name}_min ({min}) <= {name} ({default}) <= {name}_max ({max})"
            ))
        }
    };
    // memorylimit 0 means "the maximum", so a default of 0 is allowed.
    if p.memorylimit != 0.0 {
        ordered(
            "memorylimit",
            p.memorylimit_min,
            p.memorylimit,
            p.memorylimit_max,
        )?;
    }
    if p.disklimit != -1.0 {
        ordered("disklimit", 0.0, p.disklimit, p.disklimit_max)?;
    }
    ordered("streamsize", 0.0, p.streamsize, p.streamsize_max)?;
    ordered("numprocs", p.numprocs_min, p.numprocs, p.numprocs_max)?;
    if p.numprocs_min < 1.0 {
        return Err("params.numprocs_min must be >= 1".into());
    }
    for (name, list) in [
        ("compileargs", &p.compileargs),
        ("linkargs", &p.linkargs),
        ("interpreterargs", &p.interpreterargs),
        ("runargs", &p.runargs),
    ] {
        if shlex::split(&list.join(" ")).is_none() {
            return Err(format!("params.{name} has an unbalanced quote"));
        }
    }
    Ok(())
}

impl Profile {
    /// Parses and validates one profile. `name` is used in error messages (a file name).
    pub fn from_toml(name: &str, text: &str) -> Result<Profile, ProfileError> {
        let raw: RawProfile = toml::from_str(text).map_err(|source| ProfileError::Parse {
            name: name.to_owned(),
            source,
        })?;
        Profile::validate(raw).map_err(|reason| ProfileError::Invalid {
            name: name.to_owned(),
            reason,
        })
    }

    fn validate(raw: RawProfile) -> Result<Profile, String> {
        let id_ok = !raw.id.is_empty()
            && raw.id.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'+'
            });
        if !id_ok {
            return Err(format!(
                "id {:?} must be non-empty lowercase [a-z0-9_+-]",
                raw.id
            ));
        }
        if raw.version_command.is_empty() {
            return Err("version_command is empty".into());
        }
        let version_regex =
            Regex::new(&raw.version_regex).map_err(|e| format!("version_regex: {e}"))?;
        if version_regex.captures_len() < 2 {
            return Err("version_regex needs a capture group (the version)".into());
        }
        if !is_plain_name(&raw.default_source_name) {
            return Err(format!(
                "default_source_name {:?} must be a single path component",
                raw.default_source_name
            ));
        }
        let source_name_from_code = match raw.source_name_from_code {
            None => None,
            Some(r) => {
                let regex = Regex::new(&r.regex)
                    .map_err(|e| format!("source_name_from_code.regex: {e}"))?;
                if r.group == 0 || r.group >= regex.captures_len() {
                    return Err(format!(
                        "source_name_from_code.group {} is not a capture group of the regex",
                        r.group
                    ));
                }
                if !r.format.contains("{}") {
                    return Err("source_name_from_code.format must contain {}".into());
                }
                Some(SourceNameRule {
                    regex,
                    group: r.group,
                    format: r.format,
                })
            }
        };
        if let Some(copy) = &raw.source_copy {
            check_template(copy).map_err(|e| format!("source_copy: {e}"))?;
            if !copy.contains("{src}") && !copy.contains("{stem}") {
                return Err("source_copy must contain {src} or {stem}".into());
            }
        }
        let (compile_argv, cmpinfo, deferred) = match raw.compile {
            None => (
                None,
                CmpinfoRule::Stderr {
                    stdout_separator: None,
                },
                None,
            ),
            Some(c) => {
                check_argv("compile", &c.argv)?;
                let rule = match c.cmpinfo {
                    RawCmpinfo::Stderr => CmpinfoRule::Stderr {
                        stdout_separator: None,
                    },
                    RawCmpinfo::StderrWithStdout { separator } => CmpinfoRule::Stderr {
                        stdout_separator: Some(separator),
                    },
                    RawCmpinfo::FileUnlessExists {
                        file,
                        unless_exists,
                    } => {
                        check_template(&file).map_err(|e| format!("compile.cmpinfo.file: {e}"))?;
                        check_template(&unless_exists)
                            .map_err(|e| format!("compile.cmpinfo.unless_exists: {e}"))?;
                        CmpinfoRule::FileUnlessExists {
                            file,
                            unless_exists,
                        }
                    }
                };
                let deferred = c.deferred.map(validate_deferred).transpose()?;
                (Some(c.argv), rule, deferred)
            }
        };
        check_argv("run", &raw.run.argv)?;
        check_params(&raw.params)?;
        let mut env = Vec::with_capacity(raw.env.len());
        for (key, value) in raw.env {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(format!("env key {key:?} is invalid"));
            }
            check_template(&value).map_err(|e| format!("env.{key}: {e}"))?;
            env.push((key, value));
        }
        for path in &raw.extra_ro_paths {
            if !path.starts_with('/') {
                return Err(format!("extra_ro_paths: {path:?} is not absolute"));
            }
        }
        if !is_plain_name(&raw.seccomp) {
            return Err(format!("seccomp {:?} must be a policy name", raw.seccomp));
        }
        let stderr_filter = match raw.stderr_filter {
            None => StderrFilter::default(),
            Some(f) => {
                for re in &f.drop_final_line {
                    regex::bytes::Regex::new(re)
                        .map_err(|e| format!("stderr_filter.drop_final_line: {e}"))?;
                }
                StderrFilter {
                    strip_cr: f.strip_cr,
                    trim_trailing_blank_lines: f.trim_trailing_blank_lines,
                    drop_final_line: f.drop_final_line,
                }
            }
        };
        Ok(Profile {
            id: raw.id,
            version_command: raw.version_command,
            version_regex,
            default_source_name: raw.default_source_name,
            source_name_from_code,
            source_copy: raw.source_copy,
            compile_argv,
            cmpinfo,
            deferred,
            run_argv: raw.run.argv,
            params: raw.params,
            env,
            extra_ro_paths: raw.extra_ro_paths,
            seccomp: raw.seccomp,
            stderr_filter,
            limit_address_space: raw.limit_address_space,
        })
    }

    /// The version from the output of `version_command`: the first capture group of
    /// `version_regex`, or `"Unknown"` when it does not match (as Jobe).
    pub fn parse_version(&self, output: &str) -> String {
        self.version_regex
            .captures(output)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().to_owned())
            .unwrap_or_else(|| "Unknown".to_owned())
    }

    /// The source name derived from the code by `source_name_from_code`, if exactly one match.
    pub fn source_name_from_code(&self, code: &str) -> Option<String> {
        let rule = self.source_name_from_code.as_ref()?;
        let mut matches = rule.regex.captures_iter(code);
        let first = matches.next()?;
        if matches.next().is_some() {
            return None;
        }
        let name = rule.format.replace("{}", first.get(rule.group)?.as_str());
        is_plain_name(&name).then_some(name)
    }
}

fn validate_deferred(raw: RawDeferred) -> Result<DeferRule, String> {
    let regex = |key: &str, re: Option<String>| {
        re.map(|re| Regex::new(&re).map_err(|e| format!("compile.deferred.{key}: {e}")))
            .transpose()
    };
    let check_if_stdout_matches = raw
        .check_if_stdout_matches
        .map(|re| {
            Pattern::new(&re).map_err(|e| format!("compile.deferred.check_if_stdout_matches: {e}"))
        })
        .transpose()?;
    if raw
        .no_check_if_stderr_starts_with
        .as_ref()
        .is_some_and(String::is_empty)
    {
        // Every stderr starts with "": the check would never run.
        return Err("compile.deferred.no_check_if_stderr_starts_with must not be empty".into());
    }
    let compiled_after_cpu = match raw.compiled_after_cpu {
        None => None,
        Some(b) if b.base_ms == 0 && b.per_kib_ms == 0 => {
            // Every run uses at least no CPU time: the check would never run.
            return Err(
                "compile.deferred.compiled_after_cpu: base_ms and per_kib_ms are both 0".into(),
            );
        }
        Some(b) => Some(CompileCpuBound {
            base: Duration::from_millis(b.base_ms),
            per_kib: Duration::from_millis(b.per_kib_ms),
            max_source_bytes: b.max_source_kib.saturating_mul(1024),
            min_memory_bytes: (b.min_memory_mb as f64 * BYTES_PER_MB) as u64,
        }),
    };
    Ok(DeferRule {
        eager_if_file_name_matches: regex(
            "eager_if_file_name_matches",
            raw.eager_if_file_name_matches,
        )?,
        eager_if_source_matches: regex("eager_if_source_matches", raw.eager_if_source_matches)?,
        check: DeferredCheck {
            check_if_stdout_matches,
            no_check_if_stderr_starts_with: raw.no_check_if_stderr_starts_with,
            compiled_if_stdout: raw.compiled_if_stdout,
            compiled_after_cpu: None,
        },
        compiled_after_cpu,
    })
}

/// Longest source file name: leaves room within `NAME_MAX` (255) for what compilers add
/// (`prog.c.exe`). A longer name derived from the code (a very long Java class name) falls back
/// to the profile's default name; the compiler then reports the mismatch (outcome 11).
pub(crate) const MAX_SOURCE_NAME_BYTES: usize = 200;

/// A single path component: non-empty, no '/', no NUL, not `.` or `..`, at most
/// [`MAX_SOURCE_NAME_BYTES`] long.
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SOURCE_NAME_BYTES
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
}
