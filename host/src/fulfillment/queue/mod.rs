//! The fulfillment queue: a reliable job queue on Redis lists, or on the
//! outbox's rows when there is no Redis (see the parent module's diagram).

pub mod database;
pub mod redis_queue;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

pub use crate::domain::Job;

use crate::store::StoreError;

/// The queue failed (not the job).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Corrupt(String),
}

/// A job a worker holds.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    /// The message exactly as queued (a poison message too).
    pub payload: String,
    /// Failed attempts before this one.
    pub attempts: u32,
    /// This delivery's claim token: ack, fail, release and renewal act only
    /// while the queue's claim on the job is still this one, and the order
    /// is leased to it under the same token.
    pub token: String,
    /// Its row, in the database-backed queue.
    row: Option<i64>,
}

/// What became of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Back in the queue after a pause.
    Retrying { attempts: u32 },
    /// Out of attempts: moved to the dead letters.
    Dead { attempts: u32 },
    /// The claim had already expired and the job was requeued by the reaper.
    Gone,
}

/// What the reaper did.
#[derive(Debug, Clone, Default)]
pub struct Reaped {
    /// Claims returned to the queue.
    pub requeued: u64,
    /// Payloads that ran out of attempts and became dead letters.
    pub dead: Vec<String>,
}

/// A job that failed too often, kept for an operator.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct DeadLetter {
    /// Names it in `POST /api/v1/admin/dead-letters/{id}/requeue`.
    pub id: String,
    /// The job's id, when the message is a job at all.
    pub job_id: Option<String>,
    /// The order it is for, when readable.
    pub order_id: Option<i64>,
    /// Failed attempts.
    pub attempts: u32,
    /// The last failure.
    pub error: String,
    /// When it was given up on.
    pub dead_at: Option<DateTime<Utc>>,
    /// The message as it was queued.
    pub payload: String,
}

impl DeadLetter {
    fn new(id: String, payload: String, attempts: u32, error: String, dead_at: Option<DateTime<Utc>>) -> Self {
        let job = Job::parse(&payload).ok();
        Self {
            id,
            job_id: job.as_ref().map(|job| job.job_id.clone()),
            order_id: job.map(|job| job.order_id),
            attempts,
            error,
            dead_at,
            payload,
        }
    }
}

/// How many jobs are where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct QueueDepth {
    /// Waiting for a worker.
    pub queued: u64,
    /// Held by a worker.
    pub processing: u64,
    /// Waiting for a retry to come due.
    pub delayed: u64,
    /// Given up on.
    pub dead: u64,
}

/// A reliable job queue: Redis lists, or outbox rows when there is no Redis.
/// Every method is safe to call from several processes at once.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// `redis` or `database`.
    fn backend(&self) -> &'static str;
    /// The same queue, for one worker (a blocking claim needs a connection of its own).
    fn fork(&self) -> Arc<dyn JobQueue>;
    /// Takes the next job, waiting up to `wait` for one.
    async fn claim(&self, wait: Duration) -> Result<Option<ClaimedJob>, QueueError>;
    /// The job is done.
    async fn ack(&self, job: &ClaimedJob) -> Result<(), QueueError>;
    /// The attempt failed: retry after `retry_in`, or dead-letter it once it
    /// has failed `max_attempts` times.
    async fn fail(
        &self,
        job: &ClaimedJob,
        error: &str,
        retry_in: Duration,
        max_attempts: u32,
    ) -> Result<Failed, QueueError>;
    /// Renews this delivery's claim (the worker is still at it), so the
    /// reaper does not give the job to another; false if the claim is gone.
    async fn renew(&self, job: &ClaimedJob) -> Result<bool, QueueError>;
    /// Gives the job back after `retry_in` without counting an attempt (the
    /// failure was the platform's, not the job's).
    async fn release(&self, job: &ClaimedJob, retry_in: Duration) -> Result<(), QueueError>;
    /// Moves retries that came due back to the queue.
    async fn promote_due(&self) -> Result<u64, QueueError>;
    /// Requeues claims held longer than `visibility` (their worker died),
    /// counting an attempt; dead-letters those out of attempts.
    async fn reap(&self, visibility: Duration, max_attempts: u32) -> Result<Reaped, QueueError>;
    /// The dead letters, newest first.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError>;
    /// Puts dead letter `id` back in the queue as it was; false if there is none.
    async fn requeue_dead(&self, id: &str) -> Result<bool, QueueError>;
    /// Forgets dead letter `id` (its job was written to the outbox again);
    /// false if there is none.
    async fn remove_dead(&self, id: &str) -> Result<bool, QueueError>;
    /// How many jobs are where.
    async fn depth(&self) -> Result<QueueDepth, QueueError>;
    /// Whether jobs can vanish from the queue (a Redis restarted without its
    /// data); only then does the recovery pass look for lost ones.
    fn can_lose_jobs(&self) -> bool;
    /// Which of `payloads` the queue holds in any state (waiting, held by a
    /// worker, waiting for a retry, or dead), one answer each: a job it does
    /// not hold was lost and must be published again.
    async fn holds(&self, payloads: &[String]) -> Result<Vec<bool>, QueueError>;
}

/// A new delivery's claim token.
pub(crate) fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Milliseconds since the epoch, the queue's clock.
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}
