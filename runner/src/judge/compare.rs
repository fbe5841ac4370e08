//! Output comparison: a program's output against a case's expected output, in one of three modes
//! (docs/judge.md, "Compare modes").
//!
//! Owns: the compare settings (`CompareSpec`), tokenising on ASCII whitespace, the decimal-number
//! grammar of float mode, the tolerance rule, and the first-difference message.
//!
//! Must not: hold either output whole. Both sides are read as streams (`BufRead`), one token and
//! one whitespace run at a time, so memory is bounded by the longest token or whitespace run, not
//! by the output; the expected output comes from a file of the test-set store. It must not log
//! either output (the program's output is the client's data).
//!
//! Modes:
//! - `text`: byte-exact. When the bytes differ but the tokens are all equal, the verdict is PE.
//! - `token` (default): both sides split on ASCII whitespace (space, `\t`, `\n`, `\r`, `\v`,
//!   `\f`); the token lists must be equal (ignoring ASCII case with `case_sensitive = false`).
//! - `float`: as `token`, except where the expected token is a decimal number: then the output
//!   token must be one too, and within the tolerance.

use std::io::{self, BufRead};

use serde::{Deserialize, Serialize};

use super::verdict::Verdict;

/// Default absolute tolerance of float mode.
pub const DEFAULT_FLOAT_ABS_EPS: f64 = 1e-6;

/// Longest excerpt of a token or whitespace run in a difference message, in bytes.
pub const MESSAGE_EXCERPT_BYTES: usize = 64;

/// How outputs are compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompareMode {
    /// Byte-exact; PE when only whitespace differs.
    Text,
    /// Whitespace-separated tokens must be equal.
    #[default]
    Token,
    /// As `Token`, with numbers compared within a tolerance.
    Float,
}

impl CompareMode {
    /// Every mode (the CLI's choices derive from it).
    pub const ALL: [CompareMode; 3] = [CompareMode::Text, CompareMode::Token, CompareMode::Float];

    /// The name used in `problem.toml`, the manifest and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            CompareMode::Text => "text",
            CompareMode::Token => "token",
            CompareMode::Float => "float",
        }
    }
}

/// A name that is not a compare mode.
#[derive(Debug, thiserror::Error)]
#[error("unknown compare mode '{0}' (one of: {names})", names = CompareMode::ALL.map(CompareMode::name).join(", "))]
pub struct UnknownCompareMode(String);

impl std::str::FromStr for CompareMode {
    type Err = UnknownCompareMode;

    /// The mode named `s` (as [`CompareMode::name`] writes it).
    fn from_str(s: &str) -> Result<CompareMode, UnknownCompareMode> {
        CompareMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownCompareMode(s.to_owned()))
    }
}

/// The compare settings of a test set (from `problem.toml`; validated there).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareSpec {
    pub mode: CompareMode,
    /// `false`: tokens are compared ignoring ASCII case (token and float modes).
    pub case_sensitive: bool,
    /// Float mode: numbers are equal when `|got - expected| <= float_abs_eps` ...
    pub float_abs_eps: f64,
    /// ... or, when set, `|got - expected| <= float_rel_eps * |expected|`.
    pub float_rel_eps: Option<f64>,
    /// No difference message for WA and PE (the message would show expected output).
    pub hide_diff: bool,
}

impl Default for CompareSpec {
    fn default() -> CompareSpec {
        CompareSpec {
            mode: CompareMode::Token,
            case_sensitive: true,
            float_abs_eps: DEFAULT_FLOAT_ABS_EPS,
            float_rel_eps: None,
            hide_diff: false,
        }
    }
}

/// The result of comparing one output: AC, WA or PE, and for WA/PE the first difference (unless
/// the test set hides it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub verdict: Verdict,
    pub message: Option<String>,
}

impl Comparison {
    fn accepted() -> Comparison {
        Comparison {
            verdict: Verdict::Ac,
            message: None,
        }
    }
}

