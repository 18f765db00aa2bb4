//! Placing an order on SQLite: one statement at a time, in one transaction.
//! SQLite's single writer connection makes the stock checks strictly serial.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{SqliteConnection, SqlitePool};

use super::{NewOrder, PricedLine, answer};
use crate::domain::{Job, OrderDetail, OrderStatus};
use crate::store::StoreError;
use crate::store::statements::{EVENTS_TOPIC, FULFILLMENT_TOPIC, order_event, placeholders};
use crate::store::writes::{HistoryRow, OrderWrites};

const INSERT_ORDER: &str = "INSERT INTO orders (user_id, status, currency, subtotal, discount, tax, shipping, total, \
     notes, attributes, version, validated_by, priced_by, created_at, updated_at) \
     VALUES ($1, 'pending', $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11, $12, $12) RETURNING id";

const TAKE_STOCK: &str =
    "UPDATE products SET stock = stock - $1, updated_at = $2 WHERE id = $3 AND active AND stock >= $1";

const COMPLETE_KEY: &str = "UPDATE idempotency_keys SET state = 'completed', response_status = 201, \
     response_body = $1, order_id = $2 WHERE key = $3 AND state = 'in_progress'";

/// Stores `order` in one transaction.
pub(super) async fn create(pool: &SqlitePool, order: &NewOrder, at: DateTime<Utc>) -> Result<OrderDetail, StoreError> {
    let mut tx = pool.begin().await?;
    let id = insert_order(&mut tx, order, at).await?;
    let detail = order.detail(id, at);
    insert_lines(&mut tx, id, &order.lines).await?;
    tx.insert_decisions(id, &order.components).await?;
    let history = HistoryRow {
        order_id: id,
        from: None,
        to: OrderStatus::Pending,
        reason: None,
        correlation_id: &order.correlation_id,
        at,
    };
    tx.insert_history(&history).await?;
    insert_outbox(&mut tx, &detail, &order.correlation_id, at).await?;
    // Stock last: the product rows stay locked only from here to the commit.
    take_stock(&mut tx, &order.units_by_product(), at).await?;
    if let Some(key) = &order.idempotency_key {
        complete_key(&mut tx, key, &detail).await?;
    }
    tx.commit().await?;
    Ok(detail)
}

async fn insert_order(db: &mut SqliteConnection, order: &NewOrder, at: DateTime<Utc>) -> Result<i64, StoreError> {
    let (notes, attributes) = order.json_columns()?;
    let id = sqlx::query_scalar(INSERT_ORDER)
        .bind(order.user_id)
        .bind(&order.currency)
        .bind(order.subtotal)
        .bind(order.discount)
        .bind(order.tax)
        .bind(order.shipping)
        .bind(order.total)
        .bind(notes)
        .bind(attributes)
        .bind(order.decided_by("validation"))
        .bind(order.decided_by("pricing"))
        .bind(at)
        .fetch_one(&mut *db)
        .await?;
    Ok(id)
}

async fn insert_lines(db: &mut SqliteConnection, id: i64, lines: &[PricedLine]) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO order_items (order_id, line_no, product_id, sku, product_name, unit_price, quantity, line_total) VALUES {}",
        placeholders(lines.len(), 8)
    );
    let mut insert = sqlx::query(&sql);
    for (line_no, line) in lines.iter().enumerate() {
        insert = insert
            .bind(id)
            .bind(line_no as i32)
            .bind(line.product_id)
            .bind(&line.sku)
            .bind(&line.name)
            .bind(line.unit_price)
            .bind(line.quantity)
            .bind(line.line_total);
    }
    insert.execute(&mut *db).await?;
    Ok(())
}

/// The order's fulfillment job and its `OrderCreated` event.
async fn insert_outbox(
    db: &mut SqliteConnection,
    detail: &OrderDetail,
    correlation_id: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let job = Job::for_order(detail, correlation_id).to_json();
    let event = order_event(detail.id, detail.user_id, 1, None, OrderStatus::Pending, None, correlation_id);
    let messages = [(FULFILLMENT_TOPIC, job.as_str()), (EVENTS_TOPIC, event.as_str())];
    db.insert_outbox(detail.id, &messages, correlation_id, at).await
}

/// Takes the units of every product, refusing the order where not enough remain.
async fn take_stock(
    db: &mut SqliteConnection,
    wanted: &BTreeMap<i64, i64>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    for (&product_id, &units) in wanted {
        let taken = sqlx::query(TAKE_STOCK).bind(units).bind(at).bind(product_id).execute(&mut *db).await?;
        if taken.rows_affected() == 0 {
            return Err(stock_refusal(db, product_id, units).await?);
        }
    }
    Ok(())
}

/// Why `units` of `product_id` could not be taken.
async fn stock_refusal(db: &mut SqliteConnection, product_id: i64, units: i64) -> Result<StoreError, StoreError> {
    let found: Option<(i64, bool)> = sqlx::query_as("SELECT stock, active FROM products WHERE id = $1")
        .bind(product_id)
        .fetch_optional(&mut *db)
        .await?;
    Ok(match found {
        None => StoreError::UnknownProduct(product_id),
        Some((_, false)) => StoreError::InactiveProduct(product_id),
        Some((available, true)) => StoreError::InsufficientStock { product_id, requested: units, available },
    })
}

/// Completes the idempotency key with the order's answer; the key must
/// still be this request's.
async fn complete_key(db: &mut SqliteConnection, key: &str, detail: &OrderDetail) -> Result<(), StoreError> {
    let completed = sqlx::query(COMPLETE_KEY).bind(answer(detail)?).bind(detail.id).bind(key).execute(&mut *db).await?;
    if completed.rows_affected() == 0 {
        return Err(StoreError::KeyLost);
    }
    Ok(())
}
