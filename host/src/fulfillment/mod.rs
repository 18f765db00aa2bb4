//! Fulfillment: the queue that carries each stored order to the
//! fulfillment rule, and everything that keeps it honest.
//!
//! ```text
//! create / transition ──(same transaction)──► outbox rows
//! relay:  outbox ──► LPUSH fulfillment_queue (jobs) + XADD order_events (events)     with Redis
//!         outbox ──► in-process event hub; job rows stay put as the queue            without
//! worker: claim (BLMOVE into fulfillment_queue:processing, or a row claim; a token per delivery)
//!         ──► lease the order ──► fulfillment rule (lease and claim renewed meanwhile)
//!         ──► transition guarded on the claim ──► ack (LREM, or mark the row done; the claim's holder only)
//! upkeep: due retries back to the queue, claims not renewed requeued (then dead
//!         letters), open orders whose job the queue lost published again
//! ```
//!
//! Delivery is at least once everywhere; the worker is idempotent (guarded
//! transitions, a job id held by the order while it is processing) and
//! fenced (one delivery holds an order's lease at a time).

pub mod dead_letters;
pub mod queue;
pub mod relay;
pub mod settings;
pub mod upkeep;
pub mod worker;

use std::sync::Arc;

pub use queue::{DeadLetter, JobQueue, QueueDepth, QueueError};
pub use settings::{DelayRange, FulfillmentSettings};
pub use worker::{Worker, Workers};

use crate::orders::Orders;
use crate::rules::Rules;
use crate::store::Store;

/// What fulfillment works with: the store, the rules, the orders (whose
/// caches it keeps in step) and the queue.
pub struct Fulfillment {
    store: Store,
    rules: Arc<Rules>,
    orders: Arc<Orders>,
    queue: Arc<dyn JobQueue>,
}

impl Fulfillment {
    pub fn new(store: Store, rules: Arc<Rules>, orders: Arc<Orders>, queue: Arc<dyn JobQueue>) -> Self {
        Self { store, rules, orders, queue }
    }

    /// The fulfillment queue (Redis, or the database without Redis).
    pub fn queue(&self) -> &Arc<dyn JobQueue> {
        &self.queue
    }

    /// How many jobs are where.
    pub async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.queue.depth().await
    }

    /// The dead letters, newest first.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.queue.dead_letters(limit).await
    }
}
