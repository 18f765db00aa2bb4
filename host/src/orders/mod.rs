//! Orders and the catalogue as a front end uses them: place an order
//! (idempotency included), read and list orders, move an order along its
//! lifecycle, follow orders as they change, manage products. It keeps both caches (products, rendered
//! orders) in step with every change it or the fulfillment workers make,
//! and answers in its own error type, whatever the transport.

pub mod catalog;
pub mod error;
pub mod events;
pub mod order_cache;
pub mod place;
pub mod product_cache;
pub mod quota;
mod versioned;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use error::Resource;
pub use error::{OrderError, RETRY_AFTER_SECONDS};
use events::EventHub;
use order_cache::OrderCache;
pub use place::{Deadline, Placed};
use product_cache::ProductCache;
use quota::Quota;
pub use watch::{Snapshot, Watched};

use crate::auth::OrderAccess;
use crate::domain::text::{Lines, control_character, truncate};
use crate::domain::{OrderDetail, OrderStatus, OrderSummary};
use crate::rules::Rules;
use crate::store::{OrderFilter, Store, StoreError};

/// Longest status reason kept, in bytes.
pub const MAX_REASON: usize = 500;

/// How orders are taken.
#[derive(Debug, Clone)]
pub struct OrderPolicy {
    /// Currency of orders and products that name none.
    pub default_currency: String,
    /// How long a completed idempotency key is remembered.
    pub idempotency_ttl: Duration,
    /// After how long an unfinished idempotent request is presumed dead.
    pub idempotency_abandon_after: Duration,
    /// How long a request waits for a concurrent request with the same key.
    pub idempotency_wait: Duration,
    /// Live watch streams (SSE and gRPC) one caller may hold at once, and
    /// all callers together.
    pub max_watches_per_caller: usize,
    pub max_watches: usize,
    /// Keyed orders one caller may have being placed at once.
    pub max_keys_in_flight_per_caller: usize,
}

/// How long past the time limit a keyed placing may still be committing
/// (its transaction's last round trip) before its claim is presumed dead.
const KEY_CLAIM_MARGIN: Duration = Duration::from_secs(5);
/// Longest a request waits for another with the same key.
const KEY_WAIT: Duration = Duration::from_secs(10);

impl OrderPolicy {
    /// The keyed requests' timing under a request `time_limit`.
    ///
    /// A keyed placing stops at the time limit, so a claim held longer
    /// (plus a margin) belongs to a process that died (killed, crashed)
    /// while placing it: its key is free again then, instead of blocking
    /// the client's retries for longer. A request waiting for another with
    /// its key gives up within three quarters of the limit, so it answers
    /// "in progress" rather than running out of time.
    pub fn with_time_limit(self, time_limit: Duration) -> Self {
        Self {
            idempotency_abandon_after: time_limit + KEY_CLAIM_MARGIN,
            idempotency_wait: KEY_WAIT.min(time_limit * 3 / 4),
            ..self
        }
    }
}

impl Default for OrderPolicy {
    fn default() -> Self {
        let policy = Self {
            default_currency: "EUR".into(),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            idempotency_abandon_after: Duration::ZERO,
            idempotency_wait: Duration::ZERO,
            max_watches_per_caller: 8,
            max_watches: 1000,
            max_keys_in_flight_per_caller: 16,
        };
        // The default request time limit.
        policy.with_time_limit(Duration::from_secs(15))
    }
}

/// The order and catalogue operations, over the store, the rules and the caches.
pub struct Orders {
    store: Store,
    rules: Arc<Rules>,
    products: Arc<dyn ProductCache>,
    cache: Arc<dyn OrderCache>,
    events: EventHub,
    policy: OrderPolicy,
    /// Places for live watch streams.
    watches: Arc<Quota>,
    /// Places for keyed orders being placed (no cap in all: each holds a
    /// request's place, which the connection caps bound).
    keys_in_flight: Arc<Quota>,
}

impl Orders {
    pub fn new(
        store: Store,
        rules: Arc<Rules>,
        products: Arc<dyn ProductCache>,
        cache: Arc<dyn OrderCache>,
        events: EventHub,
        policy: OrderPolicy,
    ) -> Self {
        let watches = Quota::new("live watch streams", policy.max_watches_per_caller, policy.max_watches);
        let keys_in_flight = Quota::new("keyed orders being placed", policy.max_keys_in_flight_per_caller, usize::MAX);
        Self { store, rules, products, cache, events, policy, watches, keys_in_flight }
    }

