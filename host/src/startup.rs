//! Building and running the service: connect (with retries), migrate, load
//! the components, start the background work (outbox relay, event feed,
//! fulfillment workers and queue upkeep), bind, serve until SIGTERM or
//! Ctrl-C, then drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::ApiState;
use crate::app::{App, AppSettings};
use crate::auth::{Credentials, Scopes, TokenIssuer, TokenRequest};
use crate::config::{FulfillmentSettings, ServeSettings, SwapSettings};
use crate::fulfillment::queue::redis_queue::QueueKeys;
use crate::fulfillment::relay::{Relay, Sink};
use crate::fulfillment::{Worker, Workers};
use crate::grpc::{GrpcLimits, GrpcState};
use crate::orders::OrderPolicy;
use crate::orders::events::follow_stream;
use crate::runtime::Runtime;

/// A built service, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    grpc_listener: TcpListener,
    admin_listener: TcpListener,
    app: Arc<App>,
    credentials: Credentials,
    /// Signs with the embedded default's key, when that is the key in use.
    local_issuer: Option<TokenIssuer>,
    /// A JWKS URL's keys, refreshed while serving.
    remote_keys: Option<Arc<crate::auth::jwks::RemoteJwks>>,
    settings: ServeSettings,
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
    pub fn start(app: Arc<App>, settings: &FulfillmentSettings, swap: &SwapSettings) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let recheck = Duration::from_millis(swap.registry_recheck_ms.max(1));
        tasks.spawn(crate::rules::swap::follow(app.rules.clone(), recheck, stop.clone()));
        if swap.watch_components && app.rules.swaps().dir.is_some() {
            let debounce = Duration::from_millis(swap.watch_debounce_ms);
            tasks.spawn(crate::rules::swap::watch::watch(app.rules.clone(), debounce, stop.clone()));
        }
        let hub = app.orders.events().clone();
        let sink = match &app.redis {
            Some(redis) => {
                let stream = format!("{}order_events", redis.namespace);
                tasks.spawn(follow_stream(redis.client.clone(), stream.clone(), hub, stop.clone()));
                Sink::Redis {
                    connection: redis.connection.clone(),
                    queue: QueueKeys::new(&redis.namespace).queue,
                    stream,
                    max_len: settings.events_max_len,
                }
            }
            None => Sink::Local(hub),
        };
        tasks.spawn(Relay::new(app.store.clone(), sink).run(stop.clone()));
        let queue = app.fulfillment.queue().clone();
        let workers = (settings.workers > 0).then(|| {
            let upkeep = crate::fulfillment::upkeep::run(app.fulfillment.clone(), settings.clone(), stop.clone());
            tasks.spawn(upkeep);
            Workers::start(Worker::new(app.fulfillment.clone(), queue.clone(), settings.clone()), settings.workers)
        });
        if workers.is_some() {
            tracing::info!(workers = settings.workers, queue = queue.backend(), "fulfillment workers started");
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
        // Before anything else: a service that would serve unprotected stops here.
        let exposed = settings.exposed_addresses();
        let auth = crate::auth::prepare(&settings.auth, &exposed, settings.admin_token.as_deref()).await?;
        let orders = OrderPolicy {
            default_currency: settings.default_currency.clone(),
            idempotency_ttl: Duration::from_secs(settings.idempotency_ttl_secs),
            max_watches_per_caller: settings.max_watches_per_caller,
            max_watches: settings.max_watches,
            max_keys_in_flight_per_caller: settings.max_keys_in_flight_per_caller,
            ..OrderPolicy::default()
        }
        .with_time_limit(settings.time_limit());
        let app = App::build(
            AppSettings {
                backend: &settings.backend,
                role: "serve",
                components_dir: Some(&settings.components_dir),
                swap: &settings.swap,
                product_cache_ttl: Duration::from_secs(settings.product_cache_ttl_secs),
                seed_demo_products: settings.seed_demo_products,
                orders,
            },
            engine,
        )
        .await?;
        let listener = TcpListener::bind(settings.listen_addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen_addr))?;
        let grpc_listener = TcpListener::bind(settings.grpc_listen_addr)
            .await
            .with_context(|| format!("cannot listen for gRPC on {}", settings.grpc_listen_addr))?;
        let admin_listener = TcpListener::bind(settings.admin_listen_addr)
            .await
            .with_context(|| format!("cannot listen for the admin API on {}", settings.admin_listen_addr))?;
        Ok(Self {
            listener,
            grpc_listener,
            admin_listener,
            app: Arc::new(app),
            credentials: auth.credentials,
            local_issuer: auth.local_issuer,
            remote_keys: auth.remote,
            settings,
        })
    }

    /// A short-lived token with every scope, signed with the embedded
    /// default's key (none when another key is in use).
    pub fn first_token(&self) -> Option<String> {
        let request = TokenRequest {
            subject: "local-operator".into(),
            scopes: Scopes::all(),
            lifetime: Duration::from_secs(3600),
            client_id: Some("host serve".into()),
        };
        self.local_issuer.as_ref()?.issue(&request).ok()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The address the admin API actually listens on.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener.local_addr().expect("a bound listener has an address")
    }

    /// The address the gRPC API actually listens on.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener.local_addr().expect("a bound listener has an address")
    }

    /// What the gRPC API holds.
    fn grpc_state(&self) -> GrpcState {
        let app = &self.app;
        GrpcState {
            orders: app.orders.clone(),
            health: app.health.clone(),
            credentials: self.credentials.clone(),
            stopping: app.stopping.clone(),
        }
    }

    /// The service's parts (tests inspect the store and the rules through them).
    pub fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// What the REST API holds.
    fn api_state(&self) -> ApiState {
        let app = &self.app;
        ApiState {
            orders: app.orders.clone(),
            rules: app.rules.clone(),
            fulfillment: app.fulfillment.clone(),
            health: app.health.clone(),
            credentials: self.credentials.clone(),
            stopping: app.stopping.clone(),
        }
    }

    /// Serves until `shutdown` resolves, then lets requests and jobs in
    /// flight finish within the grace period.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let limits = crate::api::HttpLimits {
            max_body_bytes: self.settings.max_body_bytes,
            request_timeout: self.settings.time_limit(),
        };
        let router = crate::api::router(self.api_state(), limits);
        let admin_router = crate::api::admin_router(self.api_state(), limits);
        let edge = self.settings.edge_limits();
        let grpc_limits = GrpcLimits {
            max_message_bytes: limits.max_body_bytes,
            request_timeout: limits.request_timeout,
            edge,
            max_connection_age: Duration::from_secs(self.settings.grpc_max_connection_age_secs.max(1)),
        };
        let grpc_state = self.grpc_state();
        let grpc = tokio::spawn(crate::grpc::serve(self.grpc_listener, grpc_state, grpc_limits));
        let background = Background::start(self.app.clone(), &self.settings.fulfillment, &self.settings.swap);
        let purge = tokio::spawn(purge_idempotency_keys(self.app.clone()));
        let keys_refresh = self.remote_keys.clone().map(|remote| {
            let period = Duration::from_secs(self.settings.auth.jwks_refresh_secs.max(1));
            tokio::spawn(remote.keep_fresh(period, self.app.stopping.clone()))
        });
        let grace = Duration::from_secs(self.settings.shutdown_grace_secs);
        let stopping = CancellationToken::new();
        let server = crate::api::serve::serve(self.listener, router, edge, {
            let stopping = stopping.clone();
            let app = self.app.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down: no new connections or jobs, finishing those in flight");
                stopping.cancel();
                app.stopping.cancel();
            }
        });
        let admin_server =
            crate::api::serve::serve(self.admin_listener, admin_router, edge, stopping.clone().cancelled_owned());
        // Every front end drains on the same signal: gRPC stops when the
        // service's `stopping` token is cancelled.
        let served = async {
            tokio::join!(server, admin_server);
            grpc.await.context("the gRPC server stopped")?.context("the gRPC server failed")?;
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
        if let Some(refresh) = keys_refresh {
            refresh.abort();
        }
        self.app.store.close().await;
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
async fn purge_idempotency_keys(app: Arc<App>) {
    let mut every = tokio::time::interval(Duration::from_secs(600));
    loop {
        every.tick().await;
        match app.orders.purge_expired_keys().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired idempotency keys deleted"),
            Err(error) => tracing::warn!(%error, "cannot purge idempotency keys"),
        }
    }
}
