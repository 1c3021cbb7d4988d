//! The decrypted-credential cache: a small, bounded TTL cache so that a burst of calls does not
//! unwrap and decrypt the same credential each time.
//!
//! The TTL is meant to be short (about a second, see DESIGN.md "Keys"): it bounds how long a value
//! outlives a change that was not invalidated. Writers invalidate on change with
//! [`SecretCache::invalidate`] or [`SecretCache::invalidate_if`]. A TTL of zero turns caching off.
//! Values should be secret types (`Arc<SecretString>`, …) so evicted copies are wiped on drop.

use std::hash::Hash;
use std::time::Duration;

/// A bounded cache whose entries expire a fixed time after insertion.
pub struct SecretCache<K, V> {
    inner: Option<moka::sync::Cache<K, V>>,
}

impl<K, V> std::fmt::Debug for SecretCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("SecretCache");
        match &self.inner {
            Some(c) => s.field("entries", &c.entry_count()).field("ttl", &c.policy().time_to_live()),
            None => s.field("disabled", &true),
        };
        s.finish()
    }
}

impl<K, V> Clone for SecretCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Another handle to the same cache.
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<K, V> SecretCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of at most `max_entries` entries, each living `ttl`. A zero `ttl` (or zero
    /// `max_entries`) disables caching: `get` always misses and `insert` does nothing.
    pub fn new(ttl: Duration, max_entries: u64) -> Self {
        if ttl.is_zero() || max_entries == 0 {
            return Self { inner: None };
        }
        let cache = moka::sync::Cache::builder()
            .time_to_live(ttl)
            .max_capacity(max_entries)
            .support_invalidation_closures()
            .build();
        Self { inner: Some(cache) }
    }

    /// Whether caching is on.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The cached value, unless absent or expired.
    pub fn get(&self, key: &K) -> Option<V> {
        self.inner.as_ref()?.get(key)
    }

    /// Caches `value` under `key` (replacing any previous value).
    pub fn insert(&self, key: K, value: V) {
        if let Some(c) = &self.inner {
            c.insert(key, value);
        }
    }

    /// Drops one entry.
    pub fn invalidate(&self, key: &K) {
        if let Some(c) = &self.inner {
            c.invalidate(key);
        }
    }

    /// Drops every entry for which `pred` holds (e.g. all entries of one tenant). Entries present
    /// now are covered; the sweep itself runs lazily, but matching entries are never returned again.
    pub fn invalidate_if(&self, pred: impl Fn(&K, &V) -> bool + Send + Sync + 'static) {
        // An error only means invalidation closures are unsupported (`new` enables them): be safe.
        if let Some(c) = &self.inner
            && c.invalidate_entries_if(pred).is_err()
        {
            c.invalidate_all();
        }
    }

    /// Drops every entry.
    pub fn clear(&self) {
        if let Some(c) = &self.inner {
            c.invalidate_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_insert_invalidate() {
        let c: SecretCache<(String, u32), u64> = SecretCache::new(Duration::from_secs(60), 100);
        assert!(c.is_enabled());
        assert_eq!(c.get(&("t".into(), 1)), None);
        c.insert(("t".into(), 1), 10);
        c.insert(("t".into(), 2), 20);
        c.insert(("u".into(), 1), 30);
        assert_eq!(c.get(&("t".into(), 1)), Some(10));
        c.insert(("t".into(), 1), 11);
        assert_eq!(c.get(&("t".into(), 1)), Some(11));
        c.invalidate(&("t".into(), 1));
        assert_eq!(c.get(&("t".into(), 1)), None);
        c.invalidate_if(|k, _| k.0 == "t");
        assert_eq!(c.get(&("t".into(), 2)), None);
        assert_eq!(c.get(&("u".into(), 1)), Some(30));
        c.invalidate_if(|_, v| *v == 30);
        assert_eq!(c.get(&("u".into(), 1)), None);
        c.insert(("v".into(), 1), 1);
        let other = c.clone();
        other.clear();
        assert_eq!(c.get(&("v".into(), 1)), None);
        assert!(format!("{c:?}").contains("SecretCache"));
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let c: SecretCache<u32, u32> = SecretCache::new(Duration::from_millis(50), 10);
        c.insert(1, 1);
        assert_eq!(c.get(&1), Some(1));
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(c.get(&1), None);
    }

    #[test]
    fn zero_ttl_disables_caching() {
        let c: SecretCache<u32, u32> = SecretCache::new(Duration::ZERO, 10);
        assert!(!c.is_enabled());
        c.insert(1, 1);
        assert_eq!(c.get(&1), None);
        c.invalidate(&1);
        c.invalidate_if(|_, _| true);
        c.clear();
        assert!(format!("{c:?}").contains("disabled"));
    }

    #[test]
    fn bounded() {
        let c: SecretCache<u32, u32> = SecretCache::new(Duration::from_secs(60), 10);
        for i in 0..1000 {
            c.insert(i, i);
        }
        c.inner.as_ref().unwrap().run_pending_tasks();
        assert!(c.inner.as_ref().unwrap().entry_count() <= 10);
    }
}
