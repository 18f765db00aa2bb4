//! Jobs given up on: their orders are held for a human, and an operator can
//! put a dead letter back to work.

use super::Fulfillment;
use super::queue::{DeadLetter, QueueError};
use crate::domain::{Job, OrderStatus};
use crate::store::{Guard, Moved, Step, StoreError};

impl Fulfillment {
    /// Holds the order of a job that was given up on, so a human looks at it:
    /// `pending -> processing -> on_hold`, or `processing -> on_hold` while this
    /// job holds it. A message that is not a job has no order to hold.
    pub async fn hold_dead_job(&self, payload: &str, error: &str) {
        let Ok(job) = Job::parse(payload) else { return };
        let reason = format!("fulfillment failed and was given up on: {}", crate::domain::text::truncate(error, 400));
        let store = &self.store;
        let taken = Step { job: Some(&job.job_id), ..Step::to(OrderStatus::Processing) };
        let held = Step::to(OrderStatus::OnHold).because(Some(&reason));
        let from_pending = Guard::From { status: OrderStatus::Pending, job: None, claim: None };
        let result = match store.transition(job.order_id, from_pending, &[taken, held], &job.correlation_id).await {
            Ok(Moved::Skipped { current: OrderStatus::Processing }) => {
                let from_processing =
                    Guard::From { status: OrderStatus::Processing, job: Some(&job.job_id), claim: None };
                store.transition(job.order_id, from_processing, &[held], &job.correlation_id).await
            }
            other => other,
        };
        match result {
            Ok(Moved::Done { .. }) => {
                self.orders.refresh(job.order_id).await;
                tracing::warn!(order_id = job.order_id, correlation_id = %job.correlation_id,
                    "order held after its fulfillment job was dead-lettered");
            }
            Ok(Moved::Skipped { .. }) | Err(StoreError::NotFound) => {}
            Err(error) => {
                tracing::error!(order_id = job.order_id, %error, "cannot hold the order of a dead-lettered job")
            }
        }
    }

    /// Puts dead letter `id` back to work. When its order was held because the
    /// job died, the order goes back to `processing` for that job and the job is
    /// written to the outbox again, in one transaction; otherwise the message is
    /// requeued as it was. `None` if there is no such dead letter.
    pub async fn requeue_dead_letter(&self, id: &str, correlation_id: &str) -> Result<Option<DeadLetter>, QueueError> {
        let letters = self.queue.dead_letters(10_000).await?;
        let Some(letter) = letters.into_iter().find(|letter| letter.id == id) else { return Ok(None) };
        if let Ok(job) = Job::parse(&letter.payload) {
            let step = Step {
                job: Some(&job.job_id),
                enqueue: Some(&letter.payload),
                ..Step::to(OrderStatus::Processing).because(Some("fulfillment job requeued by an operator"))
            };
            let held = Guard::From { status: OrderStatus::OnHold, job: None, claim: None };
            match self.store.transition(job.order_id, held, &[step], correlation_id).await {
                Ok(Moved::Done { .. }) => {
                    self.orders.refresh(job.order_id).await;
                    self.queue.remove_dead(id).await?;
                    return Ok(Some(letter));
                }
                Ok(Moved::Skipped { .. }) | Err(StoreError::NotFound) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(self.queue.requeue_dead(id).await?.then_some(letter))
    }
}
