//! Jobe wire format, request side: parsing a `POST runs` body into a `Job` (docs/jobe-api.md §1.4,
//! §1.6, §1.10, §1.15). The result object (§1.8) is `job::wire`, shared with `peer`, which
//! decodes what other runners answer.
//!
//! Parsing is by hand over `serde_json::Value` rather than a derived DTO, because Jobe's rules are
//! PHP's: numbers and bools coerce to strings, numeric strings are numbers, a non-numeric value for
//! a numeric parameter means "absent", `parameters` may be `[]`, truthiness decides `debug`, and
//! the checks happen in a fixed order that decides which error a client sees. Unknown keys are
//! ignored everywhere. Where Jobe answers 500 (a PHP exception) we answer 400 naming the field; see
//! docs/jobe-compat.md.
//!
//! Must not: touch the cache, the executor or HTTP types (pure functions, unit-tested below).

use serde_json::{Map, Value};

use super::error::ApiError;
use crate::job::{Job, Params};

/// One `file_list` entry after validation: `(file_id, file_name)`.
pub(crate) type FileSpec = (String, String);

/// A run request that passed every wire-level check; files still to be read from the cache.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunRequest {
    /// `files` is empty; the caller fills it from `file_list`.
    pub(crate) job: Job,
    pub(crate) file_list: Vec<FileSpec>,
}

/// Jobe's overload test hook (`LanguageTask::prepareExecutionEnvironment`).
pub(crate) const OVERLOAD_TEST_SOURCE: &str = "!** TESTING OVERLOAD EXCEPTION **!";

/// Parses a `POST runs` body with Jobe's order of checks. `is_known` says whether a lower-cased
/// language id is served; `cputime_limit` is Jobe's `cputime_upper_limit_secs`.
pub(crate) fn parse_run_body(
    body: &[u8],
    is_known: impl Fn(&str) -> bool,
    cputime_limit: i64,
) -> Result<RunRequest, ApiError> {
    // 1. JSON object.
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("Non-JSON post data received"));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("Failed to parse JSON request body: {e}")))?;
    let Value::Object(top) = value else {
        return Err(bad("Non-JSON post data received"));
    };
    // 2. run_spec (absent: Jobe 500; here the same 400 as a non-object run_spec).
    let Some(Value::Object(spec)) = top.get("run_spec") else {
        return Err(bad("No run_spec attribute found in post data"));
    };
    // 3. Required attributes, in Jobe's order; each is type-checked as it is assigned.
    let source = required_string(spec, "sourcecode")?;
    let language = required_string(spec, "language_id")?.to_ascii_lowercase();
    // 4. Known language.
    if !is_known(&language) {
        return Err(unknown_language(&language));
    }
    // 5. input.
    let input = match spec.get("input") {
        None | Some(Value::Null) => String::new(),
        Some(v) => {
            php_string(v).ok_or_else(|| bad("run_spec attribute 'input' must be a string"))?
        }
    };
    // 6. debug: PHP truthiness.
    let debug = spec.get("debug").is_some_and(php_truthy);
    // Not Jobe: opt-in rich result (docs/jobe-compat.md), same truthiness as `debug`.
    let details = spec.get("runner_details").is_some_and(php_truthy);
    // 7. parameters: only a JSON object has named keys; `[]`, scalars and null mean none.
    let empty = Map::new();
    let pmap = match spec.get("parameters") {
        Some(Value::Object(m)) => m,
        _ => &empty,
    };
    // Type errors in list parameters are a 500 in Jobe, raised only when the command line is
    // built; report them after Jobe's own 400 checks so those keep their precedence.
    let params = parse_params(pmap);
    // 8. cputime upper limit, on PHP's intval of the raw value.
    if let Some(v) = pmap.get("cputime")
        && php_intval(v) > cputime_limit
    {
        return Err(bad(format!(
            "cputime exceeds maximum allowed on this Jobe server ({cputime_limit} secs)"
        )));
    }
    // 9. sourcefilename.
    let source_name = match spec.get("sourcefilename") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let name = php_string(v)
                .filter(|n| is_valid_source_filename(n))
                .ok_or_else(|| bad("The sourcefilename for the run_spec is illegal"))?;
            if name.len() > MAX_NAME_BYTES {
                return Err(bad(format!(
                    "The sourcefilename for the run_spec is illegal (longer than {MAX_NAME_BYTES} bytes)"
                )));
            }
            (!name.is_empty() && name != "prog.java").then_some(name)
        }
    };
    // 10. file_list.
    let file_list = match spec.get("file_list") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(entries)) => entries
            .iter()
            .enumerate()
            .map(|(i, e)| parse_filespec(i, e))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(bad(
                "run_spec attribute 'file_list' must be a list of [file_id, filename] entries",
            ));
        }
    };
    let params = params?;
    Ok(RunRequest {
        job: Job {
            language,
            source,
            source_name,
            input,
            files: Vec::new(),
            params,
            debug,
            details,
        },
        file_list,
    })
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

