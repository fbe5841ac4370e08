//! Where a run goes: local first (a free slot right now), else a peer that is up, has the
//! language and a free slot, else it waits here (the local queue) until either frees up; after
//! the queue timeout, outcome 21. A run handed over by a peer waits for a local slot only.
//!
//! The choice of a peer is weighted power-of-two-choices on what `health` knows of each peer;
//! `choose` (with its generator) is pure and unit-tested without sockets. Every wait for capacity
//! goes through one loop, `wait_for`.
//!
//! Owns: the dispatch loop, the local-first rule and `forward_queue_wait`, the choice of a peer.
//! Must not: send anything to a peer (`forward` does) or change what is known of a peer
//! (`health` does).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::forward::Attempt;
use super::{InFlight, Peer, Peers};
use crate::cache::FileCache;
use crate::dispatch::Run;
use crate::job::{Job, RunResult};
use crate::sched::{BoxFuture, ExecError, Executor};
use crate::sync::{lock, read};

/// How often a waiting run re-checks capacity when nothing notified it.
const TICK: Duration = Duration::from_millis(25);

/// Tries `attempt` until it gives something, waking when capacity may have changed (`changed`)
/// or after a [`TICK`]; `None` once `deadline` has passed without it.
async fn wait_for<T>(
    changed: &Notify,
    deadline: Instant,
    mut attempt: impl FnMut() -> Option<T>,
) -> Option<T> {
    loop {
        // Registered before trying, so a change between the try and the wait is not missed.
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(t) = attempt() {
            return Some(t);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(TICK.min(deadline - now)) => {}
        }
    }
}

/// What a waiting run does next.
enum Choice<F> {
    Local(F),
    Queue,
    Peer(InFlight),
    Overload,
}

/// Counts a run as waiting while alive.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::SeqCst);
        Waiting(c)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts `job` on a free local slot, or keeps it in `job` (`None`: no slot free now).
fn try_local<'e>(
    exec: &'e Arc<dyn Executor>,
    job: &mut Option<Job>,
) -> Option<BoxFuture<'e, Result<RunResult, ExecError>>> {
    let j = job.take().expect("the job is here until it is handed on");
    match exec.try_run(j) {
        Ok(fut) => Some(fut),
        Err(j) => {
            *job = Some(j);
            None
        }
    }
}

impl Peers {
    /// A run forwarded to us: local only, never forwarded again. Waits at most
    /// `forwarded_queue_wait` for a slot, then outcome 21 (the sender fails over).
    pub(super) async fn run_forwarded(
        &self,
        exec: &Arc<dyn Executor>,
        job: Job,
    ) -> Result<RunResult, ExecError> {
        let sh = &self.shared;
        let deadline = Instant::now() + sh.settings().config.forwarded_queue_wait;
        let mut job = Some(job);
        match wait_for(&sh.changed, deadline, || try_local(exec, &mut job)).await {
            Some(fut) => {
                let r = fut.await;
                sh.changed.notify_waiters();
                r
            }
            None => Ok(RunResult::overload()),
        }
    }

