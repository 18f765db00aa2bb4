//! Keeping the queue honest, in every process that runs workers: retries
//! that came due go back to the queue, claims whose worker died are requeued
//! (and, out of attempts, dead-lettered with their order held), and pending
//! orders whose job was lost (Redis restarted without its data) get a new one.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::JobQueue;
use super::events::pause;
use crate::config::FulfillmentSettings;
use crate::service::Service;

/// How often due retries are moved back.
const PROMOTE_EVERY: Duration = Duration::from_millis(200);

/// Runs the upkeep until `stop`.
pub async fn run(
    service: Arc<Service>,
    queue: Arc<dyn JobQueue>,
    settings: FulfillmentSettings,
    stop: CancellationToken,
) {
    let visibility = Duration::from_millis(settings.visibility_timeout_ms);
    let reconcile_after = Duration::from_millis(settings.reconcile_after_ms);
    // Often enough that a dead worker's job waits about one visibility timeout.
    let reap_every = (visibility / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let reconcile_every = (reconcile_after / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
    let (mut next_reap, mut next_reconcile) = (tokio::time::Instant::now(), tokio::time::Instant::now());
    while !stop.is_cancelled() {
        if let Err(error) = queue.promote_due().await {
            tracing::debug!(%error, "cannot move due retries back to the queue");
        }
        let now = tokio::time::Instant::now();
        if now >= next_reap {
            next_reap = now + reap_every;
            match queue.reap(visibility, settings.max_attempts).await {
                Ok(reaped) => {
                    if reaped.requeued > 0 {
                        tracing::warn!(requeued = reaped.requeued, "requeued jobs whose worker stopped answering");
                    }
                    for payload in &reaped.dead {
                        crate::worker::hold_dead_job(&service, payload, "its workers kept stopping (claim expired)")
                            .await;
                    }
                }
                Err(error) => tracing::debug!(%error, "cannot reap stale claims"),
            }
        }
        if now >= next_reconcile {
            next_reconcile = now + reconcile_every;
            let cutoff = chrono::Utc::now() - chrono::Duration::from_std(reconcile_after).unwrap_or_default();
            match service.store.republish_stale_pending(cutoff, 500).await {
                Ok(orders) if !orders.is_empty() => {
                    tracing::warn!(
                        count = orders.len(),
                        ?orders,
                        "published pending orders again: their jobs were lost"
                    )
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "cannot look for pending orders without a job"),
            }
        }
        pause(&stop, PROMOTE_EVERY).await;
    }
}
