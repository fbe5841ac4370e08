//! Recency order of keys for least-recently-used eviction (a tick per use, a `BTreeMap` from
//! tick to key), shared by the file cache (`cache`) and the test-set store (`judge::testset`).
//!
//! Owns: the order only. Must not: know sizes or files (the caller evicts and accounts), or
//! import anything from the crate.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

#[derive(Debug, Clone)]
pub(crate) struct Lru<K> {
    ticks: HashMap<K, u64>,
    /// tick → key, oldest first.
    order: BTreeMap<u64, K>,
    next: u64,
}

impl<K> Default for Lru<K> {
    fn default() -> Lru<K> {
        Lru {
            ticks: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
        }
    }
}

impl<K: Hash + Eq + Clone> Lru<K> {
    /// Makes `key` the most recently used (inserting it if new).
    pub(crate) fn touch(&mut self, key: &K) {
        if let Some(old) = self.ticks.insert(key.clone(), self.next) {
            self.order.remove(&old);
        }
        self.order.insert(self.next, key.clone());
        self.next += 1;
    }

    pub(crate) fn remove(&mut self, key: &K) {
        if let Some(tick) = self.ticks.remove(key) {
            self.order.remove(&tick);
        }
    }

    /// Keys from least to most recently used.
    pub(crate) fn oldest_first(&self) -> impl Iterator<Item = &K> {
        self.order.values()
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit (docs/testing.md).
    use super::*;

    #[test]
    fn test_order_touch_remove() {
        let mut l = Lru::default();
        for k in ["a", "b", "c"] {
            l.touch(&k);
        }
        l.touch(&"a");
        assert_eq!(
            l.oldest_first().copied().collect::<Vec<_>>(),
            ["b", "c", "a"]
        );
        l.remove(&"c");
        l.remove(&"zz");
        assert_eq!(l.oldest_first().copied().collect::<Vec<_>>(), ["b", "a"]);
    }
}