    /// A run from a client: local first, else a peer, else wait for either (see the module
    /// docs). Its body is forwarded unchanged; its `file_ids` are pushed to a peer that
    /// answers 404.
    pub(super) async fn dispatch(
        &self,
        exec: &Arc<dyn Executor>,
        cache: &Arc<FileCache>,
        run: Run,
    ) -> Result<RunResult, ExecError> {
        let sh = &self.shared;
        let Run {
            job,
            body,
            file_ids,
            ..
        } = run;
        // One snapshot of the settings for the whole run.
        let settings = sh.settings();
        let local_ok = exec.has_language(&job.language);
        let deadline = Instant::now() + settings.queue_timeout;
        let lang = job.language.clone();
        let max_attempts = settings.config.max_attempts;
        let mut job = Some(job);
        let mut attempts = 0u32;
        let mut tried: Vec<String> = Vec::new();
        if sh.waiting.load(Ordering::SeqCst) >= settings.max_queue {
            return Ok(RunResult::overload());
        }
        loop {
            let waiting = Waiting::new(&sh.waiting);
            let turn = sh.turn.lock().await;
            let choice = wait_for(&sh.changed, deadline, || {
                if local_ok {
                    if let Some(fut) = try_local(exec, &mut job) {
                        return Some(Choice::Local(fut));
                    }
                    if attempts >= max_attempts
                        || self.local_wait_acceptable(exec, settings.config.forward_queue_wait)
                    {
                        return Some(Choice::Queue);
                    }
                }
                if attempts < max_attempts
                    && let Some(p) = self.select(&lang, &tried)
                {
                    return Some(Choice::Peer(InFlight::new(p)));
                }
                // A language only peers have, and every attempt used.
                (!local_ok && attempts >= max_attempts).then_some(Choice::Overload)
            })
            .await
            .unwrap_or(Choice::Overload);
            drop(turn);
            drop(waiting);
            match choice {
                Choice::Local(fut) => {
                    let started = Instant::now();
                    let r = fut.await;
                    self.note_local(started.elapsed());
                    sh.changed.notify_waiters();
                    return r;
                }
                Choice::Queue => {
                    let j = job.take().expect("the job is here until it is handed on");
                    let r = exec.run(j).await;
                    sh.changed.notify_waiters();
                    return r;
                }
                Choice::Overload => return Ok(RunResult::overload()),
                Choice::Peer(run) => match self.forward(run, &body, &file_ids, cache).await {
                    Attempt::Done(r) => {
                        if let Ok(result) = &r {
                            sh.metrics.ran_at_peer(&lang, result.outcome);
                        }
                        return r;
                    }
                    Attempt::Retry(p) => {
                        attempts += 1;
                        sh.metrics.retry();
                        tracing::info!(peer = %p.url, attempts, "forward failed; trying elsewhere");
                        tried.push(p.url.clone());
                    }
                },
            }
        }
    }

    /// With `forward_queue_wait` set, a run stays in the local queue while the expected wait
    /// (queue length × average run time / slots) is within it.
    fn local_wait_acceptable(&self, exec: &Arc<dyn Executor>, limit: Duration) -> bool {
        if limit.is_zero() {
            return false;
        }
        let load = exec.load();
        let avg = Duration::from_micros(self.shared.avg_local_us.load(Ordering::Relaxed));
        let ahead = u32::try_from(load.queued + 1).unwrap_or(u32::MAX);
        let slots = u32::try_from(load.slots.max(1)).unwrap_or(u32::MAX);
        avg * ahead / slots <= limit
    }

    fn note_local(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let avg = &self.shared.avg_local_us;
        let old = avg.load(Ordering::Relaxed);
        // EWMA with α = 1/8; the first sample sets it.
        let new = if old == 0 { us } else { old - old / 8 + us / 8 };
        avg.store(new, Ordering::Relaxed);
    }

    /// A healthy peer with `lang` and a free slot, not in `tried`, by weighted
    /// power-of-two-choices on used/weight; `None` if there is none.
    fn select(&self, lang: &str, tried: &[String]) -> Option<Arc<Peer>> {
        let list = read(&self.shared.list);
        let mut cands = Vec::new();
        let mut peers = Vec::new();
        for p in list.iter() {
            if tried.contains(&p.url) {
                continue;
            }
            let st = lock(&p.st);
            if !st.takes(lang) {
                continue;
            }
            let used = p.inflight.load(Ordering::SeqCst) + st.external;
            if used >= st.slots {
                continue;
            }
            cands.push(Candidate {
                weight: p.weight,
                used,
            });
            peers.push(p.clone());
        }
        let i = choose(&cands, &mut lock(&self.shared.rng))?;
        Some(peers[i].clone())
    }
}

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

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Selection statistics.
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
}
