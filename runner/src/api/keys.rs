//! API keys and per-key hourly run budgets for `POST runs` (docs/jobe-api.md §1.11).
//!
//! Jobe's intended `Throttle` filter: missing key → 403, unknown key → 403, budget spent → here
//! 401 (what CodeRunner reports as "submission limit reached"; Jobe's filter says 429, which
//! CodeRunner shows as an unknown server error). The budget is a token bucket per key with
//! capacity = runs per hour, refilled continuously at that rate; 0 means unlimited.
//!
//! Must not: log keys or put them in error messages.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::error::ApiError;
use crate::sync::lock;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The mutable half of key checking; the key table itself lives in `ApiConfig`.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    // A std Mutex: the critical section is a hash lookup and some arithmetic, never an await.
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Checks `key` (the `X-API-KEY` header, if any, and if valid UTF-8) against `keys` at `now`,
    /// spending one run from its budget on success.
    pub(crate) fn check(
        &self,
        keys: &HashMap<String, u32>,
        key: Option<&str>,
        now: Instant,
    ) -> Result<(), ApiError> {
        let key = key.ok_or(ApiError::MissingKey)?;
        let &rate = keys.get(key).ok_or(ApiError::UnknownKey)?;
        if rate == 0 {
            return Ok(());
        }
        let cap = f64::from(rate);
        let mut buckets = lock(&self.buckets);
        let b = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: cap,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * cap / 3600.0).min(cap);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(ApiError::RateLimited)
        }
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). Key checks and the hourly token bucket.
    use std::time::Duration;

    use super::*;

    #[test]
    fn test_missing_unknown_unlimited() {
        let keys = HashMap::from([("free".to_owned(), 0), ("k".to_owned(), 2)]);
        let rl = RateLimiter::default();
        let t = Instant::now();
        assert_eq!(rl.check(&keys, None, t), Err(ApiError::MissingKey));
        assert_eq!(rl.check(&keys, Some("nope"), t), Err(ApiError::UnknownKey));
        for _ in 0..1000 {
            assert_eq!(rl.check(&keys, Some("free"), t), Ok(()));
        }
    }

    #[test]
    fn test_bucket_spends_and_refills() {
        let keys = HashMap::from([("k".to_owned(), 2), ("other".to_owned(), 1)]);
        let rl = RateLimiter::default();
        let t = Instant::now();
        assert_eq!(rl.check(&keys, Some("k"), t), Ok(()));
        assert_eq!(rl.check(&keys, Some("k"), t), Ok(()));
        assert_eq!(rl.check(&keys, Some("k"), t), Err(ApiError::RateLimited));
        // Keys have separate budgets.
        assert_eq!(rl.check(&keys, Some("other"), t), Ok(()));
        // 2/hour → one token per 30 minutes.
        let t2 = t + Duration::from_secs(29 * 60);
        assert_eq!(rl.check(&keys, Some("k"), t2), Err(ApiError::RateLimited));
        let t3 = t + Duration::from_secs(31 * 60);
        assert_eq!(rl.check(&keys, Some("k"), t3), Ok(()));
        assert_eq!(rl.check(&keys, Some("k"), t3), Err(ApiError::RateLimited));
    }
}
