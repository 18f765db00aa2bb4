//! Read-through cache of rendered orders (`GET /orders/{id}` is the hot
//! read): Redis in production, an in-process map in the embedded default.
//!
//! Consistency: every rendering is stored with the order's version, and a
//! write replaces only an older one. Every change writes its rendering after
//! its commit, and a reader that missed writes what it read; whichever order
//! those writes arrive in (a worker's late write after a cancel, a reader's
//! after a change), the newest version stays. If Redis fails during a write
//! the entry is deleted; if that fails too, the entry is stale until its TTL
//! runs out (logged).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::versioned;

/// Where rendered orders are cached.
#[async_trait]
pub trait OrderCache: Send + Sync {
    /// The cached rendering of order `id`.
    async fn get(&self, id: i64) -> Option<String>;
    /// Caches the rendering of `version` of order `id`, unless the same or
    /// a newer version is cached.
    async fn put(&self, id: i64, version: i64, json: &str);
}

/// Rendered orders in Redis under `<namespace>order:<id>`.
pub struct RedisOrderCache {
    connection: ConnectionManager,
    namespace: String,
    ttl: Duration,
}

impl RedisOrderCache {
    /// A cache on `connection`; `namespace` prefixes every key.
    pub fn new(connection: ConnectionManager, namespace: &str, ttl: Duration) -> Self {
        Self { connection, namespace: namespace.to_owned(), ttl }
    }

    fn key(&self, id: i64) -> String {
        format!("{}order:{id}", self.namespace)
    }
}

#[async_trait]
impl OrderCache for RedisOrderCache {
    async fn get(&self, id: i64) -> Option<String> {
        let found: redis::RedisResult<Option<String>> =
            redis::cmd("GET").arg(self.key(id)).query_async(&mut self.connection.clone()).await;
        found
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "order cache unavailable; reading the database");
                None
            })
            .and_then(|value| versioned::json_of(&value).map(str::to_owned))
    }

    async fn put(&self, id: i64, version: i64, json: &str) {
        let stored =
            versioned::put_if_newer(&self.connection, &[(self.key(id), version, json.to_owned())], self.ttl).await;
        if let Err(error) = stored {
            let deleted = redis::cmd("DEL").arg(self.key(id)).query_async::<()>(&mut self.connection.clone()).await;
            tracing::warn!(%error, order_id = id, deleted = deleted.is_ok(), "cannot update the cached order");
        }
    }
}

/// Rendered orders in this process, for the embedded default. Bounded: past
/// `capacity` entries it starts afresh.
pub struct MemoryOrderCache {
    entries: Mutex<HashMap<i64, Entry>>,
    ttl: Duration,
    capacity: usize,
}

/// A cached rendering: when it was stored, of which version.
struct Entry {
    stored: Instant,
    version: i64,
    json: String,
}

impl MemoryOrderCache {
    /// An empty cache of at most `capacity` orders, each kept for `ttl`.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), ttl, capacity }
    }
}

#[async_trait]
impl OrderCache for MemoryOrderCache {
    async fn get(&self, id: i64) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(&id).filter(|entry| entry.stored.elapsed() < self.ttl).map(|entry| entry.json.clone())
    }

    async fn put(&self, id: i64, version: i64, json: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let newer_cached =
            entries.get(&id).is_some_and(|entry| entry.stored.elapsed() < self.ttl && entry.version >= version);
        if newer_cached {
            return;
        }
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(id, Entry { stored: Instant::now(), version, json: json.to_owned() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_older_version_never_replaces_a_newer_one() {
        let cache = MemoryOrderCache::new(Duration::from_secs(60), 100);
        // A cancel (version 3) written before the worker's late write of version 2.
        cache.put(1, 3, "cancelled").await;
        cache.put(1, 2, "processing").await;
        assert_eq!(cache.get(1).await.as_deref(), Some("cancelled"));
        cache.put(1, 4, "newer").await;
        assert_eq!(cache.get(1).await.as_deref(), Some("newer"));
        cache.put(2, 1, "read").await;
        cache.put(2, 2, "changed").await;
        assert_eq!(cache.get(2).await.as_deref(), Some("changed"));
        assert_eq!(cache.get(3).await, None);
    }
}
