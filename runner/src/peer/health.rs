//! What is known of each peer's health and load, and how it is kept fresh: active probes
//! (`GET /peer/status` every `probe_interval`, HAProxy-style rise/fall counts), passive ejection
//! after a failed forward (out for a cool-down, then re-probed), and the load reports that come
//! with every answer (probe bodies and `X-Runner-Load`). The health state machine (`Health`) is
//! pure: times are parameters, unit-tested below.
//!
//! Owns: `Health`, the status body (`Status`, one type for the answer we give and the answers we
//! read), the load arithmetic (`PeerState::note_load`), ejection.
//! Must not: choose peers for runs (`select`) or send runs (`forward`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::client::status_url;
use super::{Peer, PeerState, Peers, Settings, Shared};
use crate::sched::Load;
use crate::sync::{lock, read};

/// Health of one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Takes forwarded runs.
    Up,
    /// Probed; `rise` successes in a row bring it up (the first success ever is enough).
    Down,
    /// Passively ejected after a failed forward: not probed until `until`, then `Down`.
    Ejected { until: Instant },
}

/// Rise/fall thresholds and the ejection cool-down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HealthRules {
    pub(super) rise: u32,
    pub(super) fall: u32,
    pub(super) cooldown: Duration,
}

/// What changed after an event, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transition {
    None,
    WentUp,
    WentDown,
    Ejected,
    /// The first failed probe of a peer that has never been up (logged once).
    Unreachable,
}

/// The state machine: active probe results and passive failures in, `State` out.
#[derive(Debug, Clone)]
pub(super) struct Health {
    state: State,
    oks: u32,
    fails: u32,
    ever_up: bool,
    /// `Unreachable` was reported (a peer that has never been up is reported once).
    told_unreachable: bool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: State::Down,
            oks: 0,
            fails: 0,
            ever_up: false,
            told_unreachable: false,
        }
    }
}

impl Health {
    pub(super) fn state(&self) -> State {
        self.state
    }

    pub(super) fn is_up(&self) -> bool {
        self.state() == State::Up
    }

    /// Whether a probe should be sent at `now` (not during an ejection's cool-down). Moves an
    /// ejection whose cool-down is over to `Down`.
    pub(super) fn should_probe(&mut self, now: Instant) -> bool {
        if let State::Ejected { until } = self.state {
            if now < until {
                return false;
            }
            self.state = State::Down;
            self.oks = 0;
            self.fails = 0;
        }
        true
    }

    /// An active probe's result.
    pub(super) fn probe(&mut self, ok: bool, rules: &HealthRules, now: Instant) -> Transition {
        if !self.should_probe(now) {
            return Transition::None;
        }
        if ok {
            self.fails = 0;
            self.oks = self.oks.saturating_add(1);
            if self.state == State::Down && (self.oks >= rules.rise || !self.ever_up) {
                self.state = State::Up;
                self.ever_up = true;
                return Transition::WentUp;
            }
        } else {
            self.oks = 0;
            self.fails = self.fails.saturating_add(1);
            if self.state == State::Up && self.fails >= rules.fall {
                self.state = State::Down;
                return Transition::WentDown;
            }
            if !self.ever_up && !self.told_unreachable {
                self.told_unreachable = true;
                return Transition::Unreachable;
            }
        }
        Transition::None
    }

    /// A forward failed because of the peer (connection refused or reset, timeout, 5xx, key
    /// refused): out at once for the cool-down, then re-probed.
    pub(super) fn eject(&mut self, rules: &HealthRules, now: Instant) -> Transition {
        let was_ejected = matches!(self.state, State::Ejected { .. });
        self.state = State::Ejected {
            until: now + rules.cooldown,
        };
        self.oks = 0;
        self.fails = 0;
        if was_ejected {
            Transition::None
        } else {
            Transition::Ejected
        }
    }
}

/// The body of `GET /peer/status`: local capacity and local languages only (never the union,
/// or languages would travel from peer to peer while runs are never forwarded twice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Status {
    /// Random per daemon: a runner that reads its own id is probing itself (a DNS name).
    instance: String,
    slots: usize,
    free: usize,
    queued: usize,
    languages: Vec<(String, String)>,
}