pub(crate) fn unknown_language(id: &str) -> ApiError {
    bad(crate::job::wire::unknown_language(id))
}

fn required_string(spec: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
    match spec.get(key) {
        None | Some(Value::Null) => Err(bad(format!(
            "run_spec is missing the required attribute '{key}'"
        ))),
        Some(v) => {
            php_string(v).ok_or_else(|| bad(format!("run_spec attribute '{key}' must be a string")))
        }
    }
}

fn parse_params(p: &Map<String, Value>) -> Result<Params, ApiError> {
    // Jobe's rule (jobe#39): a numeric key whose value is not `is_numeric` is treated as absent.
    let num = |k: &str| p.get(k).and_then(php_numeric);
    let list = |k: &str| -> Result<Option<Vec<String>>, ApiError> {
        match p.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => {
                let list = items
                    .iter()
                    .map(php_string)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad(format!("parameters.{k} must be a list of strings")))?;
                if list.iter().any(|a| a.contains('\0')) {
                    return Err(nul_in(k));
                }
                Ok(Some(list))
            }
            Some(_) => Err(bad(format!("parameters.{k} must be a list of strings"))),
        }
    };
    Ok(Params {
        cputime: num("cputime"),
        memorylimit: num("memorylimit"),
        disklimit: num("disklimit"),
        streamsize: num("streamsize"),
        numprocs: num("numprocs"),
        compileargs: list("compileargs")?,
        linkargs: list("linkargs")?,
        interpreterargs: list("interpreterargs")?,
        runargs: list("runargs")?,
        main_class: match p.get("main_class") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let class =
                    php_string(v).ok_or_else(|| bad("parameters.main_class must be a string"))?;
                if class.contains('\0') {
                    return Err(nul_in("main_class"));
                }
                Some(class)
            }
        },
    })
}

/// An argument that would end up in an `execve` argv cannot hold a NUL byte (Jobe: a PHP
/// `ValueError`, 500). Here a 400 naming the parameter.
fn nul_in(k: &str) -> ApiError {
    bad(format!("parameters.{k} must not contain NUL bytes"))
}

/// Longest accepted `sourcefilename`, `file_list` name and file id, in bytes. Not Jobe's (it has
/// none, and fails with a PHP warning or a 500 at the file system's 255-byte `NAME_MAX`): 200
/// leaves room for the suffixes compilers add (`prog.c.exe`, `Main.class`) within `NAME_MAX`.
pub(crate) const MAX_NAME_BYTES: usize = crate::cache::MAX_ID_BYTES;

