//! Guarded status changes. Every way an order moves (a `PATCH`, a worker
//! taking a job, a policy's decision, a job given up on) goes through
//! [`Store::transition`]: the update is guarded (`WHERE status = $current`),
//! so of two concurrent changes exactly one wins, and each step writes its
//! history row and its `OrderStatusChanged` event in the same transaction.

use chrono::{DateTime, Utc};

use super::rows::status;
use super::statements::{
    EVENTS_TOPIC, FULFILLMENT_TOPIC, INSERT_HISTORY, INSERT_OUTBOX, now, order_event, placeholders,
};
use super::{Store, StoreError, with_pool};
use crate::domain::{ComponentRecord, OrderDetail, OrderStatus};

/// One move of an order.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// The state entered.
    pub to: OrderStatus,
    /// Why (a hold, a rejection, a cancel), shown on the order.
    pub reason: Option<&'a str>,
    /// The job that takes the order into `processing`; a redelivery of that
    /// job may resume it, any other job skips it.
    pub job: Option<&'a str>,
    /// Where and how it ships (JSON), when the policy said ship.
    pub shipment: Option<&'a str>,
    /// The fulfillment call that decided this step.
    pub decision: Option<&'a ComponentRecord>,
    /// A fulfillment job (JSON) to queue with this step, in the same transaction.
    pub enqueue: Option<&'a str>,
}

impl<'a> Step<'a> {
    /// A move to `to` with nothing else recorded.
    pub fn to(to: OrderStatus) -> Self {
        Self { to, reason: None, job: None, shipment: None, decision: None, enqueue: None }
    }

    /// The same move, with a reason.
    pub fn because(mut self, reason: Option<&'a str>) -> Self {
        self.reason = reason;
        self
    }
}

/// When a transition applies.
#[derive(Debug, Clone, Copy)]
pub enum Guard<'a> {
    /// From whatever state the order is in, if the state machine allows it
    /// (otherwise [`StoreError::IllegalTransition`]).
    Any,
    /// Only from `status` and, when `job` is given, only while that job holds
    /// the order; otherwise nothing changes ([`Moved::Skipped`]).
    From { status: OrderStatus, job: Option<&'a str> },
}

/// What a transition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// Every step was applied, at `at`, leaving the order at `version`.
    Done { at: DateTime<Utc>, version: i64 },
    /// The guard did not hold; the order is in `current`.
    Skipped { current: OrderStatus },
}

/// Where an order is, in brief.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderState {
    pub status: OrderStatus,
    /// The job that holds it while it is processing.
    pub job: Option<String>,
    /// Incremented by every change.
    pub version: i64,
}

/// One guarded attempt.
enum Attempt {
    Moved {
        at: DateTime<Utc>,
        version: i64,
    },
    Skipped(OrderStatus),
    /// Another change committed between our read and our update.
    Lost,
}

