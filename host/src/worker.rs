//! The fulfillment worker: takes jobs from the queue, asks the `fulfillment`
//! slot what to do with each order, and applies the decision.
//!
//! A job moves its order `pending -> processing` (guarded, and the order
//! remembers the job), then the policy decides and the order moves on
//! (`ship -> fulfilled` with the shipment stored, `hold -> on_hold`,
//! `reject -> cancelled` with the stock returned), guarded again on
//! `processing` and on the job. So a job delivered twice, a job whose
//! worker died half-way and a cancel racing the worker each end with exactly
//! one outcome. A failure of the job (a trapping policy, a poison message)
//! is retried with backoff and then dead-lettered, and the order held; a
//! failure of the platform (the database down) is retried without counting.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::FulfillmentSettings;
use crate::domain::{ComponentRecord, HistoryEntry, OrderDetail, OrderStatus, Shipment};
use crate::queue::events::pause;
use crate::queue::{ClaimedJob, DeadLetter, Failed, Job, JobQueue, QueueError};
use crate::runtime::bindings::types::{Attribute, Decision, LineItem, Order, PricedLine, Quote};
use crate::runtime::{CallContext, Slot};
use crate::service::Service;
use crate::store::{Guard, Moved, Step, StoreError};

/// Why a job could not be finished.
#[derive(Debug)]
enum Failure {
    /// The job's own fault (it is not a job, its order is gone, the policy
    /// failed): counts as an attempt.
    Job(String),
    /// A server is down: try again later, without counting.
    Unavailable(String),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::Database(
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_),
            ) => Failure::Unavailable(format!("database: {error}")),
            _ => Failure::Job(format!("database: {error}")),
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
pub struct Fulfillment {
    service: Arc<Service>,
    queue: Arc<dyn JobQueue>,
    settings: FulfillmentSettings,
}

