//! Pure post-processing of step output: building `cmpinfo` from the compile step and filtering the
//! run step's stderr (Jobe's octave filter). No I/O: the caller passes a file reader.

use super::plan::{CmpinfoRule, StderrFilter};

/// Builds `cmpinfo` from the compile step's output according to `rule`. `read_file` reads a file
/// of the run directory by name (`None`: it does not exist).
///
/// * `Stderr { None }`: the compiler's stderr.
/// * `Stderr { Some(sep) }`: stdout + sep + stderr when both are non-empty, else stderr.
/// * `FileUnlessExists`: empty if `unless_exists` exists (compiled); else the content of `file`,
///   falling back to stderr and then stdout when that file is missing or empty, so that a failed
///   compile never yields an empty cmpinfo when the compiler said something.
pub fn cmpinfo(
    rule: &CmpinfoRule,
    stdout: &[u8],
    stderr: &[u8],
    read_file: impl Fn(&str) -> Option<Vec<u8>>,
) -> Vec<u8> {
    match rule {
        CmpinfoRule::Stderr {
            stdout_separator: Some(sep),
        } if !stdout.is_empty() && !stderr.is_empty() => {
            let mut out = Vec::with_capacity(stdout.len() + sep.len() + stderr.len());
            out.extend_from_slice(stdout);
            out.extend_from_slice(sep.as_bytes());
            out.extend_from_slice(stderr);
            out
        }
        CmpinfoRule::Stderr { .. } => stderr.to_vec(),
        CmpinfoRule::FileUnlessExists {
            file,
            unless_exists,
        } => {
            if read_file(unless_exists).is_some() {
                return Vec::new();
            }
            match read_file(file) {
                Some(content) if !content.is_empty() => content,
                _ if !stderr.is_empty() => stderr.to_vec(),
                _ => stdout.to_vec(),
            }
        }
    }
}

/// Applies `filter` to a run step's stderr. With the default filter the input is returned unchanged.
///
/// Octave's (Jobe's `OctaveTask::filteredStderr`): remove every `\r`, remove trailing blank lines,
/// then for each pattern of `drop_final_line` in order, drop the last line if it matches; a non-empty result ends with `\n`.
pub fn filter_stderr(filter: &StderrFilter, stderr: Vec<u8>) -> Vec<u8> {
    if !filter.strip_cr && !filter.trim_trailing_blank_lines && filter.drop_final_line.is_empty() {
        return stderr;
    }
    let mut text = stderr;
    if filter.strip_cr {
        text.retain(|&b| b != b'\r');
    }
    let ends_with_newline = text.last() == Some(&b'\n');
    let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
    if ends_with_newline {
        // The empty piece after the final '\n' is not a line.
        lines.pop();
    }
    if filter.trim_trailing_blank_lines {
        while lines
            .last()
            .is_some_and(|l| l.iter().all(u8::is_ascii_whitespace))
        {
            lines.pop();
        }
    }
    // In order, as Jobe's two `if`s: each pattern may drop the (new) last line once.
    for re in &filter.drop_final_line {
        // Validated when the profile loaded; an invalid pattern simply never matches.
        let Ok(re) = regex::bytes::Regex::new(re) else {
            continue;
        };
        if lines.last().is_some_and(|last| re.is_match(last)) {
            lines.pop();
        }
    }
    if lines.is_empty() {
        return Vec::new();
    }
    let mut out = lines.join(&b'\n');
    if ends_with_newline || filter.trim_trailing_blank_lines {
        out.push(b'\n');
    }
    out
}
