//! The running service's shared state: storage, cache, the rule runtime and
//! its slots, and the settings the handlers need.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::runtime::{Runtime, SlotRegistry};
use crate::store::Store;
use crate::store::product_cache::ProductCache;

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
        }
    }
}

/// Shared by every handler.
pub struct Service {
    pub store: Store,
    pub cache: Arc<dyn ProductCache>,
    pub runtime: Runtime,
    pub slots: SlotRegistry,
    /// The Redis connection, when one is configured (for `/ready`).
    pub redis: Option<ConnectionManager>,
    pub policy: Policy,
}
