//! The statements an order's writers share (placing one on SQLite, moving
//! one on either backend), written once: the trait is implemented for each
//! connection type by the same macro body, so the callers read as steps.

use chrono::{DateTime, Utc};

use super::StoreError;
use super::rows::status;
use super::statements::{INSERT_HISTORY, INSERT_OUTBOX, placeholders};
use crate::domain::{ComponentRecord, OrderStatus};

/// The order being moved, as the previous step left it.
pub(super) struct Moving<'a> {
    pub id: i64,
    /// Whose order it is (named in its events).
    pub user_id: i64,
    pub from: OrderStatus,
    /// The order's version: before the step's update when it is applied,
    /// after it once the caller counted the update.
    pub version: i64,
    /// The claim token of the delivery holding it, as read: the update
    /// applies only if no other delivery took it over since.
    pub claim: Option<&'a str>,
    pub at: DateTime<Utc>,
    pub correlation_id: &'a str,
}

/// Where an order is, in brief.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderState {
    pub status: OrderStatus,
    /// Whose order it is.
    pub user_id: i64,
    /// The job that holds it while it is processing.
    pub job: Option<String>,
    /// The delivery of that job that holds it (its claim token), and until
    /// when (epoch ms); none before a delivery took it.
    pub lease: Option<Lease>,
    /// Incremented by every change.
    pub version: i64,
}

/// One delivery's hold on a `processing` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub token: String,
    pub until_ms: i64,
}

/// What one step changes on the order's row.
pub(super) struct Update<'a> {
    pub to: OrderStatus,
    pub reason: Option<&'a str>,
    /// The job that holds the order (kept only while it is processing).
    pub job: Option<&'a str>,
    /// The delivery of that job that holds it: (claim token, lease end in
    /// epoch ms); kept only while it is processing.
    pub lease: Option<(&'a str, i64)>,
    pub shipment: Option<&'a str>,
}

/// One history row: the order entered `to` (from `from`, none when placed).
pub(super) struct HistoryRow<'a> {
    pub order_id: i64,
    pub from: Option<OrderStatus>,
    pub to: OrderStatus,
    pub reason: Option<&'a str>,
    pub correlation_id: &'a str,
    pub at: DateTime<Utc>,
}