impl Store {
    /// Moves an order through `steps` in one transaction if `guard` holds.
    /// A lost race is retried against the state the winner left, so the
    /// guard and the state machine always judge the current state.
    pub async fn transition(
        &self,
        id: i64,
        guard: Guard<'_>,
        steps: &[Step<'_>],
        correlation_id: &str,
    ) -> Result<Moved, StoreError> {
        // A handful of rounds: each lost race means another change landed,
        // and there are only so many legal changes in a row.
        for _ in 0..4 {
            match self.try_transition(id, guard, steps, correlation_id).await? {
                Attempt::Moved { at, version } => {
                    self.announce_outbox();
                    return Ok(Moved::Done { at, version });
                }
                Attempt::Skipped(current) => return Ok(Moved::Skipped { current }),
                Attempt::Lost => continue,
            }
        }
        Err(StoreError::Corrupt(format!("order {id} kept changing while moving it")))
    }

    /// Moves an order to `to` if the state machine allows it from the state
    /// the order is in (a `PATCH`). A cancel returns the stock.
    pub async fn change_status(
        &self,
        id: i64,
        to: OrderStatus,
        reason: Option<&str>,
        correlation_id: &str,
    ) -> Result<OrderDetail, StoreError> {
        self.transition(id, Guard::Any, &[Step::to(to).because(reason)], correlation_id).await?;
        self.order(id).await
    }

    /// The order's state, the job that holds it (if any) and its version.
    pub async fn order_state(&self, id: i64) -> Result<OrderState, StoreError> {
        let row: Option<(String, Option<String>, i64)> = with_pool!(self, |pool| {
            sqlx::query_as("SELECT status, fulfillment_job, version FROM orders WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        let (current, job, version) = row.ok_or(StoreError::NotFound)?;
        Ok(OrderState { status: status(&current)?, job, version })
    }

    async fn try_transition(
        &self,
        id: i64,
        guard: Guard<'_>,
        steps: &[Step<'_>],
        correlation_id: &str,
    ) -> Result<Attempt, StoreError> {
        let at = now();
        let outbox_sql = format!("{INSERT_OUTBOX}{}", placeholders(1, 5));
        with_pool!(self, |pool| async {
            let mut tx = pool.begin().await?;
            let row: Option<(String, Option<String>, i64)> =
                sqlx::query_as("SELECT status, fulfillment_job, version FROM orders WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let (current, holder, mut version) = row.ok_or(StoreError::NotFound)?;
            let mut current = status(&current)?;
            if let Guard::From { status: expected, job } = guard
                && (current != expected || (job.is_some() && holder.as_deref() != job))
            {
                return Ok(Attempt::Skipped(current));
            }
            for step in steps {
                if !current.can_become(step.to) {
                    return Err(StoreError::IllegalTransition { current, requested: step.to });
                }
                // The job is kept only while the order is processing.
                let job = step.job.filter(|_| step.to == OrderStatus::Processing);
                let moved = sqlx::query(
                    "UPDATE orders SET status = $1, status_reason = $2, fulfillment_job = $3, \
                     shipment = COALESCE($4, shipment), version = version + 1, updated_at = $5 \
                     WHERE id = $6 AND status = $7 AND version = $8",
                )
                .bind(step.to.as_str())
                .bind(step.reason)
                .bind(job)
                .bind(step.shipment)
                .bind(at)
                .bind(id)
                .bind(current.as_str())
                .bind(version)
                .execute(&mut *tx)
                .await?;
                if moved.rows_affected() == 0 {
                    return Ok(Attempt::Lost);
                }
                version += 1;
                if step.to == OrderStatus::Cancelled {
                    // Lines are summed per product and restocked in id order, like the create.
                    let lines: Vec<(i64, i64)> = sqlx::query_as(
                        "SELECT product_id, SUM(quantity) FROM order_items WHERE order_id = $1 \
                         GROUP BY product_id ORDER BY product_id",
                    )
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                    for (product_id, units) in lines {
                        sqlx::query("UPDATE products SET stock = stock + $1, updated_at = $2 WHERE id = $3")
                            .bind(units)
                            .bind(at)
                            .bind(product_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                sqlx::query(INSERT_HISTORY)
                    .bind(id)
                    .bind(current.as_str())
                    .bind(step.to.as_str())
                    .bind(step.reason)
                    .bind(correlation_id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                if let Some(record) = step.decision {
                    sqlx::query(
                        "INSERT INTO order_decisions (order_id, slot, component, version, digest, duration_us, \
                         decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(id)
                    .bind(&record.slot)
                    .bind(&record.component)
                    .bind(&record.version)
                    .bind(&record.digest)
                    .bind(record.duration_us)
                    .bind(record.at)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(&outbox_sql)
                    .bind(EVENTS_TOPIC)
                    .bind(order_event(id, version, Some(current), step.to, step.reason, correlation_id))
                    .bind(correlation_id)
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                if let Some(job) = step.enqueue {
                    sqlx::query(&outbox_sql)
                        .bind(FULFILLMENT_TOPIC)
                        .bind(job)
                        .bind(correlation_id)
                        .bind(at)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                current = step.to;
            }
            tx.commit().await?;
            Ok(Attempt::Moved { at, version })
        }
        .await)
    }
}
