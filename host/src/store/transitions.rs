//! Guarded status changes. Every way an order moves (a `PATCH`, a worker
//! taking a job, a policy's decision, a job given up on) goes through
//! [`Store::transition`]: the update is guarded (`WHERE status = $current`),
//! so of two concurrent changes exactly one wins, and each step writes its
//! history row and its `OrderStatusChanged` event in the same transaction.

use chrono::{DateTime, Utc};

use super::statements::{EVENTS_TOPIC, FULFILLMENT_TOPIC, now, order_event};
use super::writes::{HistoryRow, Moving, OrderWrites, Update};
pub use super::writes::{Lease, OrderState};
use super::{Store, StoreError, with_pool};
use crate::domain::{ComponentRecord, Job, OrderDetail, OrderStatus};

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
    /// The delivery of that job taking it: (claim token, lease end in epoch ms).
    pub lease: Option<(&'a str, i64)>,
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
        Self { to, reason: None, job: None, lease: None, shipment: None, decision: None, enqueue: None }
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
    /// From whatever state the order is in, if the state machine allows a
    /// client or operator to make the move (otherwise
    /// [`StoreError::IllegalTransition`]): never fulfillment's own moves.
    ByHand,
    /// Only from `status` and, when `job` is given, only while that job holds
    /// the order, and when `claim` is given, only while that delivery of it
    /// does (its claim token); otherwise nothing changes ([`Moved::Skipped`]).
    From { status: OrderStatus, job: Option<&'a str>, claim: Option<&'a str> },
}

/// What a transition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// Every step was applied, at `at`, leaving the order at `version`.
    Done { at: DateTime<Utc>, version: i64 },
    /// The guard did not hold; the order is in `current`.
    Skipped { current: OrderStatus },
}

impl Guard<'_> {
    /// Whether the order, as it is, may be moved.
    fn holds(&self, state: &OrderState) -> bool {
        match *self {
            Guard::ByHand => true,
            Guard::From { status, job, claim } => {
                let holder = state.lease.as_ref().map(|lease| lease.token.as_str());
                state.status == status
                    && (job.is_none() || state.job.as_deref() == job)
                    && (claim.is_none() || holder == claim)
            }
        }
    }
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

    /// Moves an order to `to` if a client or operator may make that move
    /// from the state the order is in (a `PATCH`). A cancel returns the stock.
    pub async fn change_status(
        &self,
        id: i64,
        to: OrderStatus,
        reason: Option<&str>,
        correlation_id: &str,
    ) -> Result<OrderDetail, StoreError> {
        self.transition(id, Guard::ByHand, &[Step::to(to).because(reason)], correlation_id).await?;
        self.order(id).await
    }

    /// Releases a held order: `on_hold -> processing` with a new job for it,
    /// written to the outbox in the same transaction, so the order is decided
    /// again (by whatever policy serves then). From any other state the
    /// move is refused ([`StoreError::IllegalTransition`]).
    pub async fn release_hold(
        &self,
        id: i64,
        reason: Option<&str>,
        correlation_id: &str,
    ) -> Result<OrderDetail, StoreError> {
        let job = Job::for_order(&self.order(id).await?, correlation_id);
        let payload = job.to_json();
        let step = Step { job: Some(&job.job_id), enqueue: Some(&payload), ..Step::to(OrderStatus::Processing) };
        let held = Guard::From { status: OrderStatus::OnHold, job: None, claim: None };
        match self.transition(id, held, &[step.because(reason)], correlation_id).await? {
            Moved::Done { .. } => self.order(id).await,
            Moved::Skipped { current } => {
                Err(StoreError::IllegalTransition { current, requested: OrderStatus::Processing })
            }
        }
    }

    /// The order's state, the job that holds it (if any) and its version.
    pub async fn order_state(&self, id: i64) -> Result<OrderState, StoreError> {
        with_pool!(self, |pool| async { pool.acquire().await?.order_state(id).await }.await)
    }

    /// One transaction: read the order, check the guard, then apply each
    /// step against the state the previous one left.
    async fn try_transition(
        &self,
        id: i64,
        guard: Guard<'_>,
        steps: &[Step<'_>],
        correlation_id: &str,
    ) -> Result<Attempt, StoreError> {
        let at = now();
        with_pool!(self, |pool| async {
            let mut tx = pool.begin().await?;
            let state = tx.order_state(id).await?;
            if !guard.holds(&state) {
                return Ok(Attempt::Skipped(state.status));
            }
            let claim = state.lease.as_ref().map(|lease| lease.token.as_str());
            let mut moving = Moving {
                id,
                user_id: state.user_id,
                from: state.status,
                version: state.version,
                claim,
                at,
                correlation_id,
            };
            for step in steps {
                let allowed = match guard {
                    Guard::ByHand => moving.from.can_become_by_hand(step.to),
                    Guard::From { .. } => moving.from.can_become(step.to),
                };
                if !allowed {
                    return Err(StoreError::IllegalTransition { current: moving.from, requested: step.to });
                }
                let update = Update {
                    to: step.to,
                    reason: step.reason,
                    job: step.job,
                    lease: step.lease,
                    shipment: step.shipment,
                };
                if !tx.move_order(&moving, &update).await? {
                    return Ok(Attempt::Lost);
                }
                moving.version += 1;
                moving.claim = step.lease.filter(|_| step.to == OrderStatus::Processing).map(|(token, _)| token);
                if step.to == OrderStatus::Cancelled {
                    tx.restock(id, at).await?;
                }
                record_step(&mut *tx, &moving, step).await?;
                moving.from = step.to;
            }
            tx.commit().await?;
            Ok(Attempt::Moved { at, version: moving.version })
        }
        .await)
    }
}

/// What a step leaves behind besides the order's new state: its history row,
/// the decision that made it, its event, and the job it queues.
async fn record_step(db: &mut impl OrderWrites, moving: &Moving<'_>, step: &Step<'_>) -> Result<(), StoreError> {
    let Moving { id, user_id, from, version, at, correlation_id, .. } = *moving;
    let history = HistoryRow { order_id: id, from: Some(from), to: step.to, reason: step.reason, correlation_id, at };
    db.insert_history(&history).await?;
    db.insert_decisions(id, step.decision.map(std::slice::from_ref).unwrap_or_default()).await?;
    let event = order_event(id, user_id, version, Some(from), step.to, step.reason, correlation_id);
    let job = step.enqueue.map(|job| (FULFILLMENT_TOPIC, job));
    let messages: Vec<(&str, &str)> = [Some((EVENTS_TOPIC, event.as_str())), job].into_iter().flatten().collect();
    db.insert_outbox(id, &messages, correlation_id, at).await
}
