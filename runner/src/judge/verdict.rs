//! Judge verdicts: the per-case and overall result codes of judge mode, and the rules that combine
//! them (docs/judge.md, "Verdicts").
//!
//! Owns: the one table of verdicts (code and meaning, the serde form), the mapping from a run's
//! Jobe outcome to a case verdict, the overall-verdict rule, and `Progress`, which applies
//! `stop_on_first_failure` and releases case results in case order while cases finish in any order.
//!
//! Must not: run anything, compare outputs (`compare` does) or know about HTTP.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::job::Outcome;

/// Defines `Verdict` and its table from one list, so the code, the meaning and `ALL` cannot drift.
macro_rules! verdicts {
    ($($variant:ident = $code:literal : $meaning:literal,)*) => {
        /// The verdict of one test case, or of a whole submission. Serialised as its code
        /// (`"AC"`, `"TLE"`, …).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Verdict {
            $(#[doc = $meaning] $variant,)*
        }

        impl Verdict {
            /// Every verdict, in the documented order.
            pub const ALL: &[Verdict] = &[$(Verdict::$variant,)*];

            /// The two- or three-letter code: the wire form.
            pub fn code(self) -> &'static str {
                match self {
                    $(Verdict::$variant => $code,)*
                }
            }

            /// What the verdict means, in a few words (docs and the `runner judge` table).
            pub fn meaning(self) -> &'static str {
                match self {
                    $(Verdict::$variant => $meaning,)*
                }
            }
        }
    };
}

verdicts! {
    Ac = "AC": "accepted: the output matches the expected output",
    Wa = "WA": "wrong answer: the output differs from the expected output",
    Pe = "PE": "presentation error: the output differs only in whitespace (compare = \"text\" only)",
    Ce = "CE": "compilation error",
    Re = "RE": "runtime error: a non-zero exit code or a fatal signal",
    Tle = "TLE": "time limit exceeded (CPU or wall clock)",
    Mle = "MLE": "memory limit exceeded",
    Ole = "OLE": "output limit exceeded",
    Sv = "SV": "security violation: a forbidden system call",
    Ie = "IE": "internal error of the judge, not of the program",
    Sk = "SK": "skipped: not run",
}

impl Verdict {
    /// Whether a case with this verdict passed.
    pub fn is_accepted(self) -> bool {
        self == Verdict::Ac
    }

