//! Cache-aside for products: Redis in production, an in-process map in the
//! embedded default. The cache serves names and prices to the create flow;
//! stock is always checked by the database. A cache that fails is skipped
//! (logged), never fatal: the database has the truth.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::domain::Product;

/// Where cached products live.
#[async_trait]
pub trait ProductCache: Send + Sync {
    /// The cached products among `ids` (`None` for a miss), in the same order.
    async fn get_many(&self, ids: &[i64]) -> Vec<Option<Product>>;
    /// Caches `products` for the configured TTL.
    async fn put_many(&self, products: &[Product]);
    /// Forgets a product (after it changed).
    async fn invalidate(&self, id: i64);
}

/// Products in Redis under `<namespace>product:<id>`, as JSON with a TTL.
pub struct RedisProductCache {
    connection: ConnectionManager,
    namespace: String,
    ttl: Duration,
}

impl RedisProductCache {
    /// A cache on `connection`; `namespace` prefixes every key.
    pub fn new(connection: ConnectionManager, namespace: &str, ttl: Duration) -> Self {
        Self { connection, namespace: namespace.to_owned(), ttl }
    }

    fn key(&self, id: i64) -> String {
        format!("{}product:{id}", self.namespace)
    }
}

#[async_trait]
impl ProductCache for RedisProductCache {
    async fn get_many(&self, ids: &[i64]) -> Vec<Option<Product>> {
        if ids.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key(*id)).collect();
        let mut connection = self.connection.clone();
        // MGET answers a list even for one key.
        let found: Result<Vec<Option<String>>, _> = redis::cmd("MGET").arg(&keys).query_async(&mut connection).await;
        match found {
            Ok(values) => {
                values.into_iter().map(|value| value.and_then(|json| serde_json::from_str(&json).ok())).collect()
            }
            Err(error) => {
                tracing::warn!(%error, "product cache unavailable; reading the database");
                vec![None; ids.len()]
            }
        }
    }

    async fn put_many(&self, products: &[Product]) {
        let mut pipeline = redis::pipe();
        for product in products {
            let Ok(json) = serde_json::to_string(product) else { continue };
            pipeline.set_ex(self.key(product.id), json, self.ttl.as_secs().max(1)).ignore();
        }
        let mut connection = self.connection.clone();
        if let Err(error) = pipeline.query_async::<()>(&mut connection).await {
            tracing::warn!(%error, "cannot fill the product cache");
        }
    }

    async fn invalidate(&self, id: i64) {
        let mut connection = self.connection.clone();
        if let Err(error) = connection.del::<_, ()>(self.key(id)).await {
            tracing::warn!(%error, product_id = id, "cannot invalidate a cached product");
        }
    }
}

/// Products in this process, for the embedded default.
pub struct MemoryProductCache {
    entries: Mutex<HashMap<i64, (Instant, Product)>>,
    ttl: Duration,
}

impl MemoryProductCache {
    /// An empty cache whose entries live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self { entries: Mutex::new(HashMap::new()), ttl }
    }
}

#[async_trait]
impl ProductCache for MemoryProductCache {
    async fn get_many(&self, ids: &[i64]) -> Vec<Option<Product>> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        ids.iter()
            .map(|id| {
                entries.get(id).filter(|(stored, _)| stored.elapsed() < self.ttl).map(|(_, product)| product.clone())
            })
            .collect()
    }

    async fn put_many(&self, products: &[Product]) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        entries.retain(|_, (stored, _)| stored.elapsed() < self.ttl);
        for product in products {
            entries.insert(product.id, (now, product.clone()));
        }
    }

    async fn invalidate(&self, id: i64) {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: i64) -> Product {
        let now = chrono::Utc::now();
        Product {
            id,
            sku: format!("SKU-{id}"),
            name: "thing".into(),
            price: 100,
            currency: "EUR".into(),
            stock: 1,
            active: true,
            created_at: now,
            updated_at: now,
        }
    }

    #[tokio::test]
    async fn memory_cache_hits_misses_invalidates_and_expires() {
        let cache = MemoryProductCache::new(Duration::from_secs(60));
        cache.put_many(&[product(1), product(2)]).await;
        let found = cache.get_many(&[2, 3, 1]).await;
        assert_eq!(found.iter().map(|p| p.as_ref().map(|p| p.id)).collect::<Vec<_>>(), [Some(2), None, Some(1)]);
        cache.invalidate(1).await;
        assert!(cache.get_many(&[1]).await[0].is_none());

        let short = MemoryProductCache::new(Duration::from_millis(1));
        short.put_many(&[product(5)]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(short.get_many(&[5]).await[0].is_none());
    }
}