    /// Order events for followers in this process; the relay and the event
    /// feed publish into it.
    pub fn events(&self) -> &EventHub {
        &self.events
    }

    /// Currency of orders and products that name none.
    pub fn default_currency(&self) -> &str {
        &self.policy.default_currency
    }

    /// The order as rendered for readers: from the cache, or from the
    /// database (then cached). Another user's order is not found, exactly
    /// as a missing one: its existence is not the caller's to learn.
    pub async fn order_json(&self, id: i64, access: OrderAccess) -> Result<String, OrderError> {
        let json = match self.cache.get(id).await {
            Some(json) => json,
            None => {
                let order = self.store.order(id).await.map_err(OrderError::order_not_found(id))?;
                let json = render(&order)?;
                self.cache.put(id, order.version, &json).await;
                json
            }
        };
        if access != OrderAccess::AnyUser && !access.covers(owner(&json)?) {
            return Err(OrderError::NotFound { resource: Resource::Order, id });
        }
        Ok(json)
    }

    /// The order, read like [`Orders::order_json`].
    pub async fn order(&self, id: i64, access: OrderAccess) -> Result<OrderDetail, OrderError> {
        let json = self.order_json(id, access).await?;
        Ok(serde_json::from_str(&json).map_err(anyhow::Error::from)?)
    }

    /// A page of orders, newest first; a customer's own only (naming
    /// another user is refused).
    pub async fn list(&self, filter: &OrderFilter, access: OrderAccess) -> Result<Vec<OrderSummary>, OrderError> {
        let filter = OrderFilter { user_id: access.listing(filter.user_id)?, ..filter.clone() };
        Ok(self.store.list_orders(&filter).await?)
    }

    /// Moves an order along its lifecycle by hand (of two concurrent changes
    /// exactly one wins; cancelling returns the stock) and refreshes its
    /// rendering. Fulfillment's own moves are refused; releasing a hold
    /// (`on_hold -> processing`) queues a job for the order in the same
    /// transaction, so its policy decides it again.
    /// A reason longer than [`MAX_REASON`] bytes is cut; one holding a
    /// control character is refused.
    pub async fn change_status(
        &self,
        id: i64,
        to: OrderStatus,
        reason: Option<&str>,
        correlation_id: &str,
    ) -> Result<OrderDetail, OrderError> {
        if let Some(violation) = reason.and_then(|reason| control_character("reason", reason, Lines::Many)) {
            return Err(OrderError::Invalid(vec![violation]));
        }
        let reason = reason.map(|reason| truncate(reason, MAX_REASON));
        let changed = match to {
            // The one way back to `processing` by hand, with a job for it.
            OrderStatus::Processing => self.store.release_hold(id, reason, correlation_id).await,
            _ => self.store.change_status(id, to, reason, correlation_id).await,
        };
        let order = changed.map_err(OrderError::order_not_found(id))?;
        self.remember(&order).await;
        Ok(order)
    }

    /// Re-reads an order after a change committed elsewhere (a worker) and
    /// caches its rendering; a failure only costs a cache miss.
    pub async fn refresh(&self, id: i64) {
        match self.store.order(id).await {
            Ok(order) => self.remember(&order).await,
            Err(error) => tracing::warn!(order_id = id, %error, "cannot refresh the cached order"),
        }
    }

    /// Caches the rendering of an order a change just committed (an older
    /// version never replaces a newer one).
    pub async fn remember(&self, order: &OrderDetail) {
        if let Ok(json) = render(order) {
            self.cache.put(order.id, order.version, &json).await;
        }
    }

    /// Deletes expired idempotency keys; how many.
    pub async fn purge_expired_keys(&self) -> Result<u64, OrderError> {
        Ok(self.store.purge_idempotency_keys().await?)
    }
}

/// The user a rendered order belongs to (only that field is read).
fn owner(json: &str) -> Result<i64, OrderError> {
    #[derive(serde::Deserialize)]
    struct Owner {
        user_id: i64,
    }
    Ok(serde_json::from_str::<Owner>(json).map_err(anyhow::Error::from)?.user_id)
}

fn render(order: &OrderDetail) -> Result<String, StoreError> {
    serde_json::to_string(order).map_err(|error| StoreError::Corrupt(error.to_string()))
}
