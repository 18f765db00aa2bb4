//! The key-value store in this process (the embedded default, and tests):
//! each namespace within its own budget, and the whole map within a total
//! one, so it never grows past a bound the operator knows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{KvBackend, KvSpace, entry_cost};
use crate::runtime::bindings::errors::Error;

/// What the whole map may hold, every namespace together.
const TOTAL_BYTES: u64 = 256 << 20;

/// One stored value.
struct Entry {
    value: String,
    expires: Option<Instant>,
    /// The namespace it is charged to, and what it costs there.
    space: String,
    cost: u64,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

#[derive(Default)]
struct Map {
    entries: HashMap<String, Entry>,
    /// Bytes charged per namespace.
    used: HashMap<String, u64>,
    total: u64,
}

impl Map {
    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.total -= entry.cost;
        if let Some(used) = self.used.get_mut(&entry.space) {
            *used -= entry.cost;
        }
        Some(entry)
    }

    /// The live entry under `key`; an expired one is dropped.
    fn live(&mut self, key: &str) -> Option<&mut Entry> {
        let now = Instant::now();
        if self.entries.get(key).is_some_and(|entry| !entry.live(now)) {
            self.remove(key);
        }
        self.entries.get_mut(key)
    }

    /// Stores `value` under `key`, within `space`'s budget and the total.
    fn store(
        &mut self,
        space: KvSpace<'_>,
        key: &str,
        value: String,
        expires: Option<Instant>,
        limit: u64,
    ) -> Result<(), Error> {
        let cost = entry_cost(key, value.len());
        let replaced = self.live(key).map(|entry| (entry.cost, entry.space == space.prefix));
        let (freed, freed_here) = match replaced {
            Some((cost, same_space)) => (cost, if same_space { cost } else { 0 }),
            None => (0, 0),
        };
        let fits = |map: &Map| {
            let used = map.used.get(space.prefix).copied().unwrap_or(0);
            used - freed_here + cost <= space.max_bytes && map.total - freed + cost <= limit
        };
        if !fits(self) {
            self.forget_expired();
            if !fits(self) {
                return Err(Error::LimitExceeded(format!(
                    "the store holds at most {} bytes for this component",
                    space.max_bytes.min(limit)
                )));
            }
        }
        self.remove(key);
        *self.used.entry(space.prefix.to_owned()).or_default() += cost;
        self.total += cost;
        self.entries.insert(key.to_owned(), Entry { value, expires, space: space.prefix.to_owned(), cost });
        Ok(())
    }

    fn forget_expired(&mut self) {
        let now = Instant::now();
        let expired: Vec<String> =
            self.entries.iter().filter(|(_, entry)| !entry.live(now)).map(|(key, _)| key.clone()).collect();
        for key in expired {
            self.remove(&key);
        }
    }
}

/// An in-process map with expiry and budgets.
pub struct MemoryKv {
    map: Mutex<Map>,
    total_bytes: u64,
}

impl Default for MemoryKv {
    fn default() -> Self {
        Self::with_total(TOTAL_BYTES)
    }
}