    /// The verdict of a case from how its run ended, before the output is compared. `None`: the
    /// program exited normally within its limits, so the output decides (`compare`).
    /// `stdout_over_limit`: the program wrote more than the test set's `output_limit`.
    ///
    /// Precedence, most significant first: IE, SV, TLE, MLE (each as the run's `outcome` says),
    /// then OLE, then RE. OLE goes before RE because a program stopped for writing too much often
    /// dies of the stop itself (a broken pipe, `SIGXFSZ`), and the cause is the output.
    pub fn from_run(outcome: Outcome, stdout_over_limit: bool) -> Option<Verdict> {
        match outcome {
            Outcome::InternalError | Outcome::ServerOverload => Some(Verdict::Ie),
            Outcome::IllegalSyscall => Some(Verdict::Sv),
            Outcome::TimeLimit => Some(Verdict::Tle),
            Outcome::MemoryLimit => Some(Verdict::Mle),
            // A run step never reports a compile error; if one did, it is the judge's fault.
            Outcome::CompilationError => Some(Verdict::Ie),
            _ if stdout_over_limit => Some(Verdict::Ole),
            Outcome::RuntimeError => Some(Verdict::Re),
            Outcome::Success => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A string that is not a verdict code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown verdict {0:?}")]
pub struct UnknownVerdict(String);

impl FromStr for Verdict {
    type Err = UnknownVerdict;

    fn from_str(s: &str) -> Result<Verdict, UnknownVerdict> {
        Verdict::ALL
            .iter()
            .copied()
            .find(|v| v.code() == s)
            .ok_or_else(|| UnknownVerdict(s.to_owned()))
    }
}

impl Serialize for Verdict {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Verdict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Verdict, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The overall verdict of a submission: CE if compilation failed, else the verdict of the first
/// case (in case order) that is not AC, else AC. A submission without cases is AC only if it
/// compiled (the store never holds a test set without cases).
pub fn overall(compile_failed: bool, cases: impl IntoIterator<Item = Verdict>) -> Verdict {
    if compile_failed {
        return Verdict::Ce;
    }
    cases
        .into_iter()
        .find(|v| !v.is_accepted())
        .unwrap_or(Verdict::Ac)
}

/// The verdicts of one submission's cases while they run, possibly in parallel and finishing out
/// of order. It decides which cases still need to run, and hands back each case's final verdict
/// in case order: case `i` is released once cases `0..=i` are all decided, so events and results
/// read in case order even when case 3 finishes before case 2.
///
/// With `stop_on_first_failure`, every case after the first failing one (in case order, not in
/// finishing order) is SK, whatever it did if it already ran: the result does not depend on the
/// timing of a parallel run. The caller should not start a case for which `should_run` is false,
/// and may stop running ones that become SK.
#[derive(Debug, Clone)]
pub struct Progress {
    stop_on_first_failure: bool,
    compile_failed: bool,
    verdicts: Vec<Option<Verdict>>,
    /// Cases `0..released` have been handed out by `record`/`skip_rest`/`compile_failed`.
    released: usize,
}

impl Progress {
    /// A submission with `cases` test cases, none decided yet.
    pub fn new(cases: usize, stop_on_first_failure: bool) -> Progress {
        Progress {
            stop_on_first_failure,
            compile_failed: false,
            verdicts: vec![None; cases],
            released: 0,
        }
    }

    /// Compilation failed: every case is SK and the overall verdict is CE. Returns the cases
    /// released by this call.
    pub fn compile_failed(&mut self) -> Range<usize> {
        self.compile_failed = true;
        self.skip_rest()
    }

    /// Whether case `index` should still be run: false once it is decided, or when
    /// `stop_on_first_failure` is set and an earlier case has failed.
    pub fn should_run(&self, index: usize) -> bool {
        if self.verdicts.get(index).is_none_or(|v| v.is_some()) {
            return false;
        }
        !(self.stop_on_first_failure && self.failed_before(index))
    }

    /// Records the verdict of case `index` (a second verdict for a decided case is ignored).
    /// Returns the cases whose final verdicts became known by this call, in order; read them
    /// with [`Progress::verdict`].
    pub fn record(&mut self, index: usize, verdict: Verdict) -> Range<usize> {
        if let Some(slot @ None) = self.verdicts.get_mut(index) {
            *slot = Some(verdict);
        }
        self.release()
    }

    /// Every case not decided yet becomes SK (cancel, or an internal error that ends the
    /// submission). Returns the cases released by this call.
    pub fn skip_rest(&mut self) -> Range<usize> {
        for v in &mut self.verdicts {
            v.get_or_insert(Verdict::Sk);
        }
        self.release()
    }

    /// The final verdict of a released case.
    pub fn verdict(&self, index: usize) -> Option<Verdict> {
        if index < self.released {
            self.verdicts[index]
        } else {
            None
        }
    }

    /// Whether every case is released.
    pub fn is_done(&self) -> bool {
        self.released == self.verdicts.len()
    }

    /// The overall verdict, once every case is released.
    pub fn overall(&self) -> Option<Verdict> {
        self.is_done()
            .then(|| overall(self.compile_failed, self.verdicts.iter().flatten().copied()))
    }

    fn failed_before(&self, index: usize) -> bool {
        self.verdicts[..index.min(self.verdicts.len())]
            .iter()
            .any(|v| v.is_some_and(|v| !v.is_accepted()))
    }

    /// Advances `released` over the decided prefix, rewriting cases after a released failure to
    /// SK when `stop_on_first_failure` is set.
    fn release(&mut self) -> Range<usize> {
        let start = self.released;
        while let Some(Some(v)) = self.verdicts.get(self.released) {
            let failed = !v.is_accepted();
            self.released += 1;
            if failed && self.stop_on_first_failure {
                for later in &mut self.verdicts[self.released..] {
                    *later = Some(Verdict::Sk);
                }
            }
        }
        start..self.released
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The verdict table, the overall rule and case-order release.
    use super::*;

    use Verdict::*;

    #[test]
    fn test_codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &v in Verdict::ALL {
            assert!(seen.insert(v.code()), "duplicate code {}", v.code());
            assert_eq!(v.code().parse::<Verdict>().unwrap(), v);
            assert!((2..=3).contains(&v.code().len()));
            assert!(!v.meaning().is_empty());
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(json, format!("\"{}\"", v.code()));
            assert_eq!(serde_json::from_str::<Verdict>(&json).unwrap(), v);
            assert_eq!(v.to_string(), v.code());
        }
        assert_eq!(Verdict::ALL.len(), 11);
        assert!("ac".parse::<Verdict>().is_err());
        assert!(serde_json::from_str::<Verdict>("\"XX\"").is_err());
    }

    #[test]
    fn test_docs_table_lists_every_verdict() {
        let doc = include_str!("../../../docs/judge.md");
        for &v in Verdict::ALL {
            let row = format!("| {} | {} |", v.code(), v.meaning());
            assert!(doc.contains(&row), "docs/judge.md lacks the row {row}");
        }
        let section = &doc[doc.find("## Verdicts").unwrap()..];
        let section = &section[..section.find("\n\n- ").unwrap()];
        let rows = section.lines().filter(|l| l.starts_with("| ")).count();
        assert_eq!(
            rows,
            Verdict::ALL.len() + 1,
            "one row per verdict and the header"
        );
    }

    #[test]
    fn test_from_run_precedence() {
        assert_eq!(Verdict::from_run(Outcome::Success, false), None);
        assert_eq!(Verdict::from_run(Outcome::Success, true), Some(Ole));
        assert_eq!(Verdict::from_run(Outcome::RuntimeError, false), Some(Re));
        assert_eq!(Verdict::from_run(Outcome::RuntimeError, true), Some(Ole));
        assert_eq!(Verdict::from_run(Outcome::TimeLimit, true), Some(Tle));
        assert_eq!(Verdict::from_run(Outcome::MemoryLimit, true), Some(Mle));
        assert_eq!(Verdict::from_run(Outcome::IllegalSyscall, true), Some(Sv));
        assert_eq!(Verdict::from_run(Outcome::InternalError, false), Some(Ie));
        assert_eq!(Verdict::from_run(Outcome::ServerOverload, false), Some(Ie));
        assert_eq!(
            Verdict::from_run(Outcome::CompilationError, false),
            Some(Ie)
        );
        // Every outcome maps (the match is exhaustive; this checks none panics).
        for &o in &Outcome::ALL {
            let _ = Verdict::from_run(o, false);
        }
    }

    #[test]
    fn test_overall_rule() {
        assert_eq!(overall(false, [Ac, Ac]), Ac);
        assert_eq!(overall(false, [Ac, Tle, Wa]), Tle);
        assert_eq!(overall(false, [Wa, Tle]), Wa);
        assert_eq!(overall(true, [Sk, Sk]), Ce);
        assert_eq!(overall(true, [Ac]), Ce);
        assert_eq!(overall(false, []), Ac);
        assert_eq!(overall(false, [Ac, Sk]), Sk);
    }

    #[test]
    fn test_progress_releases_in_case_order() {
        let mut p = Progress::new(4, false);
        assert_eq!(p.record(2, Wa), 0..0);
        assert_eq!(p.verdict(2), None);
        assert_eq!(p.record(0, Ac), 0..1);
        assert_eq!(p.record(1, Ac), 1..3);
        assert_eq!(p.verdict(2), Some(Wa));
        // Without stop_on_first_failure later cases still run.
        assert!(p.should_run(3));
        assert!(!p.is_done() && p.overall().is_none());
        assert_eq!(p.record(3, Ac), 3..4);
        assert!(p.is_done());
        assert_eq!(p.overall(), Some(Wa));
        // A second verdict for a decided case changes nothing.
        assert_eq!(p.record(3, Tle), 4..4);
        assert_eq!(p.verdict(3), Some(Ac));
    }

    #[test]
    fn test_stop_on_first_failure_skips_later_cases() {
        let mut p = Progress::new(5, true);
        assert_eq!(p.record(0, Ac), 0..1);
        assert_eq!(p.record(1, Re), 1..5);
        assert!(p.is_done());
        assert_eq!(
            (0..5).map(|i| p.verdict(i).unwrap()).collect::<Vec<_>>(),
            [Ac, Re, Sk, Sk, Sk]
        );
        assert!(!p.should_run(2));
        // A case that was already running reports later: it stays SK.
        assert_eq!(p.record(3, Ac), 5..5);
        assert_eq!(p.verdict(3), Some(Sk));
        assert_eq!(p.overall(), Some(Re));
    }

    #[test]
    fn test_stop_on_first_failure_uses_case_order_not_finish_order() {
        // Case 3 fails first, then case 1 fails: the failure of case 1 is the one reported,
        // and case 3 is SK.
        let mut p = Progress::new(5, true);
        assert_eq!(p.record(3, Tle), 0..0);
        assert!(
            !p.should_run(4),
            "after a known failure, later cases need not run"
        );
        assert!(p.should_run(1) && p.should_run(0) && p.should_run(2));
        assert_eq!(p.record(1, Wa), 0..0);
        assert!(!p.should_run(2));
        assert!(p.should_run(0));
        assert_eq!(p.record(0, Ac), 0..5);
        assert_eq!(
            (0..5).map(|i| p.verdict(i).unwrap()).collect::<Vec<_>>(),
            [Ac, Wa, Sk, Sk, Sk]
        );
        assert_eq!(p.overall(), Some(Wa));
    }

    #[test]
    fn test_compile_failed_skips_everything() {
        let mut p = Progress::new(3, false);
        assert_eq!(p.compile_failed(), 0..3);
        assert!((0..3).all(|i| p.verdict(i) == Some(Sk)));
        assert_eq!(p.overall(), Some(Ce));
    }

    #[test]
    fn test_skip_rest_on_cancel() {
        let mut p = Progress::new(3, false);
        p.record(1, Ac);
        assert_eq!(p.skip_rest(), 0..3);
        assert_eq!(p.verdict(0), Some(Sk));
        assert_eq!(p.verdict(1), Some(Ac));
        assert_eq!(p.overall(), Some(Sk));
        assert!(!p.should_run(0) && !p.should_run(7));
    }
}
