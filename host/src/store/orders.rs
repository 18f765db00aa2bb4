//! Orders: the create transaction and reads (status changes are in `transitions`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::rows::{DecisionRow, HistoryRow, LINE_COLUMNS, LineRow, ORDER_COLUMNS, OrderRow};
use super::{Store, StoreError, with_pool};
use crate::domain::Job;
use crate::domain::{ComponentRecord, HistoryEntry, OrderDetail, OrderLine, OrderStatus, OrderSummary};

/// The outbox topic of fulfillment jobs (relayed to the `fulfillment_queue` list).
pub const FULFILLMENT_TOPIC: &str = "fulfillment";
/// The outbox topic of order events (relayed to the `order_events` stream).
pub const EVENTS_TOPIC: &str = "order_events";

/// One priced line, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct PricedLine {
    pub product_id: i64,
    pub sku: String,
    pub name: String,
    pub unit_price: i64,
    pub quantity: i32,
    pub line_total: i64,
}

/// A validated and priced order, ready to store.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub user_id: i64,
    pub currency: String,
    pub lines: Vec<PricedLine>,
    pub subtotal: i64,
    pub discount: i64,
    pub tax: i64,
    pub shipping: i64,
    pub total: i64,
    pub notes: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    /// The validation and pricing calls that decided it.
    pub components: Vec<ComponentRecord>,
    pub correlation_id: String,
    /// When set, the key's record is completed with this order's answer in
    /// the same transaction.
    pub idempotency_key: Option<String>,
}

/// Which orders `GET /orders` lists.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub user_id: Option<i64>,
    pub status: Option<OrderStatus>,
    /// Only orders with an id below this one (newest first).
    pub before: Option<i64>,
    pub limit: i64,
}

pub(crate) use crate::domain::now;

pub(super) fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let cells: Vec<String> = (1..=columns).map(|column| format!("${}", row * columns + column)).collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn component_label(components: &[ComponentRecord], slot: &str) -> String {
    components
        .iter()
        .find(|record| record.slot == slot)
        .map(|record| format!("{}@{}", record.component, record.version))
        .unwrap_or_default()
}

impl NewOrder {
    /// The stored order, as the create transaction leaves it.
    pub(super) fn detail(&self, id: i64, at: DateTime<Utc>) -> OrderDetail {
        let items = self
            .lines
            .iter()
            .map(|line| OrderLine {
                product_id: line.product_id,
                sku: line.sku.clone(),
                name: line.name.clone(),
                unit_price: line.unit_price,
                quantity: line.quantity,
                line_total: line.line_total,
            })
            .collect();
        OrderDetail {
            id,
            user_id: self.user_id,
            status: OrderStatus::Pending,
            status_reason: None,
            shipment: None,
            currency: self.currency.clone(),
            items,
            subtotal: self.subtotal,
            discount: self.discount,
            tax: self.tax,
            shipping: self.shipping,
            total: self.total,
            notes: self.notes.clone(),
            attributes: self.attributes.clone(),
            version: 1,
            validated_by: component_label(&self.components, "validation"),
            priced_by: component_label(&self.components, "pricing"),
            components: self.components.clone(),
            history: vec![HistoryEntry {
                from: None,
                to: OrderStatus::Pending,
                reason: None,
                correlation_id: Some(self.correlation_id.clone()),
                at,
            }],
            created_at: at,
            updated_at: at,
        }
    }

    /// Units wanted per product, in product-id order: the order in which
    /// stock rows are locked, so two orders can never deadlock.
    pub(super) fn units_by_product(&self) -> BTreeMap<i64, i64> {
        let mut wanted = BTreeMap::new();
        for line in &self.lines {
            *wanted.entry(line.product_id).or_insert(0) += i64::from(line.quantity);
        }
        wanted
    }
}

/// An `OrderCreated` or `OrderStatusChanged` event.
/// `version` is the order's version after the change, so a client can tell
/// which events a snapshot already includes.
pub(super) fn order_event(
    order_id: i64,
    version: i64,
    from: Option<OrderStatus>,
    to: OrderStatus,
    reason: Option<&str>,
    correlation_id: &str,
) -> String {
    json!({
        "type": if from.is_none() { "OrderCreated" } else { "OrderStatusChanged" },
        "event_id": uuid::Uuid::new_v4().to_string(),
        "order_id": order_id,
        "version": version,
        "from": from,
        "to": to,
        "reason": reason,
        "correlation_id": correlation_id,
        "timestamp": now().to_rfc3339(),
    })
    .to_string()
}