impl MemoryKv {
    /// A store holding at most `total_bytes` across every namespace.
    pub fn with_total(total_bytes: u64) -> Self {
        Self { map: Mutex::default(), total_bytes }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, Map> {
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Seeds a value, as a test or fixture would (charged to no namespace).
    pub fn insert(&self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        let cost = entry_cost(&key, value.len());
        let mut map = self.map();
        map.remove(&key);
        map.total += cost;
        map.entries.insert(key, Entry { value, expires: None, space: String::new(), cost });
    }

    /// A snapshot of every live key and value, for assertions.
    pub fn snapshot(&self) -> HashMap<String, String> {
        let now = Instant::now();
        let map = self.map();
        map.entries
            .iter()
            .filter(|(_, entry)| entry.live(now))
            .map(|(key, entry)| (key.clone(), entry.value.clone()))
            .collect()
    }

    /// The bytes charged to the namespace `prefix`.
    pub fn used(&self, prefix: &str) -> u64 {
        self.map().used.get(prefix).copied().unwrap_or(0)
    }
}

#[async_trait]
impl KvBackend for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<String>, Error> {
        Ok(self.map().live(key).map(|entry| entry.value.clone()))
    }

    async fn set(&self, space: KvSpace<'_>, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), Error> {
        self.map().store(space, key, value.to_owned(), ttl.map(|ttl| Instant::now() + ttl), self.total_bytes)
    }

    async fn incr(&self, space: KvSpace<'_>, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, Error> {
        let mut map = self.map();
        let (current, expires) = match map.live(key) {
            Some(entry) => {
                let current: i64 =
                    entry.value.parse().map_err(|_| Error::Invalid("the value is not an integer".into()))?;
                (current, entry.expires)
            }
            None => (0, None),
        };
        let next = current.checked_add(delta).ok_or_else(|| Error::Invalid("increment overflows".into()))?;
        let expires = expires.or_else(|| ttl.map(|ttl| Instant::now() + ttl));
        map.store(space, key, next.to_string(), expires, self.total_bytes)?;
        Ok(next)
    }

    async fn delete(&self, _space: KvSpace<'_>, key: &str) -> Result<bool, Error> {
        let mut map = self.map();
        let existed = map.live(key).is_some();
        map.remove(key);
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACE: KvSpace<'static> = KvSpace { prefix: "kv:test:", max_bytes: 1 << 20 };

    #[tokio::test]
    async fn memory_kv_expires_and_counts() {
        let kv = MemoryKv::default();
        kv.set(SPACE, "a", "1", Some(Duration::from_millis(30))).await.unwrap();
        assert_eq!(kv.get("a").await.unwrap().as_deref(), Some("1"));
        assert_eq!(kv.incr(SPACE, "c", 2, Some(Duration::from_millis(30))).await.unwrap(), 2);
        assert_eq!(kv.incr(SPACE, "c", 3, None).await.unwrap(), 5);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(kv.get("a").await.unwrap(), None);
        assert_eq!(kv.incr(SPACE, "c", 1, None).await.unwrap(), 1, "the window expired");
        assert!(kv.delete(SPACE, "c").await.unwrap());
        assert!(!kv.delete(SPACE, "c").await.unwrap());
        assert!(matches!(kv.incr(SPACE, "a", 1, None).await, Ok(1)));
        kv.set(SPACE, "a", "x", None).await.unwrap();
        assert!(matches!(kv.incr(SPACE, "a", 1, None).await, Err(Error::Invalid(_))));
    }

    #[tokio::test]
    async fn each_namespace_stays_within_its_budget_and_all_within_the_total() {
        let kv = MemoryKv::with_total(10_000);
        let small = KvSpace { prefix: "kv:a:", max_bytes: 1_000 };
        let value = "x".repeat(200);
        let mut stored = 0;
        while kv.set(small, &format!("kv:a:{stored}"), &value, None).await.is_ok() {
            stored += 1;
        }
        assert_eq!(stored, 3, "3 entries of about 270 bytes fit in 1,000");
        assert!(kv.used("kv:a:") <= 1_000);
        // Replacing a value is charged the difference, not twice.
        kv.set(small, "kv:a:0", "y", None).await.unwrap();
        // Another namespace is not affected, until the total runs out.
        let other = KvSpace { prefix: "kv:b:", max_bytes: 1 << 20 };
        kv.set(other, "kv:b:1", &value, None).await.unwrap();
        let error = kv.set(other, "kv:b:2", &"z".repeat(10_000), None).await.unwrap_err();
        assert!(matches!(error, Error::LimitExceeded(_)), "{error:?}");
        // Expired entries give their room back.
        kv.set(small, "kv:a:1", "gone soon", Some(Duration::from_millis(10))).await.unwrap();
        kv.delete(small, "kv:a:2").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        kv.set(small, "kv:a:9", &value, None).await.unwrap();
        kv.set(small, "kv:a:10", &value, None).await.unwrap();
    }
}