fn parse_filespec(i: usize, entry: &Value) -> Result<FileSpec, ApiError> {
    let Value::Array(items) = entry else {
        return Err(bad(format!(
            "Invalid file specifier: file_list[{i}] must be a list [file_id, filename], got {entry}"
        )));
    };
    let invalid = || bad(format!("Invalid file specifier: {}", print_r(entry)));
    if !(2..=3).contains(&items.len()) {
        return Err(invalid());
    }
    let (Value::String(id), Value::String(name)) = (&items[0], &items[1]) else {
        return Err(invalid());
    };
    if id.len() < 8 || !crate::cache::is_valid_id(id) || !is_valid_file_name(name) {
        return Err(invalid());
    }
    Ok((id.clone(), name.clone()))
}

/// `RunSpecifier::isValidFilespec`'s name rule: only `[A-Za-z0-9._-]`, at least one alphanumeric;
/// and (not Jobe) at most [`MAX_NAME_BYTES`].
pub(crate) fn is_valid_file_name(name: &str) -> bool {
    name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name.bytes().any(|b| b.is_ascii_alphanumeric())
}

/// `RunSpecifier::isValidSourceFilename`: no character of the forbidden classes, and no leading
/// `.` or `-` (Jobe replaces the former with `-`, strips the latter, and compares).
pub(crate) fn is_valid_source_filename(name: &str) -> bool {
    let forbidden = |c: char| {
        matches!(c, '<' | '>' | ':' | '"' | '/' | '\\' | '|' | '?' | '*')
            || c.is_ascii_control() // \x00-\x1F and \x7F
            || matches!(c, '\u{A0}' | '\u{AD}')
            || "#[]@!$&'()+,;=".contains(c)
            || "{}^~`".contains(c)
    };
    !name.chars().any(forbidden) && !name.starts_with(['.', '-'])
}

/// PHP's conversion of a JSON scalar to `string`: `None` for arrays and objects.
/// `null` → `""`, `true` → `"1"`, `false` → `""`, numbers as PHP prints them.
pub(crate) fn php_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some(String::new()),
        Value::Bool(true) => Some("1".to_owned()),
        Value::Bool(false) => Some(String::new()),
        Value::Number(n) => Some(match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => php_float_string(f),
            _ => n.to_string(),
        }),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// PHP 8's `(string)$float` (serialize_precision -1): integral values without a fraction,
/// exponent form from 1e15 up or below 1e-4. Shortest round-trip digits, as PHP.
fn php_float_string(f: f64) -> String {
    if f.is_nan() {
        return "NAN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "INF" } else { "-INF" }.to_owned();
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e15).contains(&a) {
        // Rust's `{:e}` is shortest round-trip too: "1e25", "1.5e-7" → PHP "1.0E+25", "1.5E-7".
        let s = format!("{f:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let mant = if mant.contains('.') {
            mant.to_owned()
        } else {
            format!("{mant}.0")
        };
        let exp = if exp.starts_with('-') {
            exp.to_owned()
        } else {
            format!("+{exp}")
        };
        return format!("{mant}E{exp}");
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    format!("{f}")
}

/// PHP `is_numeric` followed by the numeric value: JSON numbers, and strings in PHP 8's numeric
/// syntax (surrounding whitespace allowed; no hex, no INF/NAN). Bools and everything else: `None`.
pub(crate) fn php_numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let t = s.trim_matches(PHP_WS);
            (numeric_prefix_len(t) == t.len() && !t.is_empty())
                .then(|| t.parse::<f64>().ok())
                .flatten()
        }
        _ => None,
    }
}

const PHP_WS: [char; 6] = [' ', '\t', '\n', '\r', '\u{0B}', '\u{0C}'];

/// Length of the longest prefix of `s` in PHP's numeric-string syntax
/// `[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?`; 0 if none.
fn numeric_prefix_len(s: &str) -> usize {
    let b = s.as_bytes();
    let digits = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let int_end = digits(i);
    let mut end = int_end;
    let mut have_digits = int_end > i;
    if end < b.len() && b[end] == b'.' {
        let frac_end = digits(end + 1);
        if have_digits || frac_end > end + 1 {
            have_digits = true;
            end = frac_end;
        }
    }
    if !have_digits {
        return 0;
    }
    if end < b.len() && (b[end] == b'e' || b[end] == b'E') {
        let mut j = end + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let exp_end = digits(j);
        if exp_end > j {
            end = exp_end;
        }
    }
    end
}