/// Compares `output` (the program's stdout) with `expected`. An `Err` is a failure to read
/// either side: the judge's fault (IE), never the program's.
pub fn compare(
    spec: &CompareSpec,
    expected: impl BufRead,
    output: impl BufRead,
) -> io::Result<Comparison> {
    let mut exp = Tokens::new(expected, spec.mode == CompareMode::Text);
    let mut out = Tokens::new(output, spec.mode == CompareMode::Text);
    // Text mode: the first whitespace difference, kept while tokens keep matching (then PE).
    let mut space_diff: Option<String> = None;
    loop {
        let e = exp.next()?;
        let o = out.next()?;
        if spec.mode == CompareMode::Text && space_diff.is_none() && exp.space != out.space {
            space_diff = Some(format!(
                "{}: expected {}, got {}",
                out.space_position(),
                excerpt(&exp.space),
                excerpt(&out.space)
            ));
        }
        let differs = match (e, o) {
            (false, false) => break,
            (true, true) => !tokens_equal(spec, &exp.token, &out.token),
            _ => true,
        };
        if differs {
            let show = |present: bool, token: &[u8]| {
                if present {
                    excerpt(token)
                } else {
                    "end of output".to_owned()
                }
            };
            let message = format!(
                "{}: expected {}, got {}",
                out.token_position(o),
                show(e, &exp.token),
                show(o, &out.token),
            );
            return Ok(differ(spec, Verdict::Wa, message));
        }
    }
    Ok(match space_diff {
        Some(message) => differ(spec, Verdict::Pe, message),
        None => Comparison::accepted(),
    })
}

/// [`compare`] of two byte strings (tests, and the `runner judge` command on small files).
pub fn compare_bytes(spec: &CompareSpec, expected: &[u8], output: &[u8]) -> Comparison {
    compare(spec, expected, output).expect("reading a byte slice cannot fail")
}

fn differ(spec: &CompareSpec, verdict: Verdict, message: String) -> Comparison {
    Comparison {
        verdict,
        message: (!spec.hide_diff).then_some(message),
    }
}

fn tokens_equal(spec: &CompareSpec, expected: &[u8], got: &[u8]) -> bool {
    let same_text = |a: &[u8], b: &[u8]| {
        // Text mode is byte-exact whatever `case_sensitive` says (`problem.toml` refuses the
        // combination; a `CompareSpec` built in code might not).
        if spec.case_sensitive || spec.mode == CompareMode::Text {
            a == b
        } else {
            a.eq_ignore_ascii_case(b)
        }
    };
    if spec.mode != CompareMode::Float {
        return same_text(expected, got);
    }
    match decimal(expected) {
        None => same_text(expected, got),
        Some(e) => decimal(got).is_some_and(|g| floats_close(spec, e, g)),
    }
}

/// Float mode's tolerance: `|g - e| <= abs_eps`, or `<= rel_eps * |e|` when `rel_eps` is set.
///
/// The bound is inclusive as written in decimal: `2.000001` against `2` with eps `1e-6` is
/// accepted, although in binary the difference comes out a hair above `1e-6`. For that, the
/// bound is widened by the rounding error of the subtraction (about one unit in the last place
/// of the operands), far below any tolerance a test set would use.
fn floats_close(spec: &CompareSpec, expected: f64, got: f64) -> bool {
    if expected == got {
        // Also equal infinities, from decimals too large for f64 (their difference is NaN).
        return true;
    }
    let diff = (got - expected).abs();
    let rounding = (got.abs() + expected.abs()) * f64::EPSILON;
    diff <= spec.float_abs_eps + rounding
        || spec
            .float_rel_eps
            .is_some_and(|rel| diff <= rel * expected.abs() + rounding)
}

