//! Read-through cache of rendered orders (`GET /orders/{id}` is the hot
//! read): Redis in production, an in-process map in the embedded default.
//!
//! Consistency: every change writes the new rendering after its commit
//! (`put`, overwriting), while a reader that missed only fills an empty
//! entry (`fill`, `SET NX`). A reader that read the database before a
//! change therefore cannot overwrite the newer rendering the change wrote.
//! If Redis fails during a `put` the entry is deleted; if that fails too,
//! the entry is stale until its TTL runs out (logged).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;

/// Where rendered orders are cached.
#[async_trait]
pub trait OrderCache: Send + Sync {
    /// The cached rendering of order `id`.
    async fn get(&self, id: i64) -> Option<String>;
    /// Caches a rendering read from the database, unless one is already cached.
    async fn fill(&self, id: i64, json: &str);
    /// Caches the rendering a change just committed, replacing any other.
    async fn put(&self, id: i64, json: &str);
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

    async fn set(&self, id: i64, json: &str, only_if_absent: bool) -> redis::RedisResult<()> {
        let mut command = redis::cmd("SET");
        command.arg(self.key(id)).arg(json).arg("EX").arg(self.ttl.as_secs().max(1));
        if only_if_absent {
            command.arg("NX");
        }
        command.query_async::<()>(&mut self.connection.clone()).await
    }
}

#[async_trait]
impl OrderCache for RedisOrderCache {
    async fn get(&self, id: i64) -> Option<String> {
        let found = redis::cmd("GET").arg(self.key(id)).query_async(&mut self.connection.clone()).await;
        found.unwrap_or_else(|error| {
            tracing::warn!(%error, "order cache unavailable; reading the database");
            None
        })
    }

    async fn fill(&self, id: i64, json: &str) {
        if let Err(error) = self.set(id, json, true).await {
            tracing::warn!(%error, order_id = id, "cannot fill the order cache");
        }
    }

    async fn put(&self, id: i64, json: &str) {
        if let Err(error) = self.set(id, json, false).await {
            let deleted = redis::cmd("DEL").arg(self.key(id)).query_async::<()>(&mut self.connection.clone()).await;
            tracing::warn!(%error, order_id = id, deleted = deleted.is_ok(), "cannot update the cached order");
        }
    }
}

/// Rendered orders in this process, for the embedded default. Bounded: past
/// `capacity` entries it starts afresh.
pub struct MemoryOrderCache {
    entries: Mutex<HashMap<i64, (Instant, String)>>,
    ttl: Duration,
    capacity: usize,
}

impl MemoryOrderCache {
    /// An empty cache of at most `capacity` orders, each kept for `ttl`.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), ttl, capacity }
    }

    fn store(&self, id: i64, json: &str, only_if_absent: bool) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let live = entries.get(&id).is_some_and(|(stored, _)| stored.elapsed() < self.ttl);
        if only_if_absent && live {
            return;
        }
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(id, (Instant::now(), json.to_owned()));
    }
}

#[async_trait]
impl OrderCache for MemoryOrderCache {
    async fn get(&self, id: i64) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(&id).filter(|(stored, _)| stored.elapsed() < self.ttl).map(|(_, json)| json.clone())
    }

    async fn fill(&self, id: i64, json: &str) {
        self.store(id, json, true);
    }

    async fn put(&self, id: i64, json: &str) {
        self.store(id, json, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fill_never_replaces_what_a_change_put() {
        let cache = MemoryOrderCache::new(Duration::from_secs(60), 100);
        cache.put(1, "new").await;
        cache.fill(1, "old").await;
        assert_eq!(cache.get(1).await.as_deref(), Some("new"));
        cache.fill(2, "read").await;
        cache.put(2, "changed").await;
        assert_eq!(cache.get(2).await.as_deref(), Some("changed"));
        assert_eq!(cache.get(3).await, None);
    }
}