/// PHP 8's `intval`: numbers truncate, strings take their leading numeric part (0 if none),
/// bools are 0/1, null 0, arrays 0 if empty else 1, objects 1.
pub(crate) fn php_intval(v: &Value) -> i64 {
    let trunc = |f: f64| if f.is_finite() { f.trunc() as i64 } else { 0 };
    match v {
        Value::Null | Value::Bool(false) => 0,
        Value::Bool(true) | Value::Object(_) => 1,
        Value::Array(a) => i64::from(!a.is_empty()),
        Value::Number(n) => n
            .as_i64()
            .unwrap_or_else(|| n.as_f64().map(trunc).unwrap_or(i64::MAX)),
        Value::String(s) => {
            let t = s.trim_start_matches(PHP_WS);
            let n = numeric_prefix_len(t);
            t[..n].parse::<f64>().map(trunc).unwrap_or(0)
        }
    }
}

/// PHP truthiness of a decoded JSON value (objects are always true in PHP).
pub(crate) fn php_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !(s.is_empty() || s == "0"),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}

/// PHP's `print_r` of a decoded JSON value (JSON objects rendered as arrays), as used in Jobe's
/// "Invalid file specifier" message.
pub(crate) fn print_r(v: &Value) -> String {
    let mut out = String::new();
    print_r_into(&mut out, v, 0);
    out
}

