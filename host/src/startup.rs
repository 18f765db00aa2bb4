//! Building and running the service: connect (with retries), migrate, load
//! the components, start the background work (outbox relay, event feed,
//! fulfillment workers and queue upkeep), bind, serve until SIGTERM or
//! Ctrl-C, then drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redis::aio::ConnectionManager;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{BackendSettings, FulfillmentSettings, ServeSettings, SwapSettings};
use crate::queue::JobQueue;
use crate::queue::database::DatabaseJobQueue;
use crate::queue::events::{EventHub, follow_stream};
use crate::queue::redis_queue::{QueueKeys, RedisJobQueue};
use crate::queue::relay::{Relay, Sink};
use crate::runtime::capabilities::{KvBackend, MemoryKv, RedisKv, ReqwestHttp, TracingLogs};
use crate::runtime::{Capabilities, EngineSettings, Runtime, Slot, SlotRegistry};
use crate::service::{Policy, Service};
use crate::store::Store;
use crate::store::order_cache::{MemoryOrderCache, OrderCache, RedisOrderCache};
use crate::store::product_cache::{MemoryProductCache, ProductCache, RedisProductCache};
use crate::swap::Swaps;
use crate::worker::{Fulfillment, Workers};

/// How long a rendered order stays cached (every change rewrites it).
const ORDER_CACHE_TTL: Duration = Duration::from_secs(300);

/// A built service, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    service: Arc<Service>,
    settings: ServeSettings,
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

/// What a service is built from, whichever command runs it.
pub struct ServiceSettings<'a> {
    pub backend: &'a BackendSettings,
    pub components_dir: &'a std::path::Path,
    pub swap: &'a SwapSettings,
    pub product_cache_ttl: Duration,
    pub seed_demo_products: Option<bool>,
    pub policy: Policy,
}

/// Connects, migrates and loads the components; on the engine of `engine`
/// when one is given (several services in one process share compiled components).
pub async fn build_service(settings: ServiceSettings<'_>, engine: Option<&Runtime>) -> anyhow::Result<Service> {
    let backend = settings.backend;
    let store = Store::open(&backend.connect_options()).await?;
    let redis = match &backend.redis_url {
        Some(url) => Some(connect_redis(url, backend).await?),
        None => None,
    };
    let namespace = backend.redis_namespace.as_str();
    let cache_ttl = settings.product_cache_ttl;
    type Backends = (Arc<dyn KvBackend>, Arc<dyn ProductCache>, Arc<dyn OrderCache>, Arc<dyn JobQueue>);
    let (kv, cache, orders, queue): Backends = match &redis {
        Some((client, connection)) => (
            Arc::new(RedisKv::new(connection.clone()).with_namespace(namespace)),
            Arc::new(RedisProductCache::new(connection.clone(), namespace, cache_ttl)),
            Arc::new(RedisOrderCache::new(connection.clone(), namespace, ORDER_CACHE_TTL)),
            Arc::new(RedisJobQueue::new(client.clone(), connection.clone(), namespace)),
        ),
        None => (
            Arc::new(MemoryKv::default()),
            Arc::new(MemoryProductCache::new(cache_ttl)),
            Arc::new(MemoryOrderCache::new(ORDER_CACHE_TTL, 10_000)),
            Arc::new(DatabaseJobQueue::new(store.clone())),
        ),
    };
    let capabilities = Capabilities {
        kv,
        sql: store.components_sql(),
        http: Arc::new(ReqwestHttp::new()),
        logs: Arc::new(TracingLogs),
    };
    let runtime = match engine {
        Some(base) => base.with_capabilities(capabilities),
        None => Runtime::new(&EngineSettings::default(), capabilities)?,
    };
    let seed = settings.seed_demo_products.unwrap_or(store.backend() == crate::store::Backend::Sqlite);
    if seed {
        let seeded = store.seed_demo_products(&settings.policy.default_currency).await?;
        if seeded > 0 {
            tracing::info!(products = seeded, "seeded demo products into the empty catalogue");
        }
    }
    let (redis_client, redis) = match redis {
        Some((client, connection)) => (Some(client), Some(connection)),
        None => (None, None),
    };
    let service = Service {
        store,
        cache,
        orders,
        runtime,
        slots: SlotRegistry::new(),
        redis,
        redis_client,
        redis_namespace: namespace.to_owned(),
        queue,
        events: EventHub::default(),
        stopping: CancellationToken::new(),
        swaps: Swaps::new(settings.components_dir.to_path_buf(), settings.swap.policy()),
        policy: settings.policy,
    };
    // Through the gate, as every later version: a component that fails its
    // fixtures does not serve, not even at start-up.
    let filled = service
        .load_folder()
        .await
        .with_context(|| format!("cannot read the components in {}", settings.components_dir.display()))?;
    for slot in Slot::ALL.into_iter().filter(|slot| !filled.contains(slot)) {
        tracing::warn!(
            slot = slot.name(),
            dir = %settings.components_dir.display(),
            "no component serves this slot: work that needs it fails until one is dropped in (run `just build`)"
        );
    }
    Ok(service)
}

/// The work a process does besides answering requests: the outbox relay,
/// the event feed and, when configured, fulfillment workers and queue upkeep.
pub struct Background {
    stop: CancellationToken,
    tasks: JoinSet<()>,
    workers: Option<Workers>,
}

