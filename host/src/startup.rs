//! Building and running the service: connect (with retries), migrate, load
//! the components, bind, serve until SIGTERM or Ctrl-C, then drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use redis::aio::ConnectionManager;
use tokio::net::TcpListener;

use crate::config::ServeSettings;
use crate::runtime::capabilities::{KvBackend, MemoryKv, RedisKv, ReqwestHttp, TracingLogs};
use crate::runtime::{Capabilities, EngineSettings, Runtime, Slot, SlotRegistry};
use crate::service::{Policy, Service};
use crate::store::Store;
use crate::store::order_cache::{MemoryOrderCache, OrderCache, RedisOrderCache};
use crate::store::product_cache::{MemoryProductCache, ProductCache, RedisProductCache};

/// How long a rendered order stays cached (every change rewrites it).
const ORDER_CACHE_TTL: Duration = Duration::from_secs(300);

/// A built service, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    service: Arc<Service>,
    settings: ServeSettings,
}

/// Connects to Redis, retrying as configured.
pub async fn connect_redis(url: &str, settings: &crate::config::BackendSettings) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url).with_context(|| format!("bad REDIS_URL {url}"))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    settings
        .retry()
        .run(&format!("Redis at {url}"), || ConnectionManager::new_with_config(client.clone(), config.clone()))
        .await
}

impl Application {
    /// Connects, migrates, loads the components and binds the listener.
    pub async fn build(settings: ServeSettings) -> anyhow::Result<Self> {
        Self::build_on(settings, None).await
    }

    /// Like [`Application::build`], on the engine of an existing runtime when
    /// one is given (several services in one process share compiled components).
    pub async fn build_on(settings: ServeSettings, engine: Option<&Runtime>) -> anyhow::Result<Self> {
        let store = Store::open(&settings.backend.connect_options()).await?;
        let redis = match &settings.backend.redis_url {
            Some(url) => Some(connect_redis(url, &settings.backend).await?),
            None => None,
        };
        let namespace = settings.backend.redis_namespace.as_str();
        let cache_ttl = Duration::from_secs(settings.product_cache_ttl_secs);
        let (kv, cache, orders): (Arc<dyn KvBackend>, Arc<dyn ProductCache>, Arc<dyn OrderCache>) = match &redis {
            Some(connection) => (
                Arc::new(RedisKv::new(connection.clone()).with_namespace(namespace)),
                Arc::new(RedisProductCache::new(connection.clone(), namespace, cache_ttl)),
                Arc::new(RedisOrderCache::new(connection.clone(), namespace, ORDER_CACHE_TTL)),
            ),
            None => (
                Arc::new(MemoryKv::default()),
                Arc::new(MemoryProductCache::new(cache_ttl)),
                Arc::new(MemoryOrderCache::new(ORDER_CACHE_TTL, 10_000)),
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
        let slots = SlotRegistry::new();
        let filled = runtime
            .load_dir(&settings.components_dir, &slots)
            .await
            .with_context(|| format!("cannot load the components in {}", settings.components_dir.display()))?;
        for slot in Slot::ALL.into_iter().filter(|slot| !filled.contains(slot)) {
            tracing::warn!(
                slot = slot.name(),
                dir = %settings.components_dir.display(),
                "no component for this slot: requests that need it answer 503 (run `just build`)"
            );
        }
        let seed = settings.seed_demo_products.unwrap_or(store.backend() == crate::store::Backend::Sqlite);
        if seed {
            let seeded = store.seed_demo_products(&settings.default_currency).await?;
            if seeded > 0 {
                tracing::info!(products = seeded, "seeded demo products into the empty catalogue");
            }
        }
        let policy = Policy {
            default_currency: settings.default_currency.clone(),
            idempotency_ttl: Duration::from_secs(settings.idempotency_ttl_secs),
            ..Policy::default()
        };
        let service = Arc::new(Service { store, cache, orders, runtime, slots, redis, policy });
        let listener = TcpListener::bind(settings.listen_addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen_addr))?;
        Ok(Self { listener, service, settings })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The shared state (tests inspect the store through it).
    pub fn service(&self) -> Arc<Service> {
        self.service.clone()
    }

    /// Serves until `shutdown` resolves, then lets requests in flight finish
    /// within the grace period.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let router = crate::api::router(self.service.clone(), self.settings.max_body_bytes);
        let purge = tokio::spawn(purge_idempotency_keys(self.service.clone()));
        let grace = Duration::from_secs(self.settings.shutdown_grace_secs);
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(self.listener, router).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, finishing requests in flight");
            let _ = stopping_tx.send(());
        });
        let served = async {
            server.await.context("the server failed")?;
            anyhow::Ok(())
        };
        let deadline = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = served => result?,
            () = deadline => tracing::warn!(?grace, "requests still running after the grace period; stopping anyway"),
        }
        purge.abort();
        self.service.store.close().await;
        tracing::info!("stopped");
        Ok(())
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
