//! Placing an order on PostgreSQL in one statement.
//!
//! The stepwise transaction (SQLite's) costs a round trip per statement,
//! about ten per order, and every round trip is two context switches on a
//! machine the database shares with the service. Here the order id comes
//! first (`nextval`), then one statement of data-modifying CTEs takes the
//! stock and writes the order, its lines, its component record, its history
//! and its outbox rows. A statement is atomic: if any part fails, nothing is
//! written. Overselling is refused by the `stock >= 0` CHECK (an inactive
//! product is driven to -1 to hit the same check). The product rows are
//! locked first, in id order (`ORDER BY id FOR UPDATE`: rows are locked as
//! they leave the sort), and updated only through that lock, so concurrent
//! orders take them in one order and cannot deadlock; a deadlock with some
//! other statement is retried. With an idempotency key the statement also
//! completes the key, inside a transaction that is rolled back if the key
//! was lost.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::QueryAs;

use super::{NewOrder, answer};
use crate::domain::{Job, OrderDetail, OrderStatus};
use crate::store::StoreError;
use crate::store::statements::{EVENTS_TOPIC, FULFILLMENT_TOPIC, order_event};

const CREATE: &str = r#"
WITH locked AS (
    SELECT p.id FROM products p WHERE p.id = ANY($1::bigint[]) ORDER BY p.id FOR UPDATE
), taken AS (
    UPDATE products p
       SET stock = CASE WHEN p.active THEN p.stock - w.units ELSE -1 END, updated_at = $3
      FROM unnest($1::bigint[], $2::bigint[]) AS w(product_id, units), locked l
     WHERE p.id = ANY($1::bigint[]) AND p.id = w.product_id AND l.id = w.product_id
 RETURNING p.id
), placed AS (
    INSERT INTO orders (id, user_id, status, currency, subtotal, discount, tax, shipping, total, notes, attributes,
                        version, validated_by, priced_by, created_at, updated_at)
    VALUES ($4, $5, 'pending', $6, $7, $8, $9, $10, $11, $12, $13, 1, $14, $15, $3, $3)
), lines AS (
    INSERT INTO order_items (order_id, line_no, product_id, sku, product_name, unit_price, quantity, line_total)
    SELECT $4, line.* FROM unnest($16::int[], $17::bigint[], $18::text[], $19::text[], $20::bigint[], $21::int[],
                                  $22::bigint[]) AS line
), decided AS (
    INSERT INTO order_decisions (order_id, slot, component, version, digest, duration_us, decided_at)
    SELECT $4, record.* FROM unnest($23::text[], $24::text[], $25::text[], $26::text[], $27::bigint[],
                                    $28::timestamptz[]) AS record
), history AS (
    INSERT INTO order_status_history (order_id, from_status, to_status, reason, correlation_id, changed_at)
    VALUES ($4, NULL, 'pending', NULL, $29, $3)
), announced AS (
    INSERT INTO outbox (topic, payload, correlation_id, created_at, order_id)
    VALUES ($30, $31, $29, $3, $4), ($32, $33, $29, $3, $4)
), completed AS (
    UPDATE idempotency_keys SET state = 'completed', response_status = 201, response_body = $34, order_id = $4
     WHERE key = $35 AND state = 'in_progress'
 RETURNING 1
)
SELECT (SELECT count(*) FROM taken), (SELECT count(*) FROM completed)
"#;

/// The statement, its parameters bound.
type Create<'q> = QueryAs<'q, Postgres, (i64, i64), PgArguments>;