fn print_r_into(out: &mut String, v: &Value, indent: usize) {
    let mut hash = |items: &mut dyn Iterator<Item = (String, &Value)>| {
        out.push_str("Array\n");
        out.push_str(&" ".repeat(indent));
        out.push_str("(\n");
        for (k, val) in items {
            out.push_str(&" ".repeat(indent + 4));
            out.push_str(&format!("[{k}] => "));
            print_r_into(out, val, indent + 8);
            out.push('\n');
        }
        out.push_str(&" ".repeat(indent));
        out.push_str(")\n");
    };
    match v {
        Value::Array(a) => hash(&mut a.iter().enumerate().map(|(i, x)| (i.to_string(), x))),
        Value::Object(m) => hash(&mut m.iter().map(|(k, x)| (k.clone(), x))),
        scalar => out.push_str(&php_string(scalar).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Jobe's order of checks, PHP coercions, names, `clean`.
    use serde_json::json;

    use super::*;

    fn known(l: &str) -> bool {
        matches!(l, "python3" | "c" | "java")
    }

    fn parse(v: Value) -> Result<RunRequest, ApiError> {
        parse_run_body(v.to_string().as_bytes(), known, 120)
    }

    fn err(v: Value) -> String {
        match parse(v) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    fn ok(spec: Value) -> RunRequest {
        parse(json!({ "run_spec": spec })).expect("valid run_spec")
    }

    fn base() -> Value {
        json!({"language_id": "python3", "sourcecode": "print(1)"})
    }

    fn with(k: &str, v: Value) -> Value {
        let mut b = base();
        b[k] = v;
        b
    }

    fn raw_err(body: &[u8]) -> String {
        match parse_run_body(body, known, 120) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn test_body_shape_errors() {
        // §1.15: invalid JSON (Jobe 500) → 400 here.
        assert!(raw_err(b"{not json").starts_with("Failed to parse JSON request body"));
        assert!(raw_err(b"{\"run_spec\": \"\xff\"}").starts_with("Failed to parse JSON"));
        for body in [&b""[..], b"  \n", b"[]", b"[1]", b"\"s\"", b"5", b"null"] {
            assert_eq!(raw_err(body), "Non-JSON post data received", "{body:?}");
        }
        // {} / no run_spec (Jobe 500) and a non-object run_spec.
        for v in [json!({}), json!({"x": 1}), json!({"run_spec": null})] {
            assert_eq!(err(v), "No run_spec attribute found in post data");
        }
        for rs in [json!("x"), json!([]), json!([1]), json!(3)] {
            assert_eq!(
                err(json!({ "run_spec": rs })),
                "No run_spec attribute found in post data"
            );
        }
    }

    #[test]
    fn test_required_attributes_in_order() {
        let e = err(json!({"run_spec": {}}));
        assert_eq!(e, "run_spec is missing the required attribute 'sourcecode'");
        let e = err(json!({"run_spec": {"language_id": "c", "sourcecode": null}}));
        assert_eq!(e, "run_spec is missing the required attribute 'sourcecode'");
        let e = err(json!({"run_spec": {"sourcecode": "x"}}));
        assert_eq!(
            e,
            "run_spec is missing the required attribute 'language_id'"
        );
        // sourcecode as array (Jobe 500) → 400 naming the field, checked before language_id.
        let e = err(json!({"run_spec": {"sourcecode": ["x"]}}));
        assert_eq!(e, "run_spec attribute 'sourcecode' must be a string");
        let e = err(json!({"run_spec": {"sourcecode": "x", "language_id": {"a": 1}}}));
        assert_eq!(e, "run_spec attribute 'language_id' must be a string");
    }

    #[test]
    fn test_language_lowercased_and_checked() {
        assert_eq!(
            ok(with("language_id", json!("PyThOn3"))).job.language,
            "python3"
        );
        for (id, shown) in [
            (json!("cobol"), "cobol"),
            (json!("python2"), "python2"),
            (json!(5), "5"),
            (json!("COBOL"), "cobol"),
            (json!(true), "1"),
        ] {
            let e = err(json!({ "run_spec": with("language_id", id) }));
            assert_eq!(e, format!("Language '{shown}' is not known"));
        }
        // The language check comes before later checks (bad sourcefilename).
        let mut s = with("language_id", json!("cobol"));
        s["sourcefilename"] = json!("../x");
        assert_eq!(
            err(json!({ "run_spec": s })),
            "Language 'cobol' is not known"
        );
    }

    #[test]
    fn test_scalar_coercions() {
        let r = ok(json!({"language_id": "c", "sourcecode": 42, "input": 7}));
        assert_eq!(r.job.source, "42");
        assert_eq!(r.job.input, "7");
        let r = ok(json!({"language_id": "c", "sourcecode": true, "input": false}));
        assert_eq!(r.job.source, "1");
        assert_eq!(r.job.input, "");
        assert_eq!(ok(with("sourcecode", json!(1.5))).job.source, "1.5");
        assert_eq!(ok(with("sourcecode", json!(2.0))).job.source, "2");
        assert_eq!(ok(with("sourcecode", json!(1e25))).job.source, "1.0E+25");
        assert_eq!(ok(with("sourcecode", json!(""))).job.source, "");
        // input absent/null → "", "0" kept verbatim (the jail treats it as no stdin).
        assert_eq!(ok(base()).job.input, "");
        assert_eq!(ok(with("input", json!(null))).job.input, "");
        assert_eq!(ok(with("input", json!("0"))).job.input, "0");
        assert_eq!(
            err(json!({ "run_spec": with("input", json!(["a"])) })),
            "run_spec attribute 'input' must be a string"
        );
    }

    #[test]
    fn test_debug_truthiness() {
        assert!(!ok(base()).job.debug);
        for v in [
            json!(1),
            json!(true),
            json!("yes"),
            json!("false"),
            json!([0]),
            json!({}),
        ] {
            assert!(ok(with("debug", v.clone())).job.debug, "{v}");
        }
        for v in [
            json!(0),
            json!(false),
            json!(""),
            json!("0"),
            json!([]),
            json!(null),
            json!(0.0),
        ] {
            assert!(!ok(with("debug", v.clone())).job.debug, "{v}");
        }
    }

    #[test]
    fn test_parameters_shapes_and_numbers() {
        for p in [json!([]), json!({}), json!(null), json!("x"), json!([5])] {
            assert_eq!(ok(with("parameters", p)).job.params, Params::default());
        }
        let p = ok(with(
            "parameters",
            json!({
                "cputime": "3", "memorylimit": 1.5, "disklimit": " -1 ", "streamsize": "abc; rm -rf /",
                "numprocs": true, "jobeserver": "x", "unknown": {"a": 1},
            }),
        ))
        .job
        .params;
        assert_eq!(p.cputime, Some(3.0));
        assert_eq!(p.memorylimit, Some(1.5));
        assert_eq!(p.disklimit, Some(-1.0));
        assert_eq!(p.streamsize, None);
        assert_eq!(p.numprocs, None);
        let p = ok(with(
            "parameters",
            json!({"cputime": ".5", "memorylimit": "1e3", "disklimit": "0x1A", "numprocs": "5."}),
        ))
        .job
        .params;
        assert_eq!(p.cputime, Some(0.5));
        assert_eq!(p.memorylimit, Some(1000.0));
        assert_eq!(p.disklimit, None);
        assert_eq!(p.numprocs, Some(5.0));
    }

    #[test]
    fn test_list_parameters() {
        let p = ok(with(
            "parameters",
            json!({"compileargs": ["-O2", 3], "linkargs": ["-lm"], "interpreterargs": [],
                   "runargs": ["a b", "username='o'\\''b'"], "main_class": "Main"}),
        ))
        .job
        .params;
        assert_eq!(p.compileargs, Some(vec!["-O2".to_owned(), "3".to_owned()]));
        assert_eq!(p.linkargs, Some(vec!["-lm".to_owned()]));
        assert_eq!(p.interpreterargs, Some(vec![]));
        assert_eq!(p.runargs.unwrap()[1], "username='o'\\''b'");
        assert_eq!(p.main_class.as_deref(), Some("Main"));
        // compileargs as a string (Jobe 500) → 400 naming the field.
        let e = err(json!({ "run_spec": with("parameters", json!({"compileargs": "-O2"})) }));
        assert_eq!(e, "parameters.compileargs must be a list of strings");
        let e = err(json!({ "run_spec": with("parameters", json!({"runargs": [["x"]]})) }));
        assert_eq!(e, "parameters.runargs must be a list of strings");
        // ... but Jobe's own 400s (here a bad sourcefilename) take precedence.
        let mut s = with("parameters", json!({"compileargs": "-O2"}));
        s["sourcefilename"] = json!("../x");
        assert_eq!(
            err(json!({ "run_spec": s })),
            "The sourcefilename for the run_spec is illegal"
        );
    }

    #[test]
    fn test_cputime_upper_limit() {
        let msg = "cputime exceeds maximum allowed on this Jobe server (120 secs)";
        for v in [json!(121), json!("121"), json!(121.5), json!("500abc")] {
            assert_eq!(
                err(json!({ "run_spec": with("parameters", json!({"cputime": v})) })),
                msg
            );
        }
        for v in [json!(120), json!(120.9), json!("120.9"), json!("abc")] {
            ok(with("parameters", json!({ "cputime": v })));
        }
        // Non-numeric cputime: accepted, treated as absent (default used).
        assert_eq!(
            ok(with("parameters", json!({"cputime": "abc"})))
                .job
                .params
                .cputime,
            None
        );
    }

    #[test]
    fn test_sourcefilename() {
        assert_eq!(ok(base()).job.source_name, None);
        for (v, want) in [
            (json!(""), None),
            (json!("prog.java"), None),
            (json!(null), None),
            (json!("__tester__.python3"), Some("__tester__.python3")),
            (json!("Main.java"), Some("Main.java")),
            (json!("my prog.py"), Some("my prog.py")),
            (json!("prög.py"), Some("prög.py")),
            (json!("a-b.c"), Some("a-b.c")),
            (json!(5), Some("5")),
        ] {
            assert_eq!(
                ok(with("sourcefilename", v.clone()))
                    .job
                    .source_name
                    .as_deref(),
                want,
                "{v}"
            );
        }
        for v in [
            json!("../x.c"),
            json!(".x.c"),
            json!("-x"),
            json!("a/b"),
            json!("a\\b"),
            json!("a:b"),
            json!("a\nb"),
            json!("x$y"),
            json!("x`y`"),
            json!("a\u{a0}b"),
            json!("a~"),
            json!("."),
            json!(["x"]),
        ] {
            assert_eq!(
                err(json!({ "run_spec": with("sourcefilename", v.clone()) })),
                "The sourcefilename for the run_spec is illegal",
                "{v}"
            );
        }
    }

    #[test]
    fn test_nul_in_arguments_and_long_names() {
        for k in ["compileargs", "linkargs", "interpreterargs", "runargs"] {
            let e = err(json!({ "run_spec": with("parameters", json!({ k: ["a\0b"] })) }));
            assert_eq!(e, format!("parameters.{k} must not contain NUL bytes"));
        }
        let e = err(json!({ "run_spec": with("parameters", json!({"main_class": "M\0"})) }));
        assert_eq!(e, "parameters.main_class must not contain NUL bytes");
        // NUL in source and input is data: kept.
        let r = ok(json!({"language_id": "c", "sourcecode": "a\0b", "input": "\0"}));
        assert_eq!(r.job.source, "a\0b");
        assert_eq!(r.job.input, "\0");
        let long = format!("{}.py", "a".repeat(197));
        assert_eq!(
            ok(with("sourcefilename", json!(long.clone())))
                .job
                .source_name
                .as_deref(),
            Some(long.as_str())
        );
        let e = err(json!({ "run_spec": with("sourcefilename", json!(format!("a{long}"))) }));
        assert!(e.ends_with("(longer than 200 bytes)"), "{e}");
        for entry in [
            json!(["a".repeat(201), "f"]),
            json!(["abcdefgh", "f".repeat(201)]),
        ] {
            let m = err(json!({ "run_spec": with("file_list", json!([entry])) }));
            assert!(m.starts_with("Invalid file specifier"), "{m}");
        }
    }

    #[test]
    fn test_file_list() {
        let r = ok(with(
            "file_list",
            json!([
                ["900150983cd24fb0d6963f7d28e17f72", "data.txt"],
                ["abcdefgh", ".hidden", 1]
            ]),
        ));
        assert_eq!(
            r.file_list,
            vec![
                (
                    "900150983cd24fb0d6963f7d28e17f72".to_owned(),
                    "data.txt".to_owned()
                ),
                ("abcdefgh".to_owned(), ".hidden".to_owned())
            ]
        );
        assert!(ok(with("file_list", json!([]))).file_list.is_empty());
        // Jobe's exact print_r rendering for list entries.
        assert_eq!(
            err(json!({ "run_spec": with("file_list", json!([["abc", "f"]])) })),
            "Invalid file specifier: Array\n(\n    [0] => abc\n    [1] => f\n)\n"
        );
        for e in [
            json!(["abcdefg", "f"]),
            json!(["abcd-efgh", "f"]),
            json!(["abcdefgh", "a/b"]),
            json!(["abcdefgh", ".."]),
            json!(["abcdefgh", "-"]),
            json!(["abcdefgh", "my file"]),
            json!(["abcdefgh", ""]),
            json!(["abcdefgh"]),
            json!(["abcdefgh", "f", 1, 2]),
            json!([12345678, "f"]),
        ] {
            let m = err(json!({ "run_spec": with("file_list", json!([e.clone()])) }));
            assert!(
                m.starts_with("Invalid file specifier: Array\n("),
                "{e}: {m}"
            );
        }
        // Entry as object (Jobe 500) → 400 naming the entry.
        let m = err(json!({ "run_spec": with("file_list", json!([{"id": "abcdefgh"}])) }));
        assert!(
            m.starts_with("Invalid file specifier: file_list[0] must be a list"),
            "{m}"
        );
        let m = err(json!({ "run_spec": with("file_list", json!("abcdefgh")) }));
        assert!(m.contains("'file_list' must be a list"), "{m}");
    }

    #[test]
    fn test_unknown_keys_ignored_and_full_coderunner_body() {
        let body = br#"{"run_spec":{"language_id":"python3","sourcecode":"print(\"h\u00e9llo\/w\u00f6rld\")","sourcefilename":"__tester__.python3","input":"","file_list":[["900150983cd24fb0d6963f7d28e17f72","data.txt"]],"parameters":[],"jobeserver":"jobe1;jobe2"},"extra":1}"#;
        let r = parse_run_body(body, known, 120).unwrap();
        assert_eq!(r.job.source, "print(\"héllo/wörld\")");
        assert_eq!(r.job.source_name.as_deref(), Some("__tester__.python3"));
        assert_eq!(r.file_list.len(), 1);
        assert!(r.job.files.is_empty());
    }

    #[test]
    fn test_php_helpers() {
        assert_eq!(php_intval(&json!("  12abc")), 12);
        assert_eq!(php_intval(&json!("1e3")), 1000);
        assert_eq!(php_intval(&json!("abc")), 0);
        assert_eq!(php_intval(&json!(-3.9)), -3);
        assert_eq!(php_intval(&json!([1])), 1);
        assert_eq!(php_numeric(&json!("")), None);
        assert_eq!(php_numeric(&json!(".")), None);
        assert_eq!(php_numeric(&json!("1e")), None);
        assert_eq!(php_numeric(&json!("INF")), None);
        assert_eq!(php_numeric(&json!("+2.5e-1")), Some(0.25));
        assert_eq!(php_float_string(0.0001), "0.0001");
        assert_eq!(php_float_string(1.5e-7), "1.5E-7");
        assert_eq!(
            print_r(&json!(["a", ["b"], true, null])),
            "Array\n(\n    [0] => a\n    [1] => Array\n        (\n            [0] => b\n        )\n\n    [2] => 1\n    [3] => \n)\n"
        );
    }

    #[test]
    fn test_mangled_bodies_never_panic() {
        let body = br#"{"run_spec":{"language_id":"python3","sourcecode":"x","sourcefilename":"a.py","input":"1","file_list":[["abcdefgh","f.txt",0]],"parameters":{"cputime":"2","runargs":["a"],"main_class":"M"},"debug":1}}"#;
        // Every truncation.
        for n in 0..body.len() {
            let _ = parse_run_body(&body[..n], known, 120);
        }
        // Deterministic byte mutations (xorshift), including non-UTF-8 and structural bytes.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"{}[]\",:0123456789.eE+-ntfaul \xff\x00";
        for _ in 0..5000 {
            let mut b = body.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() % b.len() as u64) as usize;
                b[i] = alphabet[(next() % alphabet.len() as u64) as usize];
            }
            let _ = parse_run_body(&b, known, 120);
        }
        for v in [
            json!(1e308),
            json!(-1e308),
            json!(u64::MAX),
            json!(i64::MIN),
            json!("9".repeat(400)),
        ] {
            let _ = php_intval(&v);
            let _ = php_numeric(&v);
            let _ = php_string(&v);
        }
    }

    #[test]
    fn test_details_opt_in() {
        assert!(!ok(base()).job.details);
        for v in [json!(true), json!(1), json!("yes")] {
            assert!(ok(with("runner_details", v.clone())).job.details, "{v}");
        }
        for v in [json!(false), json!(0), json!("0"), json!(""), json!(null)] {
            assert!(!ok(with("runner_details", v.clone())).job.details, "{v}");
        }
    }
}
