//! The running service's shared state: storage, cache, the rule runtime and
//! its slots, and the settings the handlers need.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::domain::{OrderDetail, OrderStatus};
use crate::queue::JobQueue;
use crate::queue::events::EventHub;
use crate::runtime::{Runtime, SlotRegistry};
use crate::store::order_cache::OrderCache;
use crate::store::product_cache::ProductCache;
use crate::store::{Store, StoreError};

/// What handlers need to know from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Currency of orders and products that name none.
    pub default_currency: String,
    /// How long a completed idempotency key is remembered.
    pub idempotency_ttl: Duration,
    /// After how long an unfinished idempotent request is presumed dead.
    pub idempotency_abandon_after: Duration,
    /// How long a request waits for a concurrent request with the same key.
    pub idempotency_wait: Duration,
    /// Largest page of a listing.
    pub max_page: i64,
    /// Page size when none is asked for.
    pub default_page: i64,
    /// The admin API's bearer token; the admin API is off without one.
    pub admin_token: Option<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            default_currency: "EUR".into(),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            idempotency_abandon_after: Duration::from_secs(60),
            idempotency_wait: Duration::from_secs(10),
            max_page: 100,
            default_page: 20,
            admin_token: None,
        }
    }
}

/// Shared by every handler.
pub struct Service {
    pub store: Store,
    pub cache: Arc<dyn ProductCache>,
    /// Rendered orders, written through on every change.
    pub orders: Arc<dyn OrderCache>,
    pub runtime: Runtime,
    pub slots: SlotRegistry,
    /// The Redis connection, when one is configured.
    pub redis: Option<ConnectionManager>,
    /// The Redis server, for connections of their own (blocking reads).
    pub redis_client: Option<redis::Client>,
    /// Prefix of every Redis key.
    pub redis_namespace: String,
    /// The fulfillment queue (Redis, or the database without Redis).
    pub queue: Arc<dyn JobQueue>,
    /// Order events for live clients in this process.
    pub events: EventHub,
    /// Hot-swap state: each slot's versions and events, the rollback policy.
    pub swaps: crate::swap::Swaps,
    /// Cancelled when the process starts shutting down: event streams end
    /// so that connections can drain.
    pub stopping: tokio_util::sync::CancellationToken,
    pub policy: Policy,
}

impl Service {
    /// The order as the API renders it: from the cache, or from the database
    /// (then cached).
    pub async fn order_json(&self, id: i64) -> Result<String, StoreError> {
        if let Some(json) = self.orders.get(id).await {
            return Ok(json);
        }
        let order = self.store.order(id).await?;
        let json = render(&order)?;
        self.orders.put(id, order.version, &json).await;
        Ok(json)
    }

    /// Moves an order along its lifecycle (see [`Store::change_status`]) and
    /// refreshes its cached rendering.
    pub async fn change_status(
        &self,
        id: i64,
        to: OrderStatus,
        reason: Option<&str>,
        correlation_id: &str,
    ) -> Result<OrderDetail, StoreError> {
        let order = self.store.change_status(id, to, reason, correlation_id).await?;
        self.remember(&order).await;
        Ok(order)
    }

    /// Re-reads an order after a change committed elsewhere in this process
    /// (a worker) and caches its rendering; a failure only costs a cache miss.
    pub async fn refresh_order(&self, id: i64) {
        match self.store.order(id).await {
            Ok(order) => self.remember(&order).await,
            Err(error) => tracing::warn!(order_id = id, %error, "cannot refresh the cached order"),
        }
    }

    /// Caches the rendering of an order a change just committed.
    pub async fn remember(&self, order: &OrderDetail) {
        if let Ok(json) = render(order) {
            self.orders.put(order.id, order.version, &json).await;
        }
    }
}

fn render(order: &OrderDetail) -> Result<String, StoreError> {
    serde_json::to_string(order).map_err(|error| StoreError::Corrupt(error.to_string()))
}