impl Background {
    /// Starts the components folder's watcher (unless off), the relay, the
    /// event feed (with Redis), and `settings.workers` workers with the
    /// queue upkeep (when there are any).
    pub fn start(service: Arc<Service>, settings: &FulfillmentSettings, swap: &SwapSettings) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        if swap.watch_components {
            let debounce = Duration::from_millis(swap.watch_debounce_ms);
            tasks.spawn(crate::swap::watch::watch(service.clone(), debounce, stop.clone()));
        }
        let stream = format!("{}order_events", service.redis_namespace);
        let sink = match (&service.redis, &service.redis_client) {
            (Some(connection), Some(client)) => {
                tasks.spawn(follow_stream(client.clone(), stream.clone(), service.events.clone(), stop.clone()));
                Sink::Redis {
                    connection: connection.clone(),
                    queue: QueueKeys::new(&service.redis_namespace).queue,
                    stream,
                    max_len: settings.events_max_len,
                }
            }
            _ => Sink::Local(service.events.clone()),
        };
        tasks.spawn(Relay::new(service.store.clone(), sink).run(stop.clone()));
        let workers = (settings.workers > 0).then(|| {
            let queue = service.queue.clone();
            tasks.spawn(crate::queue::maintenance::run(service.clone(), queue.clone(), settings.clone(), stop.clone()));
            Workers::start(Fulfillment::new(service.clone(), queue, settings.clone()), settings.workers)
        });
        if let Some(count) = workers.as_ref().map(|_| settings.workers) {
            tracing::info!(workers = count, queue = service.queue.backend(), "fulfillment workers started");
        }
        Self { stop, tasks, workers }
    }

    /// Lets the workers finish the jobs in hand (within `grace`), then stops the rest.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(workers) = self.workers.take() {
            workers.drain(grace).await;
        }
        self.stop.cancel();
        // The relay and the feed stop within a second; no need to wait longer.
        let _ = tokio::time::timeout(Duration::from_secs(3), async { while self.tasks.join_next().await.is_some() {} })
            .await;
        self.tasks.abort_all();
    }
}

impl Application {
    /// Connects, migrates, loads the components and binds the listener.
    pub async fn build(settings: ServeSettings) -> anyhow::Result<Self> {
        Self::build_on(settings, None).await
    }

    /// Like [`Application::build`], on the engine of an existing runtime when
    /// one is given (several services in one process share compiled components).
    pub async fn build_on(settings: ServeSettings, engine: Option<&Runtime>) -> anyhow::Result<Self> {
        let policy = Policy {
            default_currency: settings.default_currency.clone(),
            idempotency_ttl: Duration::from_secs(settings.idempotency_ttl_secs),
            admin_token: settings.admin_token.clone().filter(|token| !token.is_empty()),
            ..Policy::default()
        };
        let service = build_service(
            ServiceSettings {
                backend: &settings.backend,
                components_dir: &settings.components_dir,
                swap: &settings.swap,
                product_cache_ttl: Duration::from_secs(settings.product_cache_ttl_secs),
                seed_demo_products: settings.seed_demo_products,
                policy,
            },
            engine,
        )
        .await?;
        let listener = TcpListener::bind(settings.listen_addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen_addr))?;
        Ok(Self { listener, service: Arc::new(service), settings })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The shared state (tests inspect the store through it).
    pub fn service(&self) -> Arc<Service> {
        self.service.clone()
    }

    /// Serves until `shutdown` resolves, then lets requests and jobs in
    /// flight finish within the grace period.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let limits = crate::api::HttpLimits {
            max_body_bytes: self.settings.max_body_bytes,
            request_timeout: Duration::from_millis(self.settings.request_timeout_ms.max(1)),
        };
        let router = crate::api::router(self.service.clone(), limits);
        let background = Background::start(self.service.clone(), &self.settings.fulfillment, &self.settings.swap);
        let purge = tokio::spawn(purge_idempotency_keys(self.service.clone()));
        let grace = Duration::from_secs(self.settings.shutdown_grace_secs);
        let stopping = CancellationToken::new();
        let server = axum::serve(self.listener, router).with_graceful_shutdown({
            let stopping = stopping.clone();
            let service = self.service.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down: no new connections or jobs, finishing those in flight");
                stopping.cancel();
                service.stopping.cancel();
            }
        });
        let served = async {
            server.await.context("the server failed")?;
            anyhow::Ok(())
        };
        // Workers drain while requests finish, both within the grace period.
        let drained = tokio::spawn({
            let stopping = stopping.clone();
            async move {
                stopping.cancelled().await;
                background.stop(grace).await;
            }
        });
        let deadline = async {
            stopping.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        let outcome = tokio::select! {
            result = served => result,
            () = deadline => {
                tracing::warn!(?grace, "requests still running after the grace period; stopping anyway");
                Ok(())
            }
        };
        stopping.cancel();
        let _ = drained.await;
        purge.abort();
        self.service.store.close().await;
        tracing::info!("stopped");
        outcome
    }

    /// Serves until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

/// Deletes expired idempotency keys every ten minutes.
async fn purge_idempotency_keys(service: Arc<Service>) {
    let mut every = tokio::time::interval(Duration::from_secs(600));
    loop {
        every.tick().await;
        match service.store.purge_idempotency_keys().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired idempotency keys deleted"),
            Err(error) => tracing::warn!(%error, "cannot purge idempotency keys"),
        }
    }
}