/// An order's writes on one connection (inside the caller's transaction).
pub(super) trait OrderWrites {
    /// The order's status, holding job and version.
    async fn order_state(&mut self, id: i64) -> Result<OrderState, StoreError>;
    /// The guarded update; false when another change got there first.
    async fn move_order(&mut self, moving: &Moving<'_>, update: &Update<'_>) -> Result<bool, StoreError>;
    /// Returns a cancelled order's units to stock.
    async fn restock(&mut self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError>;
    async fn insert_history(&mut self, row: &HistoryRow<'_>) -> Result<(), StoreError>;
    /// The component calls that decided the order, one row each.
    async fn insert_decisions(&mut self, id: i64, records: &[ComponentRecord]) -> Result<(), StoreError>;
    /// Outbox rows `(topic, payload)` about the order, in one statement.
    async fn insert_outbox(
        &mut self,
        order_id: i64,
        messages: &[(&str, &str)],
        correlation_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

const MOVE_ORDER: &str = "UPDATE orders SET status = $1, status_reason = $2, fulfillment_job = $3, \
     shipment = COALESCE($4, shipment), version = version + 1, updated_at = $5, claim_token = $9, \
     lease_until_ms = $10 WHERE id = $6 AND status = $7 AND version = $8 \
     AND COALESCE(claim_token, '') = COALESCE($11, '')";

/// Lines summed per product, in id order: restocked in the order the create takes stock.
const UNITS_BY_PRODUCT: &str = "SELECT product_id, SUM(quantity) FROM order_items WHERE order_id = $1 \
     GROUP BY product_id ORDER BY product_id";

const INSERT_DECISIONS: &str =
    "INSERT INTO order_decisions (order_id, slot, component, version, digest, duration_us, decided_at) VALUES ";

macro_rules! order_writes {
    ($connection:ty) => {
        impl OrderWrites for $connection {
            async fn order_state(&mut self, id: i64) -> Result<OrderState, StoreError> {
                let row: Option<(String, i64, Option<String>, i64, Option<String>, Option<i64>)> = sqlx::query_as(
                    "SELECT status, user_id, fulfillment_job, version, claim_token, lease_until_ms FROM orders WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&mut *self)
                .await?;
                let (current, user_id, job, version, token, until_ms) = row.ok_or(StoreError::NotFound)?;
                let lease = token.zip(until_ms).map(|(token, until_ms)| Lease { token, until_ms });
                Ok(OrderState { status: status(&current)?, user_id, job, lease, version })
            }

            async fn move_order(&mut self, moving: &Moving<'_>, update: &Update<'_>) -> Result<bool, StoreError> {
                let processing = update.to == OrderStatus::Processing;
                let job = update.job.filter(|_| processing);
                let (token, until_ms) = update.lease.filter(|_| processing).unzip();
                let moved = sqlx::query(MOVE_ORDER)
                    .bind(update.to.as_str())
                    .bind(update.reason)
                    .bind(job)
                    .bind(update.shipment)
                    .bind(moving.at)
                    .bind(moving.id)
                    .bind(moving.from.as_str())
                    .bind(moving.version)
                    .bind(token)
                    .bind(until_ms)
                    .bind(moving.claim)
                    .execute(&mut *self)
                    .await?;
                Ok(moved.rows_affected() == 1)
            }

            async fn restock(&mut self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
                let lines: Vec<(i64, i64)> = sqlx::query_as(UNITS_BY_PRODUCT).bind(id).fetch_all(&mut *self).await?;
                for (product_id, units) in lines {
                    sqlx::query("UPDATE products SET stock = stock + $1, updated_at = $2 WHERE id = $3")
                        .bind(units)
                        .bind(at)
                        .bind(product_id)
                        .execute(&mut *self)
                        .await?;
                }
                Ok(())
            }

            async fn insert_history(&mut self, row: &HistoryRow<'_>) -> Result<(), StoreError> {
                sqlx::query(INSERT_HISTORY)
                    .bind(row.order_id)
                    .bind(row.from.map(OrderStatus::as_str))
                    .bind(row.to.as_str())
                    .bind(row.reason)
                    .bind(row.correlation_id)
                    .bind(row.at)
                    .execute(&mut *self)
                    .await?;
                Ok(())
            }

            async fn insert_decisions(&mut self, id: i64, records: &[ComponentRecord]) -> Result<(), StoreError> {
                if records.is_empty() {
                    return Ok(());
                }
                let sql = format!("{INSERT_DECISIONS}{}", placeholders(records.len(), 7));
                let mut insert = sqlx::query(&sql);
                for record in records {
                    insert = insert
                        .bind(id)
                        .bind(&record.slot)
                        .bind(&record.component)
                        .bind(&record.version)
                        .bind(&record.digest)
                        .bind(record.duration_us)
                        .bind(record.at);
                }
                insert.execute(&mut *self).await?;
                Ok(())
            }

            async fn insert_outbox(
                &mut self,
                order_id: i64,
                messages: &[(&str, &str)],
                correlation_id: &str,
                at: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                if messages.is_empty() {
                    return Ok(());
                }
                let sql = format!("{INSERT_OUTBOX}{}", placeholders(messages.len(), 5));
                let mut insert = sqlx::query(&sql);
                for (topic, payload) in messages {
                    insert = insert.bind(*topic).bind(*payload).bind(correlation_id).bind(at).bind(order_id);
                }
                insert.execute(&mut *self).await?;
                Ok(())
            }
        }
    };
}

order_writes!(sqlx::PgConnection);
order_writes!(sqlx::SqliteConnection);