/// Stores `order` (see the module's description).
pub(super) async fn create(pool: &PgPool, order: &NewOrder, at: DateTime<Utc>) -> Result<OrderDetail, StoreError> {
    let id: i64 = sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('orders', 'id'))").fetch_one(pool).await?;
    let detail = order.detail(id, at);
    let parameters = Parameters::of(order, &detail, at)?;
    // A refusal whose cause is gone by the time it is looked into (stock
    // came back), or a deadlock with a concurrent statement, is tried again.
    let mut tries = 0;
    loop {
        tries += 1;
        let error = match run(pool, parameters.bind(sqlx::query_as(CREATE)), order.idempotency_key.is_some()).await {
            Ok(taken) if taken == parameters.products.len() as i64 => return Ok(detail),
            Ok(_) => return Err(StoreError::Corrupt("the stock of some ordered product was not taken".into())),
            Err(Failure::KeyLost) => return Err(StoreError::KeyLost),
            Err(Failure::Refused(error)) => error,
        };
        match explain(pool, &parameters.wanted, error).await {
            Refusal::Known(error) => return Err(error),
            Refusal::Transient(error) if tries >= 3 => return Err(error.into()),
            Refusal::Transient(_) => continue,
        }
    }
}

/// Why the statement stored nothing.
enum Failure {
    /// The idempotency key was not this request's any more.
    KeyLost,
    /// The database refused it.
    Refused(sqlx::Error),
}

/// Runs the statement (in a transaction of its own when it completes a key,
/// so that a lost key undoes it); how many products' stock it took.
async fn run(pool: &PgPool, create: Create<'_>, keyed: bool) -> Result<i64, Failure> {
    if !keyed {
        return create.fetch_one(pool).await.map(|(taken, _)| taken).map_err(Failure::Refused);
    }
    let mut tx = pool.begin().await.map_err(Failure::Refused)?;
    let (taken, completed) = create.fetch_one(&mut *tx).await.map_err(Failure::Refused)?;
    if completed == 0 {
        return Err(Failure::KeyLost);
    }
    tx.commit().await.map_err(Failure::Refused)?;
    Ok(taken)
}

/// Every value of the statement, grouped as its parts use them.
struct Parameters<'a> {
    order: &'a NewOrder,
    wanted: BTreeMap<i64, i64>,
    /// `$1`, `$2`: units per product, in id order.
    products: Vec<i64>,
    units: Vec<i64>,
    /// `$3`, `$4`.
    at: DateTime<Utc>,
    id: i64,
    /// `$12`, `$13`: JSON text.
    notes: String,
    attributes: String,
    /// `$30`..`$33`: the fulfillment job and the `OrderCreated` event.
    job: String,
    event: String,
    /// `$34`: the answer a key is completed with.
    answer: Option<String>,
}

impl<'a> Parameters<'a> {
    fn of(order: &'a NewOrder, detail: &OrderDetail, at: DateTime<Utc>) -> Result<Self, StoreError> {
        let wanted = order.units_by_product();
        let (products, units) = wanted.iter().map(|(product, units)| (*product, *units)).unzip();
        let (notes, attributes) = order.json_columns()?;
        Ok(Self {
            order,
            wanted,
            products,
            units,
            at,
            id: detail.id,
            notes,
            attributes,
            job: Job::for_order(detail, &order.correlation_id).to_json(),
            event: order_event(detail.id, detail.user_id, 1, None, OrderStatus::Pending, None, &order.correlation_id),
            answer: order.idempotency_key.as_ref().map(|_| answer(detail)).transpose()?,
        })
    }

    fn bind<'q>(&'q self, create: Create<'q>) -> Create<'q> {
        let create = create.bind(&self.products).bind(&self.units).bind(self.at).bind(self.id);
        let create = self.bind_order(create);
        let create = self.bind_lines(create);
        let create = self.bind_decisions(create);
        self.bind_announcements(create)
    }

    /// `$5`..`$15`: the order row.
    fn bind_order<'q>(&'q self, create: Create<'q>) -> Create<'q> {
        let order = self.order;
        create
            .bind(order.user_id)
            .bind(&order.currency)
            .bind(order.subtotal)
            .bind(order.discount)
            .bind(order.tax)
            .bind(order.shipping)
            .bind(order.total)
            .bind(&self.notes)
            .bind(&self.attributes)
            .bind(order.decided_by("validation"))
            .bind(order.decided_by("pricing"))
    }

