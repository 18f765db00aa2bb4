//! The fulfillment worker: takes jobs from the queue, asks the fulfillment
//! rule what to do with each order, and applies the decision.
//!
//! A job moves its order `pending -> processing` (guarded, and the order
//! remembers the job and leases itself to this delivery of it), then the
//! policy decides while the delivery renews its lease, and the order moves on
//! (`ship -> fulfilled` with the shipment stored, `hold -> on_hold`,
//! `reject -> cancelled` with the stock returned), guarded again on
//! `processing`, on the job and on the delivery's claim. Another delivery of
//! the job (after a crash, a reaped claim, a recovered job) takes the order
//! over only once the lease ran out, and a delivery that lost its lease stops
//! before applying anything. So a job delivered twice, a job whose worker
//! died or froze half-way and a cancel racing the worker each end with
//! exactly one outcome, and one order's policy never runs twice at once. A failure of the job (a trapping policy, a poison message)
//! is retried with backoff and then dead-lettered, and the order held; a
//! failure of the platform (the database down) is retried without counting.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::queue::{ClaimedJob, Failed, JobQueue, now_ms};
use super::{Fulfillment, FulfillmentSettings};
use crate::domain::decision::FulfillmentDecision;
use crate::domain::{HistoryEntry, Job, OrderDetail, OrderStatus};
use crate::orders::events::pause;
use crate::rules::{Decided, RuleError};
use crate::runtime::CallContext;
use crate::store::{Guard, Moved, Step, StoreError};

/// Why a job could not be finished.
#[derive(Debug)]
enum Failure {
    /// The job's own fault (it is not a job, its order is gone, the policy
    /// failed): counts as an attempt.
    Job(String),
    /// A server is down: try again later, without counting.
    Unavailable(String),
    /// Another delivery of the job holds the order's lease, for this long at
    /// most: try again then, without counting.
    Held(Duration),
    /// This delivery lost the order's lease while its policy ran (another
    /// delivery took the order over, or the lease could not be renewed in
    /// time): it applied nothing.
    LeaseLost,
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::Database(database) if crate::store::is_unavailable(database) => {
                Failure::Unavailable(format!("database: {error}"))
            }
            _ => Failure::Job(format!("database: {error}")),
        }
    }
}