const INSERT_ORDER: &str = "INSERT INTO orders (user_id, status, currency, subtotal, discount, tax, shipping, total, \
     notes, attributes, version, validated_by, priced_by, created_at, updated_at) \
     VALUES ($1, 'pending', $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11, $12, $12) RETURNING id";

pub(super) const INSERT_HISTORY: &str = "INSERT INTO order_status_history \
     (order_id, from_status, to_status, reason, correlation_id, changed_at) VALUES ($1, $2, $3, $4, $5, $6)";

pub(super) const INSERT_OUTBOX: &str =
    "INSERT INTO outbox (topic, payload, correlation_id, created_at, order_id) VALUES ";

impl Store {
    /// Stores a priced order in one transaction: the order, its lines, its
    /// history, the component record, the outbox rows, the stock (decremented
    /// only where enough remains) and (when keyed) the idempotency record.
    /// Nothing is written if any step fails.
    pub async fn create_order(&self, order: &NewOrder) -> Result<OrderDetail, StoreError> {
        let at = now();
        let wanted = order.units_by_product();
        let items_sql = format!(
            "INSERT INTO order_items (order_id, line_no, product_id, sku, product_name, unit_price, quantity, line_total) VALUES {}",
            placeholders(order.lines.len(), 8)
        );
        let decisions_sql = format!(
            "INSERT INTO order_decisions (order_id, slot, component, version, digest, duration_us, decided_at) VALUES {}",
            placeholders(order.components.len(), 7)
        );
        let outbox_sql = format!("{INSERT_OUTBOX}{}", placeholders(2, 5));
        let notes = serde_json::to_string(&order.notes).map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let attributes =
            serde_json::to_string(&order.attributes).map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let pool = match &self.pool {
            super::Pool::Postgres(pool) => {
                let detail = super::create_order::create(pool, order, at, &notes, &attributes).await?;
                self.announce_outbox();
                return Ok(detail);
            }
            super::Pool::Sqlite(pool) => pool,
        };
        // SQLite: one statement at a time, in one transaction (its single
        // writer connection makes the stock checks strictly serial).
        let detail = async {
            let mut tx = pool.begin().await?;
            let id: i64 = sqlx::query_scalar(INSERT_ORDER)
                .bind(order.user_id)
                .bind(&order.currency)
                .bind(order.subtotal)
                .bind(order.discount)
                .bind(order.tax)
                .bind(order.shipping)
                .bind(order.total)
                .bind(&notes)
                .bind(&attributes)
                .bind(component_label(&order.components, "validation"))
                .bind(component_label(&order.components, "pricing"))
                .bind(at)
                .fetch_one(&mut *tx)
                .await?;
            let detail = order.detail(id, at);
            let mut items = sqlx::query(&items_sql);
            for (line_no, line) in order.lines.iter().enumerate() {
                items = items
                    .bind(id)
                    .bind(line_no as i32)
                    .bind(line.product_id)
                    .bind(&line.sku)
                    .bind(&line.name)
                    .bind(line.unit_price)
                    .bind(line.quantity)
                    .bind(line.line_total);
            }
            items.execute(&mut *tx).await?;
            if !order.components.is_empty() {
                let mut decisions = sqlx::query(&decisions_sql);
                for record in &order.components {
                    decisions = decisions
                        .bind(id)
                        .bind(&record.slot)
                        .bind(&record.component)
                        .bind(&record.version)
                        .bind(&record.digest)
                        .bind(record.duration_us)
                        .bind(record.at);
                }
                decisions.execute(&mut *tx).await?;
            }
            sqlx::query(INSERT_HISTORY)
                .bind(id)
                .bind(None::<String>)
                .bind(OrderStatus::Pending.as_str())
                .bind(None::<String>)
                .bind(&order.correlation_id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(&outbox_sql)
                .bind(FULFILLMENT_TOPIC)
                .bind(Job::for_order(&detail, &order.correlation_id).to_json())
                .bind(&order.correlation_id)
                .bind(at)
                .bind(id)
                .bind(EVENTS_TOPIC)
                .bind(order_event(id, 1, None, OrderStatus::Pending, None, &order.correlation_id))
                .bind(&order.correlation_id)
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            // Stock last: the product rows stay locked only from here to the commit.
            for (&product_id, &units) in &wanted {
                let taken = sqlx::query(
                    "UPDATE products SET stock = stock - $1, updated_at = $2 WHERE id = $3 AND active AND stock >= $1",
                )
                .bind(units)
                .bind(at)
                .bind(product_id)
                .execute(&mut *tx)
                .await?;
                if taken.rows_affected() == 0 {
                    let found: Option<(i64, bool)> = sqlx::query_as("SELECT stock, active FROM products WHERE id = $1")
                        .bind(product_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    return Err(match found {
                        None => StoreError::UnknownProduct(product_id),
                        Some((_, false)) => StoreError::InactiveProduct(product_id),
                        Some((available, true)) => {
                            StoreError::InsufficientStock { product_id, requested: units, available }
                        }
                    });
                }
            }
            if let Some(key) = &order.idempotency_key {
                let body = serde_json::to_string(&detail).map_err(|error| StoreError::Corrupt(error.to_string()))?;
                let completed = sqlx::query(
                    "UPDATE idempotency_keys SET state = 'completed', response_status = 201, response_body = $1, \
                     order_id = $2 WHERE key = $3 AND state = 'in_progress'",
                )
                .bind(body)
                .bind(id)
                .bind(key)
                .execute(&mut *tx)
                .await?;
                if completed.rows_affected() == 0 {
                    return Err(StoreError::KeyLost);
                }
            }
            tx.commit().await?;
            Ok::<_, StoreError>(detail)
        }
        .await?;
        self.announce_outbox();
        Ok(detail)
    }

    /// One order with its lines, history and component record.
    pub async fn order(&self, id: i64) -> Result<OrderDetail, StoreError> {
        let order_sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1");
        let lines_sql = format!("SELECT {LINE_COLUMNS} FROM order_items WHERE order_id = $1 ORDER BY line_no");
        let (row, lines, history, decisions) = with_pool!(self, |pool| async {
            let Some(row) = sqlx::query_as::<_, OrderRow>(&order_sql).bind(id).fetch_optional(pool).await? else {
                return Err(StoreError::NotFound);
            };
            let lines = sqlx::query_as::<_, LineRow>(&lines_sql).bind(id).fetch_all(pool).await?;
            let history = sqlx::query_as::<_, HistoryRow>(
                "SELECT from_status, to_status, reason, correlation_id, changed_at \
                 FROM order_status_history WHERE order_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            let decisions = sqlx::query_as::<_, DecisionRow>(
                "SELECT slot, component, version, digest, duration_us, decided_at \
                 FROM order_decisions WHERE order_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            Ok((row, lines, history, decisions))
        }
        .await)?;
        let history = history.into_iter().map(HistoryRow::into_entry).collect::<Result<_, _>>()?;
        row.into_detail(
            lines.into_iter().map(OrderLine::from).collect(),
            history,
            decisions.into_iter().map(ComponentRecord::from).collect(),
        )
    }

    /// How many orders are in `status`.
    pub async fn count_orders(&self, status: OrderStatus) -> Result<i64, StoreError> {
        let count = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = $1")
                .bind(status.as_str())
                .fetch_one(pool)
                .await
        })?;
        Ok(count)
    }

    /// A page of orders, newest first, with their lines.
    pub async fn list_orders(&self, filter: &OrderFilter) -> Result<Vec<OrderSummary>, StoreError> {
        let orders_sql = format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR status = $2) \
             AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        );
        let rows = with_pool!(self, |pool| {
            sqlx::query_as::<_, OrderRow>(&orders_sql)
                .bind(filter.user_id)
                .bind(filter.status.map(OrderStatus::as_str))
                .bind(filter.before)
                .bind(filter.limit)
                .fetch_all(pool)
                .await
        })?;
        let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        let mut lines = self.lines_of(&ids).await?;
        rows.into_iter()
            .map(|row| {
                let items = lines.remove(&row.id).unwrap_or_default();
                row.into_summary(items)
            })
            .collect()
    }

    pub(super) async fn lines_of(&self, order_ids: &[i64]) -> Result<BTreeMap<i64, Vec<OrderLine>>, StoreError> {
        let mut by_order: BTreeMap<i64, Vec<OrderLine>> = BTreeMap::new();
        if order_ids.is_empty() {
            return Ok(by_order);
        }
        let marks: Vec<String> = (1..=order_ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT {LINE_COLUMNS} FROM order_items WHERE order_id IN ({}) ORDER BY order_id, line_no",
            marks.join(", ")
        );
        let rows = with_pool!(self, |pool| {
            let mut query = sqlx::query_as::<_, LineRow>(&sql);
            for id in order_ids {
                query = query.bind(*id);
            }
            query.fetch_all(pool).await
        })?;
        for row in rows {
            by_order.entry(row.order_id).or_default().push(row.into());
        }
        Ok(by_order)
    }
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(1, 1), "($1)");
    }
}