    /// `$16`..`$22`: the lines, a column each.
    fn bind_lines<'q>(&'q self, create: Create<'q>) -> Create<'q> {
        let lines = &self.order.lines;
        let column = |value: fn(&super::PricedLine) -> i64| lines.iter().map(value).collect::<Vec<_>>();
        create
            .bind((0..lines.len() as i32).collect::<Vec<_>>())
            .bind(column(|line| line.product_id))
            .bind(lines.iter().map(|line| line.sku.clone()).collect::<Vec<_>>())
            .bind(lines.iter().map(|line| line.name.clone()).collect::<Vec<_>>())
            .bind(column(|line| line.unit_price))
            .bind(lines.iter().map(|line| line.quantity).collect::<Vec<_>>())
            .bind(column(|line| line.line_total))
    }

    /// `$23`..`$28`: the component records, a column each.
    fn bind_decisions<'q>(&'q self, create: Create<'q>) -> Create<'q> {
        let records = &self.order.components;
        let text = |value: fn(&crate::domain::ComponentRecord) -> &String| {
            records.iter().map(|record| value(record).clone()).collect::<Vec<_>>()
        };
        create
            .bind(text(|record| &record.slot))
            .bind(text(|record| &record.component))
            .bind(text(|record| &record.version))
            .bind(text(|record| &record.digest))
            .bind(records.iter().map(|record| record.duration_us).collect::<Vec<_>>())
            .bind(records.iter().map(|record| record.at).collect::<Vec<_>>())
    }

    /// `$29`..`$35`: the correlation id, the outbox rows and the key.
    fn bind_announcements<'q>(&'q self, create: Create<'q>) -> Create<'q> {
        create
            .bind(&self.order.correlation_id)
            .bind(FULFILLMENT_TOPIC)
            .bind(&self.job)
            .bind(EVENTS_TOPIC)
            .bind(&self.event)
            .bind(self.answer.as_deref())
            .bind(self.order.idempotency_key.as_deref())
    }
}

/// What a refused statement means.
enum Refusal {
    /// A product is missing, inactive or short of stock, or the database failed.
    Known(StoreError),
    /// Worth another try: a deadlock, or a refusal whose cause is gone.
    Transient(sqlx::Error),
}

/// Turns a refused statement into what went wrong: a product missing,
/// inactive or short of stock (read after the fact), or the database's error.
async fn explain(pool: &PgPool, wanted: &BTreeMap<i64, i64>, error: sqlx::Error) -> Refusal {
    let code = match &error {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    };
    // 23514 check_violation (stock), 23503 foreign_key_violation (a product
    // that does not exist), 40P01 deadlock_detected.
    match code.as_deref() {
        Some("40P01") => return Refusal::Transient(error),
        Some("23514" | "23503") => {}
        _ => return Refusal::Known(error.into()),
    }
    let ids: Vec<i64> = wanted.keys().copied().collect();
    let found: Result<Vec<(i64, i64, bool)>, _> =
        sqlx::query_as("SELECT id, stock, active FROM products WHERE id = ANY($1)").bind(&ids).fetch_all(pool).await;
    let Ok(found) = found else { return Refusal::Known(error.into()) };
    for (&product_id, &requested) in wanted {
        match found.iter().find(|(id, ..)| *id == product_id) {
            None => return Refusal::Known(StoreError::UnknownProduct(product_id)),
            Some((_, _, false)) => return Refusal::Known(StoreError::InactiveProduct(product_id)),
            Some((_, available, true)) if *available < requested => {
                return Refusal::Known(StoreError::InsufficientStock { product_id, requested, available: *available });
            }
            Some(_) => {}
        }
    }
    Refusal::Transient(error)
}