impl From<RuleError> for Failure {
    fn from(error: RuleError) -> Self {
        // A host without capacity is not the job's fault: no attempt is spent.
        match &error {
            RuleError::Failed { component_fault: false, .. } => Failure::Unavailable(error.to_string()),
            _ => Failure::Job(error.to_string()),
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The policy decided and the order moved to this state.
    Decided(OrderStatus),
    /// Nothing to do: the order was already past this job (in this state).
    Skipped(OrderStatus),
}

/// Applies fulfillment decisions: what every worker task runs.
pub struct Worker {
    fulfillment: Arc<Fulfillment>,
    queue: Arc<dyn JobQueue>,
    settings: FulfillmentSettings,
}

impl Worker {
    pub fn new(fulfillment: Arc<Fulfillment>, queue: Arc<dyn JobQueue>, settings: FulfillmentSettings) -> Arc<Self> {
        Arc::new(Self { fulfillment, queue, settings })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        retry_delay(Duration::from_millis(self.settings.retry_backoff_ms), attempt)
    }

    /// Takes and handles jobs until `stop`; a job in hand is finished first.
    pub async fn work(self: Arc<Self>, worker: usize, stop: CancellationToken) {
        let queue = self.queue.fork();
        let wait = Duration::from_millis(self.settings.claim_wait_ms.max(10));
        let mut failing = false;
        while !stop.is_cancelled() {
            match queue.claim(wait).await {
                Ok(None) => failing = false,
                Ok(Some(job)) => {
                    failing = false;
                    self.handle(&*queue, job, worker).await;
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(worker, %error, "cannot take jobs from the queue; retrying");
                        failing = true;
                    }
                    pause(&stop, Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Runs one job and settles it with the queue.
    pub async fn handle(&self, queue: &dyn JobQueue, claimed: ClaimedJob, worker: usize) {
        let parsed = Job::parse(&claimed.payload);
        let span = match &parsed {
            Ok(job) => tracing::info_span!("job", worker, job_id = %job.job_id, order_id = job.order_id,
                correlation_id = %job.correlation_id, attempt = claimed.attempts + 1),
            Err(_) => tracing::info_span!("job", worker, attempt = claimed.attempts + 1),
        };
        async {
            let outcome = match parsed {
                Ok(job) => self.attempt(queue, &claimed, &job).await,
                Err(reason) => Err(Failure::Job(reason)),
            };
            match outcome {
                Ok(outcome) => settle_done(queue, &claimed, outcome).await,
                Err(Failure::Job(reason)) => self.settle_failed(queue, &claimed, &reason).await,
                Err(Failure::Unavailable(reason)) => self.settle_unavailable(queue, &claimed, &reason).await,
                Err(Failure::Held(wait)) => settle_later(queue, &claimed, wait.max(self.backoff(1))).await,
                Err(Failure::LeaseLost) => {
                    tracing::warn!("the order's lease was lost while its policy ran; nothing applied");
                    settle_later(queue, &claimed, self.backoff(1)).await
                }
            }
        }
        .instrument(span)
        .await
    }

    /// One attempt at the job; a failed one lets go of the order's lease at
    /// once, so the retry need not wait for it to run out.
    async fn attempt(&self, queue: &dyn JobQueue, claimed: &ClaimedJob, job: &Job) -> Result<Outcome, Failure> {
        let outcome = self.process(queue, claimed, job).await;
        if matches!(outcome, Err(Failure::Job(_) | Failure::Unavailable(_))) {
            self.end_lease(job.order_id, &claimed.token).await;
        }
        outcome
    }

    async fn settle_failed(&self, queue: &dyn JobQueue, claimed: &ClaimedJob, reason: &str) {
        let retry_in = self.backoff(claimed.attempts + 1);
        match queue.fail(claimed, reason, retry_in, self.settings.max_attempts).await {
            Ok(Failed::Retrying { attempts }) => tracing::warn!(error = %reason, attempts,
                retry_in_ms = retry_in.as_millis() as u64, "fulfillment attempt failed; will retry"),
            Ok(Failed::Dead { attempts }) => {
                tracing::error!(error = %reason, attempts, "fulfillment job dead-lettered");
                self.fulfillment.hold_dead_job(&claimed.payload, reason).await;
            }
            Ok(Failed::Gone) => tracing::warn!(error = %reason, "fulfillment attempt failed after its claim expired"),
            Err(error) => {
                tracing::warn!(%error, failure = %reason, "cannot record a failed attempt; the reaper will requeue the job")
            }
        }
    }

    async fn settle_unavailable(&self, queue: &dyn JobQueue, claimed: &ClaimedJob, reason: &str) {
        tracing::warn!(error = %reason, "a server is unavailable; the job goes back to the queue");
        if let Err(error) = queue.release(claimed, self.backoff(1)).await {
            tracing::warn!(%error, "cannot give the job back; the reaper will requeue it");
        }
    }

    /// How long a delivery holds an order without renewing its lease: the
    /// queue's visibility timeout, after which the job may go to another.
    fn lease(&self) -> Duration {
        Duration::from_millis(self.settings.visibility_timeout_ms.max(100))
    }

    /// Takes the order into `processing` (or resumes it) for this delivery,
    /// asks the policy while holding the order's lease, and applies its decision.
    async fn process(&self, queue: &dyn JobQueue, claimed: &ClaimedJob, job: &Job) -> Result<Outcome, Failure> {
        if let Some(skipped) = self.take(job, &claimed.token).await? {
            return Ok(Outcome::Skipped(skipped));
        }
        let order = self.fulfillment.store.order(job.order_id).await?;
        // Readers see `processing` (the order was read after the change).
        self.fulfillment.orders.remember(&order).await;
        let decided = self.holding_lease(queue, claimed, job.order_id, self.decide(job, &order)).await??;
        self.apply(job, &claimed.token, order, decided).await
    }

    /// The policy's decision on `order`.
    async fn decide(&self, job: &Job, order: &OrderDetail) -> Result<Decided<FulfillmentDecision>, Failure> {
        if let Some(delay) = self.settings.simulated_delay() {
            tokio::time::sleep(delay).await;
        }
        let context = CallContext::new(job.correlation_id.as_str());
        Ok(self.fulfillment.rules.decide(&context, order).await?)
    }

    /// Moves the order into `processing`, leased to delivery `token`; the
    /// state it is in when the job has nothing to do (another job holds it,
    /// or it moved on).
    async fn take(&self, job: &Job, token: &str) -> Result<Option<OrderStatus>, Failure> {
        let store = &self.fulfillment.store;
        let until = now_ms() + self.lease().as_millis() as i64;
        let taken = Step { job: Some(&job.job_id), lease: Some((token, until)), ..Step::to(OrderStatus::Processing) };
        let from_pending = Guard::From { status: OrderStatus::Pending, job: None, claim: None };
        match store.transition(job.order_id, from_pending, &[taken], &job.correlation_id).await {
            Ok(Moved::Done { .. }) => Ok(None),
            Ok(Moved::Skipped { current: OrderStatus::Processing }) => self.resume(job, (token, until)).await,
            Ok(Moved::Skipped { current }) => Ok(Some(current)),
            Err(StoreError::NotFound) => Err(Failure::Job(format!("order {} does not exist", job.order_id))),
            Err(error) => Err(error.into()),
        }
    }

    /// Takes over a `processing` order held by this job for this delivery (a
    /// redelivery after a crash, a reaped claim, a recovered job), once the
    /// lease of the delivery before has run out.
    async fn resume(&self, job: &Job, lease: (&str, i64)) -> Result<Option<OrderStatus>, Failure> {
        let store = &self.fulfillment.store;
        let state = store.order_state(job.order_id).await?;
        if state.status != OrderStatus::Processing || state.job.as_deref() != Some(job.job_id.as_str()) {
            return Ok(Some(state.status));
        }
        let now = now_ms();
        if let Some(live) = state.lease.as_ref().filter(|held| held.until_ms > now) {
            return Err(Failure::Held(Duration::from_millis((live.until_ms - now) as u64)));
        }
        let previous = state.lease.as_ref().map(|held| held.token.as_str());
        if store.take_over(job.order_id, &job.job_id, previous, lease, now).await? {
            Ok(None)
        } else {
            Err(Failure::Held(self.backoff(1)))
        }
    }

    /// Runs `work` while this delivery keeps its lease on the order (and its
    /// claim on the job) alive; stops it, answering [`Failure::LeaseLost`],
    /// as soon as the lease is lost or about to run out without a renewal.
    async fn holding_lease<T>(
        &self,
        queue: &dyn JobQueue,
        claimed: &ClaimedJob,
        order_id: i64,
        work: impl Future<Output = T>,
    ) -> Result<T, Failure> {
        let lease = self.lease();
        // Stop a fifth of a lease early: the order may go to another delivery once it runs out.
        let safe_for = lease - lease / 5;
        let mut safe_until = Instant::now() + safe_for;
        let mut renewals = tokio::time::interval_at(Instant::now() + lease / 3, lease / 3);
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return Ok(done),
                _ = renewals.tick() => match self.renew(queue, claimed, order_id).await {
                    Ok(true) => safe_until = Instant::now() + safe_for,
                    Ok(false) => return Err(Failure::LeaseLost),
                    Err(error) => tracing::warn!(%error, "cannot renew the lease on the order; retrying"),
                },
                () = tokio::time::sleep_until(safe_until) => return Err(Failure::LeaseLost),
            }
        }
    }

    /// Lets the next delivery take the order at once: this attempt failed and
    /// the job goes back to the queue. If the database cannot be told, the
    /// lease runs out by itself.
    async fn end_lease(&self, order_id: i64, token: &str) {
        if let Err(error) = self.fulfillment.store.end_lease(order_id, token).await {
            tracing::debug!(%error, "cannot end the lease on the order; it will run out");
        }
    }

    /// Renews the order's lease and the job's claim; false if the order is
    /// no longer this delivery's.
    async fn renew(&self, queue: &dyn JobQueue, claimed: &ClaimedJob, order_id: i64) -> Result<bool, StoreError> {
        let until = now_ms() + self.lease().as_millis() as i64;
        let renewed = self.fulfillment.store.renew_lease(order_id, &claimed.token, until).await?;
        if renewed {
            // The lease is the fence; the claim only keeps the reaper away.
            match queue.renew(claimed).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!("the job's claim is gone from the queue; the order's lease still holds"),
                Err(error) => tracing::warn!(%error, "cannot renew the job's claim"),
            }
        }
        Ok(renewed)
    }

    /// Stores the policy's decision, guarded on `processing`, this job and
    /// this delivery's claim.
    async fn apply(
        &self,
        job: &Job,
        token: &str,
        order: OrderDetail,
        decided: Decided<FulfillmentDecision>,
    ) -> Result<Outcome, Failure> {
        let shipment = match &decided.value {
            FulfillmentDecision::Ship(shipment) => {
                Some(serde_json::to_string(shipment).map_err(|error| Failure::Job(error.to_string()))?)
            }
            _ => None,
        };
        let step = match &decided.value {
            FulfillmentDecision::Ship(_) => Step { shipment: shipment.as_deref(), ..Step::to(OrderStatus::Fulfilled) },
            FulfillmentDecision::Hold(reason) => Step::to(OrderStatus::OnHold).because(Some(reason)),
            FulfillmentDecision::Reject(reason) => Step::to(OrderStatus::Cancelled).because(Some(reason)),
        };
        let step = Step { decision: Some(&decided.record), ..step };
        let guard = Guard::From { status: OrderStatus::Processing, job: Some(&job.job_id), claim: Some(token) };
        match self.fulfillment.store.transition(job.order_id, guard, &[step], &job.correlation_id).await? {
            Moved::Done { at, version } => {
                let order = decided_order(order, &decided, step.to, &job.correlation_id, (at, version));
                self.fulfillment.orders.remember(&order).await;
                Ok(Outcome::Decided(step.to))
            }
            // Another delivery took the order over: its decision is the one applied.
            Moved::Skipped { current: OrderStatus::Processing } => Err(Failure::LeaseLost),
            // A cancel (or an operator) got there first: theirs is the outcome.
            Moved::Skipped { current } => Ok(Outcome::Skipped(current)),
        }
    }
}

/// Gives the job back for `retry_in` without counting an attempt (a no-op
/// when this delivery's claim is gone: the job went to another).
async fn settle_later(queue: &dyn JobQueue, claimed: &ClaimedJob, retry_in: Duration) {
    tracing::info!(retry_in_ms = retry_in.as_millis() as u64, "the job goes back to the queue for later");
    if let Err(error) = queue.release(claimed, retry_in).await {
        tracing::warn!(%error, "cannot give the job back; the reaper will requeue it");
    }
}

async fn settle_done(queue: &dyn JobQueue, claimed: &ClaimedJob, outcome: Outcome) {
    if let Err(error) = queue.ack(claimed).await {
        // The job is done; the reaper will offer it again and it will be skipped.
        tracing::warn!(%error, "cannot acknowledge a finished job");
    }
    match outcome {
        Outcome::Decided(status) => tracing::info!(status = %status, "order fulfillment decided"),
        Outcome::Skipped(status) => tracing::info!(status = %status, "job skipped: the order has moved on"),
    }
}

/// The order as the decision left it, without reading it again: nothing
/// else can have changed it, since the guard held.
fn decided_order(
    mut order: OrderDetail,
    decided: &Decided<FulfillmentDecision>,
    status: OrderStatus,
    correlation_id: &str,
    (at, version): (chrono::DateTime<chrono::Utc>, i64),
) -> OrderDetail {
    order.status = status;
    order.status_reason = match &decided.value {
        FulfillmentDecision::Ship(shipment) => {
            order.shipment = Some(shipment.clone());
            None
        }
        FulfillmentDecision::Hold(reason) | FulfillmentDecision::Reject(reason) => Some(reason.clone()),
    };
    order.history.push(HistoryEntry {
        from: Some(OrderStatus::Processing),
        to: status,
        reason: order.status_reason.clone(),
        correlation_id: Some(correlation_id.to_owned()),
        at,
    });
    order.components.push(decided.record.clone());
    (order.version, order.updated_at) = (version, at);
    order
}

/// The pause before retry number `attempt` (1-based): `base`, doubling each
/// time, at most a minute.
pub fn retry_delay(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(Duration::from_secs(60))
}

/// Running worker tasks.
pub struct Workers {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Workers {
    /// Starts `count` workers.
    pub fn start(worker: Arc<Worker>, count: usize) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for index in 0..count {
            tasks.spawn(worker.clone().work(index, stop.clone()));
        }
        Self { stop, tasks }
    }

    /// Stops taking jobs and waits up to `deadline` for the jobs in hand;
    /// those still running then are abandoned to the reaper. Returns how many.
    pub async fn drain(mut self, deadline: Duration) -> usize {
        self.stop.cancel();
        let finished = tokio::time::timeout(deadline, async { while self.tasks.join_next().await.is_some() {} }).await;
        if finished.is_ok() {
            return 0;
        }
        let abandoned = self.tasks.len();
        self.tasks.abort_all();
        tracing::warn!(abandoned, "jobs still running at the shutdown deadline were left to the reaper");
        abandoned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_up_to_a_minute() {
        let base = Duration::from_millis(500);
        assert_eq!(retry_delay(base, 1), Duration::from_millis(500));
        assert_eq!(retry_delay(base, 3), Duration::from_secs(2));
        assert_eq!(retry_delay(base, 30), Duration::from_secs(60));
        assert_eq!(retry_delay(base, 0), Duration::from_millis(500));
    }
}