impl Fulfillment {
    pub fn new(service: Arc<Service>, queue: Arc<dyn JobQueue>, settings: FulfillmentSettings) -> Arc<Self> {
        Arc::new(Self { service, queue, settings })
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
                Ok(job) => self.process(&job).await,
                Err(reason) => Err(Failure::Job(reason)),
            };
            match outcome {
                Ok(outcome) => {
                    if let Err(error) = queue.ack(&claimed).await {
                        // The job is done; the reaper will offer it again and it will be skipped.
                        tracing::warn!(%error, "cannot acknowledge a finished job");
                    }
                    match outcome {
                        Outcome::Decided(status) => tracing::info!(status = %status, "order fulfillment decided"),
                        Outcome::Skipped(status) => tracing::info!(status = %status, "job skipped: the order has moved on"),
                    }
                }
                Err(Failure::Job(reason)) => {
                    let retry_in = self.backoff(claimed.attempts + 1);
                    match queue.fail(&claimed, &reason, retry_in, self.settings.max_attempts).await {
                        Ok(Failed::Retrying { attempts }) => {
                            tracing::warn!(error = %reason, attempts, retry_in_ms = retry_in.as_millis() as u64,
                                "fulfillment attempt failed; will retry")
                        }
                        Ok(Failed::Dead { attempts }) => {
                            tracing::error!(error = %reason, attempts, "fulfillment job dead-lettered");
                            hold_dead_job(&self.service, &claimed.payload, &reason).await;
                        }
                        Ok(Failed::Gone) => tracing::warn!(error = %reason, "fulfillment attempt failed after its claim expired"),
                        Err(error) => tracing::warn!(%error, failure = %reason, "cannot record a failed attempt; the reaper will requeue the job"),
                    }
                }
                Err(Failure::Unavailable(reason)) => {
                    tracing::warn!(error = %reason, "a server is unavailable; the job goes back to the queue");
                    if let Err(error) = queue.release(&claimed, self.backoff(1)).await {
                        tracing::warn!(%error, "cannot give the job back; the reaper will requeue it");
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Takes the order into `processing` (or resumes it), asks the policy and
    /// applies its decision.
    async fn process(&self, job: &Job) -> Result<Outcome, Failure> {
        let store = &self.service.store;
        let taken = Step { job: Some(&job.job_id), ..Step::to(OrderStatus::Processing) };
        match store
            .transition(
                job.order_id,
                Guard::From { status: OrderStatus::Pending, job: None },
                &[taken],
                &job.correlation_id,
            )
            .await
        {
            Ok(Moved::Done { .. }) => {}
            Ok(Moved::Skipped { current: OrderStatus::Processing }) => {
                // Resumed only by the job that took it (a redelivery after a crash).
                let state = store.order_state(job.order_id).await?;
                if state.job.as_deref() != Some(job.job_id.as_str()) {
                    return Ok(Outcome::Skipped(OrderStatus::Processing));
                }
            }
            Ok(Moved::Skipped { current }) => return Ok(Outcome::Skipped(current)),
            Err(StoreError::NotFound) => return Err(Failure::Job(format!("order {} does not exist", job.order_id))),
            Err(error) => return Err(error.into()),
        }

        let order = store.order(job.order_id).await?;
        // Readers see `processing` (the order was read after the change).
        self.service.remember(&order).await;
        if let Some(delay) = self.settings.simulated_delay() {
            tokio::time::sleep(delay).await;
        }
        let component = self
            .service
            .slots
            .get(Slot::Fulfillment)
            .ok_or_else(|| Failure::Job("the fulfillment slot is empty".into()))?;
        let (wit_order, quote) = rules_view(&order);
        let context = CallContext::new(job.correlation_id.as_str());
        let started = std::time::Instant::now();
        let decided = self.service.runtime.decide(&component, &context, &wit_order, &quote).await;
        self.service.observe_call(&component, started.elapsed(), decided.as_ref().err());
        let decided = decided.map_err(|error| {
            let message = format!("{}@{} ({}): {error}", component.name, component.version, error.kind());
            // A host without capacity is not the job's fault: no attempt is spent.
            if error.is_component_fault() { Failure::Job(message) } else { Failure::Unavailable(message) }
        })?;
        let record = ComponentRecord {
            slot: Slot::Fulfillment.name().into(),
            component: component.name.to_string(),
            version: component.version.to_string(),
            digest: component.digest.to_string(),
            duration_us: decided.elapsed.as_micros() as i64,
            at: crate::store::orders::now(),
        };
        let shipment;
        let step = match &decided.value {
            Decision::Ship(ship) => {
                shipment = serde_json::json!({"carrier": ship.carrier, "service": ship.service,
                    "warehouse": ship.warehouse, "estimated_days": ship.estimated_days})
                .to_string();
                Step { shipment: Some(&shipment), ..Step::to(OrderStatus::Fulfilled) }
            }
            Decision::Hold(reason) => Step::to(OrderStatus::OnHold).because(Some(reason)),
            Decision::Reject(reason) => Step::to(OrderStatus::Cancelled).because(Some(reason)),
        };
        let step = Step { decision: Some(&record), ..step };
        let guard = Guard::From { status: OrderStatus::Processing, job: Some(&job.job_id) };
        match store.transition(job.order_id, guard, &[step], &job.correlation_id).await? {
            Moved::Done { at, version } => {
                // Nothing else can have changed: the guard held.
                let mut order = order;
                order.status = step.to;
                order.status_reason = step.reason.map(str::to_owned);
                if let Decision::Ship(ship) = &decided.value {
                    order.shipment = Some(Shipment {
                        carrier: ship.carrier.clone(),
                        service: ship.service.clone(),
                        warehouse: ship.warehouse.clone(),
                        estimated_days: ship.estimated_days,
                    });
                }
                order.history.push(HistoryEntry {
                    from: Some(OrderStatus::Processing),
                    to: step.to,
                    reason: order.status_reason.clone(),
                    correlation_id: Some(job.correlation_id.clone()),
                    at,
                });
                order.components.push(record.clone());
                (order.version, order.updated_at) = (version, at);
                self.service.remember(&order).await;
                Ok(Outcome::Decided(step.to))
            }
            // A cancel (or an operator) got there first: theirs is the outcome.
            Moved::Skipped { current } => Ok(Outcome::Skipped(current)),
        }
    }
}

/// The pause before retry number `attempt` (1-based): `base`, doubling each
/// time, at most a minute.
pub fn retry_delay(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(Duration::from_secs(60))
}

/// The order and its quote as the fulfillment policy sees them.
pub fn rules_view(order: &OrderDetail) -> (Order, Quote) {
    let amount = |value: i64| u64::try_from(value).unwrap_or(0);
    let wit_order = Order {
        id: Some(order.id as u64),
        user_id: amount(order.user_id),
        currency: order.currency.clone(),
        items: order
            .items
            .iter()
            .map(|line| LineItem {
                product_id: amount(line.product_id),
                sku: line.sku.clone(),
                name: line.name.clone(),
                unit_price: amount(line.unit_price),
                quantity: u32::try_from(line.quantity).unwrap_or(0),
            })
            .collect(),
        attributes: order
            .attributes
            .iter()
            .map(|(key, value)| Attribute { key: key.clone(), value: value.clone() })
            .collect(),
    };
    let quote = Quote {
        lines: order
            .items
            .iter()
            .map(|line| PricedLine {
                product_id: amount(line.product_id),
                quantity: u32::try_from(line.quantity).unwrap_or(0),
                unit_price: amount(line.unit_price),
                line_total: amount(line.line_total),
            })
            .collect(),
        subtotal: amount(order.subtotal),
        discount: amount(order.discount),
        tax: amount(order.tax),
        shipping: amount(order.shipping),
        total: amount(order.total),
        currency: order.currency.clone(),
        notes: order.notes.clone(),
    };
    (wit_order, quote)
}

/// Holds the order of a job that was given up on, so a human looks at it:
/// `pending -> processing -> on_hold`, or `processing -> on_hold` while this
/// job holds it. A message that is not a job has no order to hold.
pub async fn hold_dead_job(service: &Service, payload: &str, error: &str) {
    let Ok(job) = Job::parse(payload) else { return };
    let reason = format!("fulfillment failed and was given up on: {}", crate::runtime::call::truncate(error, 400));
    let store = &service.store;
    let taken = Step { job: Some(&job.job_id), ..Step::to(OrderStatus::Processing) };
    let held = Step::to(OrderStatus::OnHold).because(Some(&reason));
    let from_pending = Guard::From { status: OrderStatus::Pending, job: None };
    let result = match store.transition(job.order_id, from_pending, &[taken, held], &job.correlation_id).await {
        Ok(Moved::Skipped { current: OrderStatus::Processing }) => {
            let from_processing = Guard::From { status: OrderStatus::Processing, job: Some(&job.job_id) };
            store.transition(job.order_id, from_processing, &[held], &job.correlation_id).await
        }
        other => other,
    };
    match result {
        Ok(Moved::Done { .. }) => {
            service.refresh_order(job.order_id).await;
            tracing::warn!(order_id = job.order_id, correlation_id = %job.correlation_id, "order held after its fulfillment job was dead-lettered");
        }
        Ok(Moved::Skipped { .. }) | Err(StoreError::NotFound) => {}
        Err(error) => tracing::error!(order_id = job.order_id, %error, "cannot hold the order of a dead-lettered job"),
    }
}

/// Puts dead letter `id` back to work. When its order was held because the
/// job died, the order goes back to `processing` for that job and the job is
/// written to the outbox again, in one transaction; otherwise the message is
/// requeued as it was. `None` if there is no such dead letter.
pub async fn requeue_dead_letter(
    service: &Service,
    id: &str,
    correlation_id: &str,
) -> Result<Option<DeadLetter>, QueueError> {
    let letters = service.queue.dead_letters(10_000).await?;
    let Some(letter) = letters.into_iter().find(|letter| letter.id == id) else { return Ok(None) };
    if let Ok(job) = Job::parse(&letter.payload) {
        let step = Step {
            job: Some(&job.job_id),
            enqueue: Some(&letter.payload),
            ..Step::to(OrderStatus::Processing).because(Some("fulfillment job requeued by an operator"))
        };
        let held = Guard::From { status: OrderStatus::OnHold, job: None };
        match service.store.transition(job.order_id, held, &[step], correlation_id).await {
            Ok(Moved::Done { .. }) => {
                service.refresh_order(job.order_id).await;
                service.queue.remove_dead(id).await?;
                return Ok(Some(letter));
            }
            Ok(Moved::Skipped { .. }) | Err(StoreError::NotFound) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(service.queue.requeue_dead(id).await?.then_some(letter))
}

/// Running worker tasks.
pub struct Workers {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Workers {
    /// Starts `count` workers.
    pub fn start(fulfillment: Arc<Fulfillment>, count: usize) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for worker in 0..count {
            tasks.spawn(fulfillment.clone().work(worker, stop.clone()));
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
