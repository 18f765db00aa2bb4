//! The fulfillment queue without Redis: the outbox's `fulfillment` rows are
//! the jobs. A worker claims the oldest claimable row (`FOR UPDATE SKIP
//! LOCKED` on PostgreSQL, so workers in several processes never take the same
//! one; SQLite has one writer anyway), and marks it done when finished.
//! Retry backoff is a "not before" time on the row; a dead job keeps its row,
//! marked dead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Mutex, watch};

use super::{ClaimedJob, DeadLetter, Failed, JobQueue, QueueDepth, QueueError, Reaped, new_token, now_ms};
use crate::store::Store;

/// How often an idle worker looks again without being woken: jobs written by
/// other processes, and retries coming due, are found this way.
const POLL: Duration = Duration::from_millis(250);

/// The queue in the database.
pub struct DatabaseJobQueue {
    store: Store,
    /// Woken when this process commits outbox rows.
    written: Mutex<watch::Receiver<u64>>,
}

impl DatabaseJobQueue {
    /// The queue in `store`'s database.
    pub fn new(store: Store) -> Self {
        let written = Mutex::new(store.outbox_watch());
        Self { store, written }
    }

    fn row(job: &ClaimedJob) -> Result<i64, QueueError> {
        job.row.ok_or_else(|| QueueError::Corrupt("a job without its row".into()))
    }
}

fn due_in(delay: Duration) -> i64 {
    now_ms() + delay.as_millis() as i64
}

#[async_trait]
impl JobQueue for DatabaseJobQueue {
    fn backend(&self) -> &'static str {
        "database"
    }

    fn fork(&self) -> Arc<dyn JobQueue> {
        Arc::new(Self::new(self.store.clone()))
    }

    async fn claim(&self, wait: Duration) -> Result<Option<ClaimedJob>, QueueError> {
        let deadline = Instant::now() + wait;
        let mut written = self.written.lock().await;
        loop {
            // Marked seen before looking, so a commit after the look wakes us.
            written.borrow_and_update();
            let token = new_token();
            if let Some(row) = self.store.claim_job(now_ms(), &token).await? {
                let attempts = u32::try_from(row.attempts).unwrap_or(0);
                return Ok(Some(ClaimedJob { payload: row.payload, attempts, token, row: Some(row.id) }));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let _ = tokio::time::timeout(left.min(POLL), written.changed()).await;
        }
    }

    async fn ack(&self, job: &ClaimedJob) -> Result<(), QueueError> {
        self.store.ack_job(Self::row(job)?, &job.token).await?;
        Ok(())
    }

    async fn renew(&self, job: &ClaimedJob) -> Result<bool, QueueError> {
        Ok(self.store.renew_job(Self::row(job)?, &job.token, now_ms()).await?)
    }

    async fn fail(
        &self,
        job: &ClaimedJob,
        error: &str,
        retry_in: Duration,
        max_attempts: u32,
    ) -> Result<Failed, QueueError> {
        let failed = (Self::row(job)?, job.token.as_str());
        let Some((attempts, dead)) = self.store.fail_job(failed, error, due_in(retry_in), max_attempts.max(1)).await?
        else {
            return Ok(Failed::Gone);
        };
        let attempts = u32::try_from(attempts).unwrap_or(0);
        Ok(if dead { Failed::Dead { attempts } } else { Failed::Retrying { attempts } })
    }

    async fn release(&self, job: &ClaimedJob, retry_in: Duration) -> Result<(), QueueError> {
        self.store.release_job(Self::row(job)?, &job.token, due_in(retry_in)).await?;
        Ok(())
    }

    async fn promote_due(&self) -> Result<u64, QueueError> {
        // A retry is claimable once its time comes; nothing to move.
        Ok(0)
    }

    async fn reap(&self, visibility: Duration, max_attempts: u32) -> Result<Reaped, QueueError> {
        let cutoff = now_ms() - visibility.as_millis() as i64;
        let (reaped, dead) = self.store.reap_jobs(cutoff, max_attempts.max(1)).await?;
        Ok(Reaped { requeued: reaped - dead.len() as u64, dead: dead.into_iter().map(|row| row.payload).collect() })
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let rows = self.store.dead_jobs(limit as i64).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let error = row.last_error.unwrap_or_default();
                DeadLetter::new(
                    row.id.to_string(),
                    row.payload,
                    u32::try_from(row.attempts).unwrap_or(0),
                    error,
                    row.dead_at,
                )
            })
            .collect())
    }

    async fn requeue_dead(&self, id: &str) -> Result<bool, QueueError> {
        let Ok(row) = id.parse::<i64>() else { return Ok(false) };
        Ok(self.store.revive_job(row).await?)
    }

    async fn remove_dead(&self, id: &str) -> Result<bool, QueueError> {
        let Ok(row) = id.parse::<i64>() else { return Ok(false) };
        Ok(self.store.bury_job(row).await?)
    }

    fn can_lose_jobs(&self) -> bool {
        // The rows are the jobs: the outbox cannot lose one.
        false
    }

    async fn holds(&self, payloads: &[String]) -> Result<Vec<bool>, QueueError> {
        Ok(vec![true; payloads.len()])
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let counts = self.store.job_counts(now_ms()).await?;
        let count = |value: i64| u64::try_from(value).unwrap_or(0);
        Ok(QueueDepth {
            queued: count(counts.queued),
            processing: count(counts.processing),
            delayed: count(counts.delayed),
            dead: count(counts.dead),
        })
    }
}