/// The value of `token` if it is a decimal number: `[+-]?digits[.digits][(e|E)[+-]digits]`, or
/// with no digits before the point (`.5`). Not: `5.`, `nan`, `inf`, hex, `1_000`, empty parts.
pub fn decimal(token: &[u8]) -> Option<f64> {
    fn digits(s: &[u8], i: &mut usize) -> usize {
        let start = *i;
        while s.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    }
    let mut i = 0;
    if matches!(token.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int = digits(token, &mut i);
    if token.get(i) == Some(&b'.') {
        i += 1;
        if digits(token, &mut i) == 0 {
            return None;
        }
    } else if int == 0 {
        return None;
    }
    if matches!(token.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(token.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(token, &mut i) == 0 {
            return None;
        }
    }
    if i != token.len() {
        return None;
    }
    // The grammar above is a subset of what Rust's f64 parser accepts, and it is ASCII.
    std::str::from_utf8(token).ok()?.parse().ok()
}

/// The whitespace of the compare modes: ASCII space, `\t`, `\n`, `\v`, `\f`, `\r`. (Not
/// `u8::is_ascii_whitespace`, which leaves out `\v`.)
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// One side of a comparison, read as alternating whitespace runs and tokens.
struct Tokens<R> {
    reader: R,
    /// Keep the whitespace run before the current token (text mode); else only count lines.
    keep_space: bool,
    /// The whitespace before the current token (or before the end), when `keep_space`.
    space: Vec<u8>,
    /// The current token.
    token: Vec<u8>,
    /// 1-based line of the read position.
    line: u64,
    /// Tokens started on the current line so far.
    tokens_on_line: u64,
    /// Line and number-on-line of the last token read.
    last_token: Option<(u64, u64)>,
    /// `last_token` before the current whitespace run, for whitespace messages; `None` at the
    /// start.
    before_space: Option<(u64, u64)>,
}

impl<R: BufRead> Tokens<R> {
    fn new(reader: R, keep_space: bool) -> Tokens<R> {
        Tokens {
            reader,
            keep_space,
            space: Vec::new(),
            token: Vec::new(),
            line: 1,
            tokens_on_line: 0,
            last_token: None,
            before_space: None,
        }
    }

    /// Reads the next whitespace run into `space` and the token after it into `token`. `false`
    /// at the end of the input (then `space` holds the trailing whitespace).
    fn next(&mut self) -> io::Result<bool> {
        self.before_space = self.last_token;
        self.space.clear();
        self.token.clear();
        // The whitespace run.
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(false);
            }
            let n = buf.iter().position(|&b| !is_space(b)).unwrap_or(buf.len());
            for &b in &buf[..n] {
                if b == b'\n' {
                    self.line += 1;
                    self.tokens_on_line = 0;
                }
            }
            if self.keep_space {
                self.space.extend_from_slice(&buf[..n]);
            }
            let at_token = n < buf.len();
            self.reader.consume(n);
            if at_token {
                break;
            }
        }
        // The token.
        loop {
            let buf = self.reader.fill_buf()?;
            let n = buf.iter().position(|&b| is_space(b)).unwrap_or(buf.len());
            self.token.extend_from_slice(&buf[..n]);
            let ended = n < buf.len() || buf.is_empty();
            self.reader.consume(n);
            if ended {
                break;
            }
        }
        self.tokens_on_line += 1;
        self.last_token = Some((self.line, self.tokens_on_line));
        Ok(true)
    }

    /// Where the current token is, or where the output ended (`present == false`).
    fn token_position(&self, present: bool) -> String {
        if present {
            format!("line {}, token {}", self.line, self.tokens_on_line)
        } else {
            format!(
                "line {}, token {} (end of output)",
                self.line,
                self.tokens_on_line + 1
            )
        }
    }

    /// Where the current whitespace run is: after the token before it, or at the start.
    fn space_position(&self) -> String {
        match self.before_space {
            Some((line, n)) => format!("line {line}, after token {n}"),
            None => "line 1, before the first token".to_owned(),
        }
    }
}

