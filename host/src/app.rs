//! The service assembled from its parts: the store, the rules, orders and
//! fulfillment, each given what it needs and nothing more. Built once per
//! process (`host serve`, `host worker`), whichever front ends it serves.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use crate::config::{BackendSettings, SwapSettings};
use crate::fulfillment::queue::database::DatabaseJobQueue;
use crate::fulfillment::queue::redis_queue::RedisJobQueue;
use crate::fulfillment::{Fulfillment, JobQueue};
use crate::health::Health;
use crate::orders::events::EventHub;
use crate::orders::order_cache::{MemoryOrderCache, OrderCache, RedisOrderCache};
use crate::orders::product_cache::{MemoryProductCache, ProductCache, RedisProductCache};
use crate::orders::{OrderPolicy, Orders};
use crate::rules::swap::ProcessInfo;
use crate::rules::{Rules, Swaps};
use crate::runtime::capabilities::{KvBackend, MemoryKv, RedisKv, ReqwestHttp, TracingLogs};
use crate::runtime::{Capabilities, EngineSettings, Runtime};
use crate::store::Store;

/// How long a rendered order stays cached (every change rewrites it).
const ORDER_CACHE_TTL: Duration = Duration::from_secs(300);

/// The Redis server, when one is configured.
#[derive(Clone)]
pub struct RedisLink {
    /// For connections of their own (blocking reads).
    pub client: redis::Client,
    /// Shared by everything else.
    pub connection: ConnectionManager,
    /// Prefix of every key.
    pub namespace: String,
}

/// One process's service.
pub struct App {
    pub store: Store,
    pub rules: Arc<Rules>,
    pub orders: Arc<Orders>,
    pub fulfillment: Arc<Fulfillment>,
    pub health: Arc<Health>,
    pub redis: Option<RedisLink>,
    /// Cancelled when the process starts shutting down: event streams end
    /// so that connections can drain.
    pub stopping: CancellationToken,
}

/// What a service is built from, whichever command runs it.
pub struct AppSettings<'a> {
    pub backend: &'a BackendSettings,
    /// `serve` or `worker`, as the component registry lists the process.
    pub role: &'static str,
    /// The components folder this process publishes from (`host serve`);
    /// workers have none and follow the registry only.
    pub components_dir: Option<&'a std::path::Path>,
    pub swap: &'a SwapSettings,
    pub product_cache_ttl: Duration,
    pub seed_demo_products: Option<bool>,
    pub orders: OrderPolicy,
}

/// Connects to Redis, retrying as configured.
pub async fn connect_redis(
    url: &str,
    settings: &BackendSettings,
) -> anyhow::Result<(redis::Client, ConnectionManager)> {
    let client = redis::Client::open(url).with_context(|| format!("bad REDIS_URL {url}"))?;
    // One reconnection attempt per command while Redis is away: requests
    // fall back to the database at once instead of queueing behind retries.
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(0);
    let connection = settings
        .retry()
        .run(&format!("Redis at {url}"), || ConnectionManager::new_with_config(client.clone(), config.clone()))
        .await?;
    Ok((client, connection))
}

/// The backends that are Redis when there is one and in-process otherwise.
struct Backends {
    kv: Arc<dyn KvBackend>,
    products: Arc<dyn ProductCache>,
    orders: Arc<dyn OrderCache>,
    queue: Arc<dyn JobQueue>,
}

impl Backends {
    fn choose(redis: Option<&RedisLink>, store: &Store, product_cache_ttl: Duration) -> Self {
        match redis {
            Some(RedisLink { client, connection, namespace }) => Self {
                kv: Arc::new(RedisKv::new(connection.clone()).with_namespace(namespace)),
                products: Arc::new(RedisProductCache::new(connection.clone(), namespace, product_cache_ttl)),
                orders: Arc::new(RedisOrderCache::new(connection.clone(), namespace, ORDER_CACHE_TTL)),
                queue: Arc::new(RedisJobQueue::new(client.clone(), connection.clone(), namespace)),
            },
            None => Self {
                kv: Arc::new(MemoryKv::default()),
                products: Arc::new(MemoryProductCache::new(product_cache_ttl)),
                orders: Arc::new(MemoryOrderCache::new(ORDER_CACHE_TTL, 10_000)),
                queue: Arc::new(DatabaseJobQueue::new(store.clone())),
            },
        }
    }
}

impl App {
    /// Connects, migrates and loads the components; on the engine of `engine`
    /// when one is given (several services in one process share compiled components).
    pub async fn build(settings: AppSettings<'_>, engine: Option<&Runtime>) -> anyhow::Result<Self> {
        let backend = settings.backend;
        let store = Store::open(&backend.connect_options()).await?;
        let redis = match &backend.redis_url {
            Some(url) => {
                let (client, connection) = connect_redis(url, backend).await?;
                Some(RedisLink { client, connection, namespace: backend.redis_namespace.clone() })
            }
            None => None,
        };
        let backends = Backends::choose(redis.as_ref(), &store, settings.product_cache_ttl);
        let capabilities = Capabilities {
            kv: backends.kv,
            sql: store.components_sql(),
            http: Arc::new(ReqwestHttp::new()),
            logs: Arc::new(TracingLogs),
        };
        let runtime = match engine {
            Some(base) => base.with_capabilities(capabilities),
            None => Runtime::new(&EngineSettings::default(), capabilities)?,
        };
        seed_demo_products(&store, settings.seed_demo_products, &settings.orders.default_currency).await?;
        let dir = settings.components_dir.map(std::path::Path::to_path_buf);
        let registry = store.for_registry().await?;
        let swaps = Swaps::new(registry, dir, settings.swap, ProcessInfo::current(settings.role));
        let rules = Arc::new(Rules::new(runtime, swaps));
        let orders = Arc::new(Orders::new(
            store.clone(),
            rules.clone(),
            backends.products,
            backends.orders,
            EventHub::default(),
            settings.orders,
        ));
        let fulfillment = Arc::new(Fulfillment::new(store.clone(), rules.clone(), orders.clone(), backends.queue));
        let redis_connection = redis.as_ref().map(|link| link.connection.clone());
        let health = Arc::new(Health::new(store.clone(), redis_connection, rules.clone()));
        load_components(&rules).await?;
        Ok(Self { store, rules, orders, fulfillment, health, redis, stopping: CancellationToken::new() })
    }
}

/// Fills an empty catalogue with demo products, by default on the embedded database only.
async fn seed_demo_products(store: &Store, seed: Option<bool>, currency: &str) -> anyhow::Result<()> {
    if seed.unwrap_or(store.backend() == crate::store::Backend::Sqlite) {
        let seeded = store.seed_demo_products(currency).await?;
        if seeded > 0 {
            tracing::info!(products = seeded, "seeded demo products into the empty catalogue");
        }
    }
    Ok(())
}

/// Publishes the folder's new components (when this process keeps the
/// folder), then loads the registry's active versions, each through the
/// gate: a component that fails its fixtures does not serve, not even at
/// start-up.
async fn load_components(rules: &Rules) -> anyhow::Result<()> {
    rules.publish_folder_at_start().await.context("cannot publish the components folder to the registry")?;
    rules.follow_registry().await.context("cannot load the component registry's active versions")?;
    for &slot in rules.swaps().followed().iter().filter(|slot| rules.slots().get(**slot).is_none()) {
        tracing::warn!(
            slot = slot.name(),
            "no component serves this slot: work that needs it fails until one is published (run `just build`)"
        );
    }
    Ok(())
}
