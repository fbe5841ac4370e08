//! Poison-tolerant locking: the one place the daemon decides what a poisoned lock means.
//!
//! A `std` lock is poisoned when a thread panicked while holding it. Everything the daemon keeps
//! behind a `std` lock is plain data updated in one step (counters, maps, a cache index, peer
//! state, rate buckets), never an invariant half-written across an `await`; refusing service
//! forever after one panic would be worse than reading it. Every lock that tolerates poisoning is
//! taken through here (`sched`'s slot list instead holds that a panic there is a bug).
//!
//! Owns: `lock`, `read`, `write`. Must not: import anything from the crate (a leaf, usable by
//! every module without creating an edge back).

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, also after a panic while it was held.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks `l`, also after a panic while it was held.
pub(crate) fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `l`, also after a panic while it was held.
pub(crate) fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md). A poisoned lock still gives its data.
    use std::sync::Arc;

    use super::*;

    #[test]
    fn test_poisoned_locks_still_lock() {
        let m = Arc::new(Mutex::new(1));
        let l = Arc::new(RwLock::new(1));
        let (m2, l2) = (m.clone(), l.clone());
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            let _w = l2.write().unwrap();
            panic!("poison both");
        })
        .join();
        assert!(m.is_poisoned() && l.is_poisoned());
        *lock(&m) += 1;
        *write(&l) += 1;
        assert_eq!((*lock(&m), *read(&l)), (2, 2));
    }
}
