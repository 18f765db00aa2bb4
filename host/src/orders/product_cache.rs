//! Cache-aside for products: Redis in production, an in-process map in the
//! embedded default. The cache serves names and prices to the create flow;
//! stock is always checked by the database. A cache that fails is skipped
//! (logged), never fatal: the database has the truth.
//!
//! The cache cannot go back in time: every entry carries the product's
//! `updated_at`, and a write replaces only an older one. A change writes the
//! changed product (rather than dropping the entry), so a fill that read the
//! product just before the change and writes it just after finds a newer
//! entry and leaves it: no order is priced from the old price after the
//! change answered. If Redis fails during a change's write, the entry is
//! deleted; if that fails too, it is stale until its TTL runs out (logged).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::versioned;
use crate::domain::Product;

/// Where cached products live.
#[async_trait]
pub trait ProductCache: Send + Sync {
    /// The cached products among `ids` (`None` for a miss), in the same order.
    async fn get_many(&self, ids: &[i64]) -> Vec<Option<Product>>;
    /// Caches `products` for the configured TTL, each unless the cache
    /// holds the same or a newer version of it (by `updated_at`).
    async fn put_many(&self, products: &[Product]);
    /// Caches a product a change just committed; if that fails, forgets it.
    async fn changed(&self, product: &Product);
}

/// The version an entry is stamped with: its `updated_at`, in microseconds.
fn stamp(product: &Product) -> i64 {
    product.updated_at.timestamp_micros()
}

/// The product in a `<stamp> <json>` value; `None` for anything else.
fn cached_product(value: &str) -> Option<Product> {
    serde_json::from_str(versioned::json_of(value)?).ok()
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
            Ok(values) => values.into_iter().map(|value| value.as_deref().and_then(cached_product)).collect(),
            Err(error) => {
                tracing::warn!(%error, "product cache unavailable; reading the database");
                vec![None; ids.len()]
            }
        }
    }

    async fn put_many(&self, products: &[Product]) {
        if let Err(error) = self.put_if_newer(products).await {
            tracing::warn!(%error, "cannot fill the product cache");
        }
    }

    async fn changed(&self, product: &Product) {
        let Err(error) = self.put_if_newer(std::slice::from_ref(product)).await else { return };
        let mut connection = self.connection.clone();
        let deleted = connection.del::<_, ()>(self.key(product.id)).await;
        tracing::warn!(%error, product_id = product.id, deleted = deleted.is_ok(), "cannot update a cached product");
    }
}

impl RedisProductCache {
    async fn put_if_newer(&self, products: &[Product]) -> redis::RedisResult<()> {
        let entries: Vec<(String, i64, String)> = products
            .iter()
            .filter_map(|product| Some((self.key(product.id), stamp(product), serde_json::to_string(product).ok()?)))
            .collect();
        versioned::put_if_newer(&self.connection, &entries, self.ttl).await
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
            let newer = entries.get(&product.id).is_none_or(|(_, cached)| stamp(cached) < stamp(product));
            if newer {
                entries.insert(product.id, (now, product.clone()));
            }
        }
    }

    async fn changed(&self, product: &Product) {
        self.put_many(std::slice::from_ref(product)).await;
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
    async fn memory_cache_hits_misses_and_expires() {
        let cache = MemoryProductCache::new(Duration::from_secs(60));
        cache.put_many(&[product(1), product(2)]).await;
        let found = cache.get_many(&[2, 3, 1]).await;
        assert_eq!(found.iter().map(|p| p.as_ref().map(|p| p.id)).collect::<Vec<_>>(), [Some(2), None, Some(1)]);

        let short = MemoryProductCache::new(Duration::from_millis(1));
        short.put_many(&[product(5)]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(short.get_many(&[5]).await[0].is_none());
    }

    #[tokio::test]
    async fn memory_cache_never_goes_back_to_an_older_version() {
        let cache = MemoryProductCache::new(Duration::from_secs(60));
        let old = product(1);
        let new = Product { price: 250, updated_at: old.updated_at + chrono::Duration::microseconds(1), ..old.clone() };
        cache.changed(&new).await;
        // A fill that read the product before the change writes after it.
        cache.put_many(std::slice::from_ref(&old)).await;
        assert_eq!(cache.get_many(&[1]).await[0].as_ref().map(|p| p.price), Some(250));
    }

    #[test]
    fn only_stamped_values_are_read_back() {
        let json = serde_json::to_string(&product(3)).unwrap();
        assert_eq!(cached_product(&format!("1700000000000000 {json}")).map(|p| p.id), Some(3));
        assert!(cached_product(&json).is_none(), "an entry from before stamps is a miss");
        assert!(cached_product("12x {}").is_none());
    }
}
