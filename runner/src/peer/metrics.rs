//! Peer-mode metrics, rendered after the daemon's own registry by `GET /metrics`.
//!
//! Owns: the peer families ([`PEER_FAMILIES`], checked against the rendering) and their labels.
//! Must not: take a label from client input: peers are base URLs from the config or from DNS
//! answers, results a fixed enum.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::job::Outcome;
use crate::metrics::{Histogram, escape_label as esc, header as head};
use crate::sync::lock;

/// Every family rendered here (checked by a test).
pub const PEER_FAMILIES: &[&str] = &[
    "runner_runs_forwarded_total",
    "runner_peer_forwards_total",
    "runner_peer_retries_total",
    "runner_peer_ejections_total",
    "runner_peer_file_pushes_total",
    "runner_peer_up",
    "runner_peer_forward_seconds",
];

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// How one forward attempt ended: the `result` label of `runner_peer_forwards_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forwarded {
    /// A result for the client.
    Ok,
    /// Outcome 21: retried elsewhere.
    Overload,
    /// No usable answer (connection, timeout, 5xx, 403, unreadable body, peer down).
    Error,
    /// A 400: the client's error, or a language the peer no longer has.
    ClientError,
    /// A 404 for a run with files: they are pushed and the run sent again.
    FilesMissing,
}

impl Forwarded {
    fn label(self) -> &'static str {
        match self {
            Forwarded::Ok => "ok",
            Forwarded::Overload => "overload",
            Forwarded::Error => "error",
            Forwarded::ClientError => "client_error",
            Forwarded::FilesMissing => "files_missing",
        }
    }
}

/// The peer-mode registry.
#[derive(Debug, Default)]
pub struct PeerMetrics {
    /// Runs answered with a peer's result, by language and outcome.
    ran_at_peer: Mutex<BTreeMap<(String, &'static str), u64>>,
    forwards: Mutex<BTreeMap<(String, &'static str), u64>>,
    retries: AtomicU64,
    ejections: Mutex<BTreeMap<String, u64>>,
    pushes: Mutex<BTreeMap<String, u64>>,
    up: Mutex<BTreeMap<String, bool>>,
    latency: Mutex<BTreeMap<String, Arc<Histogram>>>,
}

impl PeerMetrics {
    /// A run of a client answered with the result a peer sent (it ran there: its usage is in
    /// that peer's histograms, not ours). `lang` is a served language id.
    pub(crate) fn ran_at_peer(&self, lang: &str, outcome: Outcome) {
        *lock(&self.ran_at_peer)
            .entry((lang.to_owned(), outcome.name()))
            .or_insert(0) += 1;
    }

    /// One forward attempt to `peer`, and how it ended.
    pub(crate) fn forward(&self, peer: &str, result: Forwarded) {
        *lock(&self.forwards)
            .entry((peer.to_owned(), result.label()))
            .or_insert(0) += 1;
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn ejected(&self, peer: &str) {
        *lock(&self.ejections).entry(peer.to_owned()).or_insert(0) += 1;
    }

    pub(crate) fn pushed(&self, peer: &str, files: u64) {
        *lock(&self.pushes).entry(peer.to_owned()).or_insert(0) += files;
    }

    pub(crate) fn set_up(&self, peer: &str, up: bool) {
        lock(&self.up).insert(peer.to_owned(), up);
    }

    pub(crate) fn forget(&self, peer: &str) {
        lock(&self.up).remove(peer);
    }

    /// Time from sending a forwarded run to its complete response.
    pub(crate) fn latency(&self, peer: &str, secs: f64) {
        let h = lock(&self.latency)
            .entry(peer.to_owned())
            .or_insert_with(|| Arc::new(Histogram::new(LATENCY_BUCKETS)))
            .clone();
        h.observe(secs);
    }

    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub fn render(&self, o: &mut String) {
        head(
            o,
            "runner_runs_forwarded_total",
            "Runs answered with a peer's result (they ran there), by language and outcome; also counted in runner_runs_total.",
            "counter",
        );
        for ((lang, outcome), n) in lock(&self.ran_at_peer).iter() {
            let _ = writeln!(
                o,
                "runner_runs_forwarded_total{{lang=\"{}\",outcome=\"{outcome}\"}} {n}",
                esc(lang)
            );
        }
        head(
            o,
            "runner_peer_forwards_total",
            "Runs forwarded to a peer, by peer and result.",
            "counter",
        );
        for ((p, r), n) in lock(&self.forwards).iter() {
            let _ = writeln!(
                o,
                "runner_peer_forwards_total{{peer=\"{}\",result=\"{r}\"}} {n}",
                esc(p)
            );
        }
        head(
            o,
            "runner_peer_retries_total",
            "Forwarded runs retried on another peer or locally.",
            "counter",
        );
        let _ = writeln!(o, "runner_peer_retries_total {}", self.retries());
        head(
            o,
            "runner_peer_ejections_total",
            "Peers taken out after a failed forward (then re-probed after the cool-down).",
            "counter",
        );
        for (p, n) in lock(&self.ejections).iter() {
            let _ = writeln!(o, "runner_peer_ejections_total{{peer=\"{}\"}} {n}", esc(p));
        }
        head(
            o,
            "runner_peer_file_pushes_total",
            "Files pushed to a peer that answered 404 to a forwarded run.",
            "counter",
        );
        for (p, n) in lock(&self.pushes).iter() {
            let _ = writeln!(
                o,
                "runner_peer_file_pushes_total{{peer=\"{}\"}} {n}",
                esc(p)
            );
        }
        head(
            o,
            "runner_peer_up",
            "1 if the peer takes forwarded runs.",
            "gauge",
        );
        for (p, up) in lock(&self.up).iter() {
            let _ = writeln!(o, "runner_peer_up{{peer=\"{}\"}} {}", esc(p), u8::from(*up));
        }
        head(
            o,
            "runner_peer_forward_seconds",
            "Latency of forwarded runs that got a response, by peer, in seconds.",
            "histogram",
        );
        let hs: Vec<(String, Arc<Histogram>)> = lock(&self.latency)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (p, h) in hs {
            h.render_labelled(
                o,
                "runner_peer_forward_seconds",
                &format!("peer=\"{}\"", esc(&p)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The family list is what `render` writes.
    use super::*;

    #[test]
    fn test_peer_families_match_rendered_types() {
        let mut t = String::new();
        PeerMetrics::default().render(&mut t);
        assert_eq!(crate::metrics::declared_families(&t), PEER_FAMILIES);
        let m = PeerMetrics::default();
        m.forward("http://a:1", Forwarded::ClientError);
        let mut t = String::new();
        m.render(&mut t);
        assert!(
            t.contains("runner_peer_forwards_total{peer=\"http://a:1\",result=\"client_error\"} 1"),
            "{t}"
        );
    }

    /// docs/peers.md lists every peer family (a new one must be documented).
    #[test]
    fn test_peer_families_are_documented() {
        let doc = include_str!("../../../docs/peers.md");
        for f in PEER_FAMILIES {
            assert!(
                crate::metrics::documents(doc, f),
                "{f} is not in docs/peers.md"
            );
        }
    }
}
