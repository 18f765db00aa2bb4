//! Keeping the queue honest, in every process that runs workers: retries
//! that came due go back to the queue, claims whose worker died are requeued
//! (and, out of attempts, dead-lettered with their order held), and pending
//! orders whose job was lost (Redis restarted without its data) get a new one.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Fulfillment, FulfillmentSettings};
use crate::orders::events::pause;

/// How often due retries are moved back.
const PROMOTE_EVERY: Duration = Duration::from_millis(200);

/// Runs the upkeep until `stop`.
pub async fn run(fulfillment: Arc<Fulfillment>, settings: FulfillmentSettings, stop: CancellationToken) {
    let visibility = Duration::from_millis(settings.visibility_timeout_ms);
    let reconcile_after = Duration::from_millis(settings.reconcile_after_ms);
    // Often enough that a dead worker's job waits about one visibility timeout.
    let reap_every = (visibility / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let reconcile_every = (reconcile_after / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
    let (mut next_reap, mut next_reconcile) = (Instant::now(), Instant::now());
    while !stop.is_cancelled() {
        if let Err(error) = fulfillment.queue.promote_due().await {
            tracing::debug!(%error, "cannot move due retries back to the queue");
        }
        let now = Instant::now();
        if now >= next_reap {
            next_reap = now + reap_every;
            fulfillment.reap(visibility, settings.max_attempts).await;
        }
        if now >= next_reconcile {
            next_reconcile = now + reconcile_every;
            fulfillment.republish_lost_jobs(reconcile_after).await;
        }
        pause(&stop, PROMOTE_EVERY).await;
    }
}

impl Fulfillment {
    /// Requeues the claims of workers that stopped answering; holds the
    /// orders of those out of attempts.
    async fn reap(&self, visibility: Duration, max_attempts: u32) {
        match self.queue.reap(visibility, max_attempts).await {
            Ok(reaped) => {
                if reaped.requeued > 0 {
                    tracing::warn!(requeued = reaped.requeued, "requeued jobs whose worker stopped answering");
                }
                for payload in &reaped.dead {
                    self.hold_dead_job(payload, "its workers kept stopping (claim expired)").await;
                }
            }
            Err(error) => tracing::debug!(%error, "cannot reap stale claims"),
        }
    }

    /// Publishes again the jobs of orders pending for longer than `after`.
    async fn republish_lost_jobs(&self, after: Duration) {
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(after).unwrap_or_default();
        match self.store.republish_stale_pending(cutoff, 500).await {
            Ok(orders) if !orders.is_empty() => {
                tracing::warn!(count = orders.len(), ?orders, "published pending orders again: their jobs were lost")
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "cannot look for pending orders without a job"),
        }
    }
}
