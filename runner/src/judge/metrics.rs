//! The judge's metric families (docs/operations.md, "Judge mode"), rendered after the daemon's
//! own by `GET /metrics`.
//!
//! Owns: the judge's counters and histograms. Label values are bounded sets: languages are
//! served ids (a submission in any other language is refused before it is accepted), verdicts are
//! `Verdict::code` (or `none` for a cancelled submission).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use super::provider::TestsetCounters;
use super::submission::{CaseResult, SubmissionResult};
use super::verdict::Verdict;
use crate::metrics::{Histogram, escape_label, header};
use crate::sync::lock;

/// Every family rendered, in order.
pub const FAMILIES: &[&str] = &[
    "runner_judge_submissions_total",
    "runner_judge_cases_total",
    "runner_judge_case_cpu_seconds",
    "runner_judge_case_wall_seconds",
    "runner_judge_queue_length",
    "runner_judge_testset_store_bytes",
    "runner_judge_testset_hits_total",
    "runner_judge_testset_fetches_total",
    "runner_judge_testset_fetch_failures_total",
];

const CASE_SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug)]
pub struct JudgeMetrics {
    submissions: Mutex<BTreeMap<(String, &'static str), u64>>,
    cases: Mutex<BTreeMap<&'static str, u64>>,
    case_cpu: Histogram,
    case_wall: Histogram,
}

impl Default for JudgeMetrics {
    fn default() -> JudgeMetrics {
        JudgeMetrics {
            submissions: Mutex::new(BTreeMap::new()),
            cases: Mutex::new(BTreeMap::new()),
            case_cpu: Histogram::new(CASE_SECONDS_BUCKETS),
            case_wall: Histogram::new(CASE_SECONDS_BUCKETS),
        }
    }
}

impl JudgeMetrics {
    /// A finished (or cancelled) submission.
    pub fn submission(&self, r: &SubmissionResult) {
        let verdict = r.verdict.map_or("none", Verdict::code);
        *lock(&self.submissions)
            .entry((r.language_id.clone(), verdict))
            .or_insert(0) += 1;
    }

    /// A case that ran (its verdict as decided before case-order release).
    #[allow(clippy::cast_precision_loss, reason = "histogram values")]
    pub fn case(&self, c: &CaseResult) {
        *lock(&self.cases).entry(c.verdict.code()).or_insert(0) += 1;
        self.case_cpu.observe(c.cpu_ms as f64 / 1000.0);
        self.case_wall.observe(c.wall_ms as f64 / 1000.0);
    }

    pub fn render(&self, o: &mut String, queue: usize, store_bytes: u64, c: TestsetCounters) {
        header(
            o,
            "runner_judge_submissions_total",
            "Judge submissions finished, by language and overall verdict (none: cancelled).",
            "counter",
        );
        for ((lang, verdict), n) in lock(&self.submissions).iter() {
            let _ = writeln!(
                o,
                "runner_judge_submissions_total{{lang=\"{}\",verdict=\"{verdict}\"}} {n}",
                escape_label(lang)
            );
        }
        header(
            o,
            "runner_judge_cases_total",
            "Judge test cases run, by verdict.",
            "counter",
        );
        for (verdict, n) in lock(&self.cases).iter() {
            let _ = writeln!(o, "runner_judge_cases_total{{verdict=\"{verdict}\"}} {n}");
        }
        header(
            o,
            "runner_judge_case_cpu_seconds",
            "CPU time of a judge test case, in seconds.",
            "histogram",
        );
        self.case_cpu
            .render_labelled(o, "runner_judge_case_cpu_seconds", "");
        header(
            o,
            "runner_judge_case_wall_seconds",
            "Wall time of a judge test case, in seconds.",
            "histogram",
        );
        self.case_wall
            .render_labelled(o, "runner_judge_case_wall_seconds", "");
        let simple: [(&str, &str, &str, u64); 5] = [
            (
                "runner_judge_queue_length",
                "Judge submissions accepted and not finished.",
                "gauge",
                queue as u64,
            ),
            (
                "runner_judge_testset_store_bytes",
                "Bytes of stored test-set files.",
                "gauge",
                store_bytes,
            ),
            (
                "runner_judge_testset_hits_total",
                "Submissions whose test set was stored already.",
                "counter",
                c.hits,
            ),
            (
                "runner_judge_testset_fetches_total",
                "Test sets fetched from the origin (one per single flight).",
                "counter",
                c.fetches,
            ),
            (
                "runner_judge_testset_fetch_failures_total",
                "Fetches from the origin that failed.",
                "counter",
                c.fetch_failures,
            ),
        ];
        for (name, help, kind, v) in simple {
            header(o, name, help, kind);
            let _ = writeln!(o, "{name} {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The families render, in order, and are documented.
    use super::*;
    use crate::judge::submission::{Status, Summary};
    use crate::metrics::{declared_families, documents};

    #[test]
    fn test_families_render_and_are_documented() {
        let m = JudgeMetrics::default();
        m.case(&CaseResult {
            index: 0,
            name: "1".into(),
            verdict: Verdict::Wa,
            cpu_ms: 20,
            wall_ms: 30,
            memory_kb: 1,
            exit_code: Some(0),
            signal: None,
            message: None,
        });
        m.submission(&SubmissionResult {
            id: "s".into(),
            problem: "p".into(),
            version: "v".into(),
            testset_sha256: None,
            language_id: "c".into(),
            status: Status::Done,
            verdict: Some(Verdict::Wa),
            compile: None,
            cases: vec![],
            summary: Summary::default(),
        });
        let mut t = String::new();
        m.render(&mut t, 3, 1234, TestsetCounters::default());
        assert_eq!(declared_families(&t), FAMILIES);
        assert!(t.contains("runner_judge_submissions_total{lang=\"c\",verdict=\"WA\"} 1"));
        assert!(t.contains("runner_judge_cases_total{verdict=\"WA\"} 1"));
        assert!(t.contains("runner_judge_queue_length 3"));
        assert!(t.contains("runner_judge_case_cpu_seconds_count 1"));
        let doc = include_str!("../../../docs/operations.md");
        for f in FAMILIES {
            assert!(documents(doc, f), "{f} is not in docs/operations.md");
        }
    }
}