impl Status {
    fn load(&self) -> Load {
        Load {
            slots: self.slots,
            free: self.free,
            queued: self.queued,
        }
    }
}

impl PeerState {
    /// A load report from the peer (response header or probe): what others use there, given
    /// `ours` (our runs at it now).
    pub(super) fn note_load(&mut self, load: Load, ours: usize) {
        self.slots = load.slots;
        self.external = (load.slots.saturating_sub(load.free) + load.queued).saturating_sub(ours);
    }
}

impl Peers {
    /// The `GET /peer/status` body (a JSON object; keys sorted, as `serde_json::Value` keeps
    /// them).
    pub(super) fn status(&self, load: Load, local: Vec<(String, String)>) -> serde_json::Value {
        let s = Status {
            instance: self.shared.instance.clone(),
            slots: load.slots,
            free: load.free,
            queued: load.queued,
            languages: local,
        };
        serde_json::to_value(s).expect("a status is strings and numbers")
    }

    /// A load report that came with a forwarded run's answer: newer than any probe in flight.
    pub(super) fn note_reported_load(&self, p: &Peer, load: Load) {
        p.reports.fetch_add(1, Ordering::SeqCst);
        let ours = p.inflight.load(Ordering::SeqCst);
        lock(&p.st).note_load(load, ours);
    }

    /// A forward to `p` failed because of `p`: out for the cool-down, forwards waiting on it fail
    /// over.
    pub(super) fn eject(&self, p: &Peer, why: &str) {
        let s = self.shared.settings();
        let t = lock(&p.st).health.eject(&s.rules(), Instant::now());
        if t == Transition::Ejected {
            let cooldown_ms = u64::try_from(s.config.cooldown.as_millis()).unwrap_or(u64::MAX);
            tracing::warn!(peer = %p.url, why, cooldown_ms, "peer ejected");
            self.shared.metrics.ejected(&p.url);
            self.shared.metrics.set_up(&p.url, false);
            p.down.notify_waiters();
        }
    }
}

/// Probes every peer each `probe_interval`, all at once, each within `probe_timeout`.
/// The settings are those of the task's start: a reload restarts it.
pub(super) async fn probe_loop(sh: Arc<Shared>) {
    let s = sh.settings();
    let mut tick = tokio::time::interval(s.config.probe_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let list: Vec<Arc<Peer>> = read(&sh.list).clone();
        let mut set = tokio::task::JoinSet::new();
        for p in list {
            let sh = sh.clone();
            let s = s.clone();
            set.spawn(async move { probe_one(&sh, &s, &p).await });
        }
        while set.join_next().await.is_some() {}
        sh.changed.notify_waiters();
    }
}

