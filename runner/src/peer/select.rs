//! Pure decision logic of peer mode, unit-tested without sockets: the choice of a peer
//! (weighted power-of-two-choices) and the health state machine of one peer (HAProxy-style
//! rise/fall counts plus passive ejection with a cool-down).
//!
//! Must not: do I/O or read clocks (times are parameters).

use std::time::{Duration, Instant};

/// What the selector knows about one candidate peer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candidate {
    /// Configured weight (≥ 1).
    pub(crate) weight: u32,
    /// Slots in use as far as we know: our in-flight runs plus what others use.
    pub(crate) used: usize,
}

/// A small, fast, non-cryptographic generator (SplitMix64). Selection needs spread, not secrecy.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A seed that differs between processes and calls.
    pub(crate) fn seed() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t ^ (u64::from(std::process::id()) << 32)
            ^ SEQ.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0); the modulo bias is negligible for small `n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Index of a candidate drawn with probability proportional to its weight, skipping `exclude`.
fn weighted_draw(c: &[Candidate], exclude: Option<usize>, rng: &mut Rng) -> Option<usize> {
    let total: u64 = c
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != exclude)
        .map(|(_, x)| u64::from(x.weight))
        .sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.below(total);
    for (i, x) in c.iter().enumerate() {
        if Some(i) == exclude {
            continue;
        }
        let w = u64::from(x.weight);
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    None
}

/// Weighted power-of-two-choices: draw two distinct candidates with probability proportional to
/// their weights, keep the one with the lower `used / weight` (the first drawn on a tie).
///
/// Why both steps: plain P2C on `used / weight` ignores weights while everybody is idle (all
/// ratios are 0); drawing by weight makes idle traffic split by weight, and comparing
/// `used / weight` makes busy peers fill in proportion to their weight. Returns `None` only for
/// an empty slice.
pub(crate) fn choose(c: &[Candidate], rng: &mut Rng) -> Option<usize> {
    let a = weighted_draw(c, None, rng)?;
    let Some(b) = weighted_draw(c, Some(a), rng) else {
        return Some(a);
    };
    // used_a / w_a <= used_b / w_b  ⇔  used_a · w_b <= used_b · w_a (no floats).
    let la = c[a].used as u128 * u128::from(c[b].weight);
    let lb = c[b].used as u128 * u128::from(c[a].weight);
    Some(if la <= lb { a } else { b })
}

/// Health of one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Takes forwarded runs.
    Up,
    /// Probed; `rise` successes in a row bring it up (the first success ever is enough).
    Down,
    /// Passively ejected after a failed forward: not probed until `until`, then `Down`.
    Ejected { until: Instant },
}

/// Rise/fall thresholds and the ejection cool-down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HealthRules {
    pub(crate) rise: u32,
    pub(crate) fall: u32,
    pub(crate) cooldown: Duration,
}

/// What changed after an event, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    WentUp,
    WentDown,
    Ejected,
}

/// The state machine: active probe results and passive failures in, `State` out.
#[derive(Debug, Clone)]
pub(crate) struct Health {
    state: State,
    oks: u32,
    fails: u32,
    ever_up: bool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: State::Down,
            oks: 0,
            fails: 0,
            ever_up: false,
        }
    }
}

impl Health {
    pub(crate) fn state(&self) -> State {
        self.state
    }

    pub(crate) fn is_up(&self) -> bool {
        self.state() == State::Up
    }

    /// Whether a probe should be sent at `now` (not during an ejection's cool-down). Moves an
    /// ejection whose cool-down is over to `Down`.
    pub(crate) fn should_probe(&mut self, now: Instant) -> bool {
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
    pub(crate) fn probe(&mut self, ok: bool, rules: &HealthRules, now: Instant) -> Transition {
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
        }
        Transition::None
    }

    /// A forward failed because of the peer (connection refused or reset, timeout, 5xx, key
    /// refused): out at once for the cool-down, then re-probed.
    pub(crate) fn eject(&mut self, rules: &HealthRules, now: Instant) -> Transition {
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

#[cfg(test)]
mod tests {
    //! Tier 1: selection statistics and the health state machine.
    use super::*;

    fn cand(weight: u32, used: usize) -> Candidate {
        Candidate { weight, used }
    }

    /// Idle peers split traffic by weight. 40 000 draws with weights 1:2:5; each share must be
    /// within ±0.02 of w/8 (the binomial standard deviation is ≤ 0.0025, so this is > 8σ).
    #[test]
    fn test_idle_choice_follows_weights() {
        let c = [cand(1, 0), cand(2, 0), cand(5, 0)];
        let mut rng = Rng::new(42);
        let mut hits = [0u32; 3];
        let n = 40_000;
        for _ in 0..n {
            hits[choose(&c, &mut rng).unwrap()] += 1;
        }
        for (i, w) in [1.0, 2.0, 5.0].iter().enumerate() {
            let share = f64::from(hits[i]) / f64::from(n);
            assert!(
                (share - w / 8.0).abs() < 0.02,
                "peer {i}: share {share:.3}, expected {:.3} ({hits:?})",
                w / 8.0
            );
        }
    }

    /// Under load, runs stay spread so that used/weight evens out: simulate 3000 arrivals where
    /// each chosen peer keeps the run (no completions); the final used counts must be within
    /// 10 % of the weight ratio 1:3.
    #[test]
    fn test_loaded_choice_balances_used_per_weight() {
        let mut c = [cand(1, 0), cand(3, 0)];
        let mut rng = Rng::new(7);
        for _ in 0..3000 {
            let i = choose(&c, &mut rng).unwrap();
            c[i].used += 1;
        }
        let ratio = c[1].used as f64 / c[0].used as f64;
        assert!((ratio - 3.0).abs() < 0.3, "used {c:?}, ratio {ratio}");
    }

    /// P2C prefers the less loaded of the two it drew.
    #[test]
    fn test_two_choices_picks_less_loaded() {
        let c = [cand(1, 10), cand(1, 0)];
        let mut rng = Rng::new(1);
        for _ in 0..100 {
            assert_eq!(choose(&c, &mut rng), Some(1));
        }
        assert_eq!(choose(&[], &mut rng), None);
        assert_eq!(choose(&[cand(3, 99)], &mut rng), Some(0));
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
        assert_eq!(h.probe(false, &RULES, t), Transition::None);
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