/// `bytes` for a message: at most [`MESSAGE_EXCERPT_BYTES`] (cut on a UTF-8 character boundary),
/// quoted, control characters and invalid UTF-8 escaped (`\n`, `\x0b`, `\xff`), with the full
/// length when cut.
pub fn excerpt(bytes: &[u8]) -> String {
    let mut cut = bytes.len().min(MESSAGE_EXCERPT_BYTES);
    if cut < bytes.len() {
        // Back off over UTF-8 continuation bytes (at most 3) so a character is not split.
        let floor = cut.saturating_sub(3);
        while cut > floor && (bytes[cut] & 0xc0) == 0x80 {
            cut -= 1;
        }
    }
    let mut s = String::with_capacity(cut + 24);
    s.push('"');
    for chunk in bytes[..cut].utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                '\r' => s.push_str("\\r"),
                c if c.is_ascii_control() => s.push_str(&format!("\\x{:02x}", u32::from(c))),
                c if c.is_ascii() => s.push(c),
                // Printable characters as they are; invisible ones as `\u{...}`.
                c => s.extend(c.escape_debug()),
            }
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s.push('"');
    if cut < bytes.len() {
        s.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    s
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Table tests of the three modes, the number grammar and the
    //! messages.
    use std::io::{BufReader, Read};

    use super::*;

    fn spec(mode: CompareMode) -> CompareSpec {
        CompareSpec {
            mode,
            ..CompareSpec::default()
        }
    }

    /// Compares with a normal buffer and with tiny ones (tokens and whitespace runs split
    /// across reads); every way must agree.
    fn run(spec: &CompareSpec, expected: &str, output: &str) -> Comparison {
        let whole = compare_bytes(spec, expected.as_bytes(), output.as_bytes());
        for cap in 1..=3 {
            let e = BufReader::with_capacity(cap, expected.as_bytes());
            let o = BufReader::with_capacity(cap, output.as_bytes());
            assert_eq!(compare(spec, e, o).unwrap(), whole, "buffer of {cap}");
        }
        whole
    }

    fn check(spec: &CompareSpec, table: &[(&str, &str, Verdict, Option<&str>)]) {
        for &(expected, output, verdict, message) in table {
            let c = run(spec, expected, output);
            assert_eq!(
                (c.verdict, c.message.as_deref()),
                (verdict, message),
                "{:?}: expected {expected:?}, output {output:?}",
                spec.mode
            );
        }
    }

    #[test]
    fn test_token_mode() {
        use Verdict::*;
        check(
            &spec(CompareMode::Token),
            &[
                ("1 2 3\n", "1 2 3\n", Ac, None),
                // Trailing newline, CRLF, blank lines, tabs, \v and \f are all whitespace.
                ("1 2 3\n", "1 2 3", Ac, None),
                ("1 2\n3\n", "1 2\r\n3\r\n", Ac, None),
                ("1\n2\n", "\n\n1\n\n\n2\n\n", Ac, None),
                ("1 2", "1\t2", Ac, None),
                ("1 2", "1\x0b2\x0c", Ac, None),
                ("", "", Ac, None),
                ("", "\n \n", Ac, None),
                ("\n", "", Ac, None),
                // A different token.
                (
                    "1 2 3\n",
                    "1 2 4\n",
                    Wa,
                    Some("line 1, token 3: expected \"3\", got \"4\""),
                ),
                (
                    "a\nb c\n",
                    "a\nb d\n",
                    Wa,
                    Some("line 2, token 2: expected \"c\", got \"d\""),
                ),
                // Token count mismatch: missing and extra output.
                (
                    "1 2 3",
                    "1 2",
                    Wa,
                    Some("line 1, token 3 (end of output): expected \"3\", got end of output"),
                ),
                (
                    "1 2 3\n",
                    "1 2\n",
                    Wa,
                    Some("line 2, token 1 (end of output): expected \"3\", got end of output"),
                ),
                (
                    "1 2",
                    "1 2\n3",
                    Wa,
                    Some("line 2, token 1: expected end of output, got \"3\""),
                ),
                // Empty output.
                (
                    "42\n",
                    "",
                    Wa,
                    Some("line 1, token 1 (end of output): expected \"42\", got end of output"),
                ),
                // Case matters by default; no number tolerance in token mode.
                (
                    "Yes",
                    "yes",
                    Wa,
                    Some("line 1, token 1: expected \"Yes\", got \"yes\""),
                ),
                (
                    "1.0",
                    "1",
                    Wa,
                    Some("line 1, token 1: expected \"1.0\", got \"1\""),
                ),
                // Tokens are not split on Unicode spaces (only ASCII whitespace).
                (
                    "a b",
                    "a\u{a0}b",
                    Wa,
                    Some("line 1, token 1: expected \"a\", got \"a\\u{a0}b\""),
                ),
            ],
        );
    }

    #[test]
    fn test_token_mode_case_insensitive() {
        use Verdict::*;
        let s = CompareSpec {
            case_sensitive: false,
            ..spec(CompareMode::Token)
        };
        check(
            &s,
            &[
                ("Yes\nNO", "yes\nno", Ac, None),
                ("Straße", "STRAßE", Ac, None),
                // Only ASCII case is folded.
                (
                    "é",
                    "É",
                    Wa,
                    Some("line 1, token 1: expected \"é\", got \"É\""),
                ),
            ],
        );
    }

    #[test]
    fn test_text_mode() {
        use Verdict::*;
        check(
            &spec(CompareMode::Text),
            &[
                ("a b\n", "a b\n", Ac, None),
                ("", "", Ac, None),
                // Whitespace-only differences are PE, with where and what.
                (
                    "a b\n",
                    "a b",
                    Pe,
                    Some("line 1, after token 2: expected \"\\n\", got \"\""),
                ),
                (
                    "a\nb\n",
                    "a\r\nb\r\n",
                    Pe,
                    Some("line 1, after token 1: expected \"\\n\", got \"\\r\\n\""),
                ),
                (
                    "a b",
                    "a\tb",
                    Pe,
                    Some("line 1, after token 1: expected \" \", got \"\\t\""),
                ),
                (
                    "a\nb\n",
                    "a\n\nb\n",
                    Pe,
                    Some("line 1, after token 1: expected \"\\n\", got \"\\n\\n\""),
                ),
                (
                    "a",
                    " a",
                    Pe,
                    Some("line 1, before the first token: expected \"\", got \" \""),
                ),
                (
                    "x\ny z\n",
                    "x\ny  z\n",
                    Pe,
                    Some("line 2, after token 1: expected \" \", got \"  \""),
                ),
                (
                    "\n",
                    "",
                    Pe,
                    Some("line 1, before the first token: expected \"\\n\", got \"\""),
                ),
                // A token difference is WA even after a whitespace difference.
                (
                    "a b\n",
                    "a  c\n",
                    Wa,
                    Some("line 1, token 2: expected \"b\", got \"c\""),
                ),
                (
                    "a b\n",
                    "a\n",
                    Wa,
                    Some("line 2, token 1 (end of output): expected \"b\", got end of output"),
                ),
                // Byte-exact: case matters, numbers are text.
                (
                    "A",
                    "a",
                    Wa,
                    Some("line 1, token 1: expected \"A\", got \"a\""),
                ),
                (
                    "1.0",
                    "1.00",
                    Wa,
                    Some("line 1, token 1: expected \"1.0\", got \"1.00\""),
                ),
            ],
        );
    }

    #[test]
    fn test_float_mode_absolute() {
        use Verdict::*;
        check(
            &spec(CompareMode::Float),
            &[
                ("2", "2.000000", Ac, None),
                // At the eps boundary, both sides (eps = 1e-6, inclusive).
                ("2", "2.000001", Ac, None),
                ("2", "1.999999", Ac, None),
                (
                    "2",
                    "2.0000011",
                    Wa,
                    Some("line 1, token 1: expected \"2\", got \"2.0000011\""),
                ),
                (
                    "2",
                    "1.9999989",
                    Wa,
                    Some("line 1, token 1: expected \"2\", got \"1.9999989\""),
                ),
                ("0", "0.000001", Ac, None),
                ("0", "-0.000001", Ac, None),
                ("1000", "1000.000001", Ac, None),
                (
                    "1000",
                    "1000.0000011",
                    Wa,
                    Some("line 1, token 1: expected \"1000\", got \"1000.0000011\""),
                ),
                // Exponents, signs, a leading point.
                ("1e3", "1000.0000005", Ac, None),
                ("1E-7", "0", Ac, None),
                ("1.5e+2", "150", Ac, None),
                ("-0", "+0", Ac, None),
                (".5", "0.5", Ac, None),
                ("0.5", "+.5", Ac, None),
                // Non-numeric expected tokens compare exactly, numbers among them with eps.
                ("x = 1.5 ok", "x = 1.5000004 ok", Ac, None),
                (
                    "x = 1.5 ok",
                    "X = 1.5 ok",
                    Wa,
                    Some("line 1, token 1: expected \"x\", got \"X\""),
                ),
                ("nan", "nan", Ac, None),
                ("5.", "5.", Ac, None),
                // An expected number needs a number: no nan, inf, hex, "5." or words.
                (
                    "1.5",
                    "nan",
                    Wa,
                    Some("line 1, token 1: expected \"1.5\", got \"nan\""),
                ),
                (
                    "1",
                    "inf",
                    Wa,
                    Some("line 1, token 1: expected \"1\", got \"inf\""),
                ),
                (
                    "1",
                    "0x1",
                    Wa,
                    Some("line 1, token 1: expected \"1\", got \"0x1\""),
                ),
                (
                    "1",
                    "1.",
                    Wa,
                    Some("line 1, token 1: expected \"1\", got \"1.\""),
                ),
                (
                    "1",
                    "one",
                    Wa,
                    Some("line 1, token 1: expected \"1\", got \"one\""),
                ),
                // Token count mismatch as in token mode.
                (
                    "1.0 2.0",
                    "1.0",
                    Wa,
                    Some("line 1, token 2 (end of output): expected \"2.0\", got end of output"),
                ),
            ],
        );
    }

    #[test]
    fn test_float_mode_relative() {
        use Verdict::*;
        let s = CompareSpec {
            float_abs_eps: 1e-9,
            float_rel_eps: Some(1e-6),
            ..spec(CompareMode::Float)
        };
        check(
            &s,
            &[
                ("1e9", "1000000100", Ac, None),
                // At the boundary: 1e-6 × 1000 = 0.001.
                ("1000", "1000.001", Ac, None),
                ("1000", "999.999", Ac, None),
                (
                    "1000",
                    "1000.0011",
                    Wa,
                    Some("line 1, token 1: expected \"1000\", got \"1000.0011\""),
                ),
                // Near zero the absolute eps still applies (either bound accepts).
                ("0", "0.0000000005", Ac, None),
                (
                    "0",
                    "0.000001",
                    Wa,
                    Some("line 1, token 1: expected \"0\", got \"0.000001\""),
                ),
            ],
        );
    }

    #[test]
    fn test_float_mode_case_insensitive_words() {
        let s = CompareSpec {
            case_sensitive: false,
            ..spec(CompareMode::Float)
        };
        assert_eq!(run(&s, "YES 1.0", "yes 1.0000001").verdict, Verdict::Ac);
    }

    #[test]
    fn test_decimal_grammar() {
        for (token, value) in [
            ("0", Some(0.0)),
            ("-12", Some(-12.0)),
            ("+3.25", Some(3.25)),
            (".5", Some(0.5)),
            ("-.5", Some(-0.5)),
            ("1e3", Some(1000.0)),
            ("1E+3", Some(1000.0)),
            ("2.5e-1", Some(0.25)),
            ("007", Some(7.0)),
            ("", None),
            ("+", None),
            ("-", None),
            (".", None),
            ("5.", None),
            ("1e", None),
            ("1e+", None),
            ("e5", None),
            (".e5", None),
            ("1.2.3", None),
            ("--1", None),
            ("nan", None),
            ("NaN", None),
            ("inf", None),
            ("-infinity", None),
            ("0x10", None),
            ("1_000", None),
            ("1,5", None),
            ("١", None),
        ] {
            assert_eq!(decimal(token.as_bytes()), value, "{token:?}");
        }
    }

    #[test]
    fn test_hide_diff_drops_the_message() {
        for mode in [CompareMode::Text, CompareMode::Token, CompareMode::Float] {
            let s = CompareSpec {
                hide_diff: true,
                ..spec(mode)
            };
            let c = run(&s, "1 2", "1 3");
            assert_eq!((c.verdict, c.message), (Verdict::Wa, None));
        }
        let s = CompareSpec {
            hide_diff: true,
            ..spec(CompareMode::Text)
        };
        assert_eq!(run(&s, "1\n", "1").message, None);
    }

    #[test]
    fn test_excerpt_cuts_and_escapes() {
        assert_eq!(excerpt(b"abc"), "\"abc\"");
        assert_eq!(excerpt(b"a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(excerpt(b"\x00\x7f\x0b\x0c"), "\"\\x00\\x7f\\x0b\\x0c\"");
        assert_eq!(excerpt(b"\xff\xfe"), "\"\\xff\\xfe\"");
        assert_eq!(excerpt("é\u{200b}".as_bytes()), "\"é\\u{200b}\"");
        let long = "x".repeat(100);
        assert_eq!(
            excerpt(long.as_bytes()),
            format!("\"{}\"... (100 bytes)", "x".repeat(64))
        );
        // 63 ASCII bytes then a 2-byte character across the 64-byte cut: cut before it.
        let s = format!("{}é{}", "a".repeat(63), "b".repeat(10));
        assert_eq!(
            excerpt(s.as_bytes()),
            format!("\"{}\"... (75 bytes)", "a".repeat(63))
        );
        // Exactly 64 bytes: not cut.
        let s = "y".repeat(64);
        assert_eq!(excerpt(s.as_bytes()), format!("\"{s}\""));
        // Long tokens in a message are cut.
        let c = run(&spec(CompareMode::Token), &"7".repeat(1000), "8");
        assert_eq!(
            c.message.unwrap(),
            format!(
                "line 1, token 1: expected \"{}\"... (1000 bytes), got \"8\"",
                "7".repeat(64)
            )
        );
    }

    /// `lines` lines `"<i> <i*0.5>\n"`, generated as it is read: nothing holds the whole text.
    struct Generated {
        lines: u64,
        next: u64,
        /// The line whose second number is off by one.
        wrong: Option<u64>,
        pending: Vec<u8>,
    }

    impl Read for Generated {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pending.is_empty() {
                if self.next == self.lines {
                    return Ok(0);
                }
                let i = self.next;
                let half = i as f64 * 0.5 + if self.wrong == Some(i) { 1.0 } else { 0.0 };
                self.pending = format!("{i} {half}\n").into_bytes();
                self.next += 1;
            }
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            Ok(n)
        }
    }

    fn generated(lines: u64, wrong: Option<u64>) -> BufReader<Generated> {
        BufReader::new(Generated {
            lines,
            next: 0,
            wrong,
            pending: Vec::new(),
        })
    }

    #[test]
    fn test_huge_outputs_stream() {
        // 400 000 tokens each side (about 3 MB), compared as streams.
        let n = 200_000;
        for mode in [CompareMode::Text, CompareMode::Token, CompareMode::Float] {
            let c = compare(&spec(mode), generated(n, None), generated(n, None)).unwrap();
            assert_eq!(c.verdict, Verdict::Ac, "{mode:?}");
        }
        let c = compare(
            &spec(CompareMode::Float),
            generated(n, None),
            generated(n, Some(n - 2)),
        )
        .unwrap();
        assert_eq!(c.verdict, Verdict::Wa);
        assert_eq!(
            c.message.unwrap(),
            "line 199999, token 2: expected \"99999\", got \"100000\""
        );
        // Extra output at the very end.
        let c = compare(
            &spec(CompareMode::Token),
            generated(n, None),
            generated(n + 1, None),
        )
        .unwrap();
        assert_eq!(
            c.message.unwrap(),
            "line 200001, token 1: expected end of output, got \"200000\""
        );
    }

    #[test]
    fn test_memory_is_bounded_by_the_longest_token() {
        // Reading a long output keeps one token and one whitespace run, never the output.
        let mut t = Tokens::new(generated(100_000, None), true);
        let mut tokens = 0;
        while t.next().unwrap() {
            tokens += 1;
        }
        assert_eq!(tokens, 200_000);
        assert!(t.token.capacity() <= 64 && t.space.capacity() <= 64);
        // A single huge token is held whole (needed to compare it), and only it.
        let big = format!("{} 1\n", "9".repeat(1 << 20));
        let mut t = Tokens::new(big.as_bytes(), false);
        assert!(t.next().unwrap());
        assert_eq!(t.token.len(), 1 << 20);
        assert!(t.next().unwrap());
        assert_eq!(t.token, b"1");
        assert!(!t.next().unwrap());
    }

    #[test]
    fn test_spec_serde_and_defaults() {
        let s = CompareSpec::default();
        assert_eq!(s.mode, CompareMode::Token);
        assert!(s.case_sensitive && !s.hide_diff);
        assert_eq!(s.float_abs_eps, 1e-6);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"mode":"token","case_sensitive":true,"float_abs_eps":1e-6,"float_rel_eps":null,"hide_diff":false}"#
        );
        assert_eq!(serde_json::from_str::<CompareSpec>(&json).unwrap(), s);
        for m in CompareMode::ALL {
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.name())
            );
            assert_eq!(m.name().parse::<CompareMode>().unwrap(), m);
            assert!(
                UnknownCompareMode("x".into())
                    .to_string()
                    .contains(m.name())
            );
        }
        assert!("Token".parse::<CompareMode>().is_err());
    }
}