async fn probe_one(sh: &Shared, settings: &Settings, p: &Peer) {
    if !lock(&p.st).health.should_probe(Instant::now()) {
        return;
    }
    let reports = p.reports.load(Ordering::SeqCst);
    let r = sh
        .client
        .call(
            Method::GET,
            status_url(&p.url),
            &p.key,
            false,
            None,
            settings.config.probe_timeout,
        )
        .await;
    let status = match &r {
        Ok(r) if r.status == StatusCode::OK => serde_json::from_slice::<Status>(&r.body).ok(),
        _ => None,
    };
    if let Some(s) = &status {
        let ours = p.inflight.load(Ordering::SeqCst);
        let mut st = lock(&p.st);
        st.is_self = s.instance == sh.instance;
        st.languages.clone_from(&s.languages);
        // A forwarded run's answer reported the load since this probe was sent: that is newer.
        if p.reports.load(Ordering::SeqCst) == reports {
            st.note_load(s.load(), ours);
        }
    }
    let t = lock(&p.st)
        .health
        .probe(status.is_some(), &settings.rules(), Instant::now());
    let why = || match &r {
        Ok(r) if r.status == StatusCode::OK => "unreadable status body".to_owned(),
        Ok(r) => format!("HTTP {}", r.status.as_u16()),
        Err(e) => crate::telemetry::error_chain(e),
    };
    match t {
        Transition::WentUp => {
            tracing::info!(peer = %p.url, "peer up");
            sh.metrics.set_up(&p.url, true);
        }
        Transition::WentDown => {
            tracing::warn!(peer = %p.url, why = why(), "peer down (probes failed)");
            sh.metrics.set_up(&p.url, false);
            p.down.notify_waiters();
        }
        Transition::Unreachable => {
            tracing::warn!(
                peer = %p.url,
                why = why(),
                "peer unreachable: it has not answered since it was configured (start-up or reload); \
                 runs are not forwarded to it until it does"
            );
            sh.metrics.set_up(&p.url, false);
        }
        // Keeps the gauge present from the first probe on.
        Transition::None | Transition::Ejected => {
            sh.metrics.set_up(&p.url, lock(&p.st).health.is_up());
        }
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). The health state machine, the status body, the load
    //! arithmetic.
    use super::*;

    /// The status we send is the status we read, and its text is the JSON object peers of
    /// every version read (keys in sorted order).
    #[test]
    fn test_status_round_trip() {
        let s = Status {
            instance: "00ff".into(),
            slots: 4,
            free: 1,
            queued: 2,
            languages: vec![("python3".into(), "3.11".into())],
        };
        let text = serde_json::to_string(&serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"free":1,"instance":"00ff","languages":[["python3","3.11"]],"queued":2,"slots":4}"#
        );
        assert_eq!(serde_json::from_str::<Status>(&text).unwrap(), s);
        assert_eq!(
            s.load(),
            Load {
                slots: 4,
                free: 1,
                queued: 2
            }
        );
    }

    /// Others use what is busy or queued there, minus our own runs.
    #[test]
    fn test_note_load() {
        let mut st = PeerState::default();
        let load = |slots, free, queued| Load {
            slots,
            free,
            queued,
        };
        st.note_load(load(4, 1, 2), 1);
        assert_eq!((st.slots, st.external), (4, 4));
        st.note_load(load(4, 4, 0), 0);
        assert_eq!(st.external, 0);
        st.note_load(load(2, 0, 0), 5);
        assert_eq!(st.external, 0, "never below zero");
    }

    const RULES: HealthRules = HealthRules {
        rise: 2,
        fall: 3,
        cooldown: Duration::from_secs(5),
    };

    #[test]
    fn test_first_probe_admits_then_fall_count() {
        let t = Instant::now();
        let mut h = Health::default();
        assert!(!h.is_up());
        assert_eq!(h.probe(false, &RULES, t), Transition::Unreachable);
        assert_eq!(h.probe(false, &RULES, t), Transition::None, "said once");
        assert_eq!(h.probe(true, &RULES, t), Transition::WentUp);
        assert_eq!(h.probe(false, &RULES, t), Transition::None);
        assert_eq!(h.probe(false, &RULES, t), Transition::None);
        assert_eq!(
            h.probe(true, &RULES, t),
            Transition::None,
            "a success resets fails"
        );
        for _ in 0..2 {
            assert_eq!(h.probe(false, &RULES, t), Transition::None);
        }
        assert_eq!(h.probe(false, &RULES, t), Transition::WentDown);
        // Once it has been up, coming back takes `rise` successes in a row.
        assert_eq!(h.probe(true, &RULES, t), Transition::None);
        assert_eq!(h.probe(false, &RULES, t), Transition::None);
        assert_eq!(h.probe(true, &RULES, t), Transition::None);
        assert_eq!(h.probe(true, &RULES, t), Transition::WentUp);
    }

    #[test]
    fn test_ejection_cooldown_then_reprobe() {
        let t = Instant::now();
        let mut h = Health::default();
        h.probe(true, &RULES, t);
        assert_eq!(h.eject(&RULES, t), Transition::Ejected);
        assert_eq!(h.eject(&RULES, t), Transition::None, "already out");
        assert!(matches!(h.state(), State::Ejected { .. }));
        // Probes during the cool-down are not even sent.
        assert!(!h.should_probe(t + Duration::from_secs(1)));
        assert_eq!(
            h.probe(true, &RULES, t + Duration::from_secs(1)),
            Transition::None
        );
        assert!(!h.is_up());
        // After it: Down, and `rise` successes bring it back.
        let later = t + Duration::from_secs(6);
        assert!(h.should_probe(later));
        assert_eq!(h.state(), State::Down);
        assert_eq!(h.probe(true, &RULES, later), Transition::None);
        assert_eq!(h.probe(true, &RULES, later), Transition::WentUp);
    }
}
