//! Keeping the queue honest, in every process that runs workers: retries
//! that came due go back to the queue, claims whose worker died are requeued
//! (and, out of attempts, dead-lettered with their order held), and the jobs
//! of orders still `pending` or `processing` that the queue no longer holds
//! anywhere (Redis restarted without its data, failed over, was flushed) are
//! published again, with the job id the order holds.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Fulfillment, FulfillmentSettings};
use crate::orders::events::pause;

/// Open orders looked at per recovery pass: the queue is read whole once
/// per pass, so a long backlog is covered over several passes.
const RECOVERY_BATCH: i64 = 2_000;

/// How often due retries are moved back.
const PROMOTE_EVERY: Duration = Duration::from_millis(200);

/// Runs the upkeep until `stop`.
pub async fn run(fulfillment: Arc<Fulfillment>, settings: FulfillmentSettings, stop: CancellationToken) {
    let visibility = Duration::from_millis(settings.visibility_timeout_ms);
    // Often enough that a dead worker's job waits about one visibility timeout.
    let reap_every = (visibility / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let recover_every = Duration::from_millis(settings.recover_every_ms.max(100));
    let (mut next_reap, mut next_recovery) = (Instant::now(), Instant::now());
    let mut recovered_up_to = 0;
    while !stop.is_cancelled() {
        if let Err(error) = fulfillment.queue.promote_due().await {
            tracing::debug!(%error, "cannot move due retries back to the queue");
        }
        let now = Instant::now();
        if now >= next_reap {
            next_reap = now + reap_every;
            fulfillment.reap(visibility, settings.max_attempts).await;
        }
        if now >= next_recovery && fulfillment.queue.can_lose_jobs() {
            next_recovery = now + recover_every;
            recovered_up_to = fulfillment.recover_lost_jobs(recovered_up_to).await;
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

    /// Looks at the open orders after order `after` (a batch of them) and
    /// publishes again, as they were, the jobs the queue no longer holds.
    /// The database is read first and the queue second, and a job is
    /// written again only if its order has not changed since: a job that was
    /// finished in between is not mistaken for a lost one. Returns where the
    /// next look starts (0 once every open order was seen).
    async fn recover_lost_jobs(&self, after: i64) -> i64 {
        let open = match self.store.open_jobs(after, RECOVERY_BATCH).await {
            Ok(open) => open,
            Err(error) => {
                tracing::debug!(%error, "cannot read the open orders' jobs");
                return after;
            }
        };
        let payloads: Vec<String> = open.iter().map(|job| job.payload.clone()).collect();
        let held = match self.queue.holds(&payloads).await {
            Ok(held) => held,
            Err(error) => {
                tracing::debug!(%error, "cannot ask the queue which jobs it holds");
                return after;
            }
        };
        for job in open.iter().zip(held).filter_map(|(job, held)| (!held).then_some(job)) {
            match self.store.republish(job).await {
                Ok(true) => tracing::warn!(
                    order_id = job.order_id,
                    correlation_id = job.correlation_id.as_deref(),
                    "the queue had lost this order's job; published it again"
                ),
                Ok(false) => {}
                Err(error) => tracing::debug!(order_id = job.order_id, %error, "cannot publish a lost job again"),
            }
        }
        match open.last() {
            Some(last) if open.len() as i64 == RECOVERY_BATCH => last.order_id,
            _ => 0,
        }
    }
}
