//! The `validation` slot's default component.
//!
//! Rules, each reported as a violation so a customer sees every problem at once:
//! - at least one line, at most `max_lines` (default 100);
//! - every quantity in `1..=max_quantity` (default 1000);
//! - each product on one line only: two lines for the same product are
//!   rejected rather than merged, because silently merging would change what
//!   the customer asked for (a client can merge before sending);
//! - the currency is three upper-case ASCII letters;
//! - optionally, at most `orders_per_minute` orders per user, counted in the
//!   `kv` capability;
//! - optionally, at most `max_open_orders` orders per user that are not yet
//!   shipped (pending, processing or on hold), counted with the `sql`
//!   capability in the `open_orders` view (the only relation it is granted).
//!
//! If a counter cannot be read the order is let through and a warning logged:
//! an outage of a limiter must not stop sales.

pub mod rules;

/// Generated from `wit/`: the `order-validator` world.
// Generated code: its shape is wit-bindgen's, not ours.
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({ world: "order-validator", path: "../../wit", generate_all });
}

use bindings::orderly::platform::{config, kv, logging, sql};
use bindings::orderly::rules::types::{Order, Violation};

struct OrderValidation;

impl bindings::Guest for OrderValidation {
    fn validate(order: Order) -> Vec<Violation> {
        let settings = rules::Settings::from_lookup(config::get).unwrap_or_else(|error| panic!("{error}"));
        let mut violations = rules::violations(&order, &settings);
        if let Some(limit) = settings.orders_per_minute
            && violations.is_empty()
        {
            violations.extend(rate_limit(&order, limit));
        }
        if let Some(limit) = settings.max_open_orders
            && violations.is_empty()
        {
            violations.extend(open_order_limit(&order, limit));
        }
        violations
    }
}

/// Counts the user's orders in the current minute.
fn rate_limit(order: &Order, limit: i64) -> Option<Violation> {
    let minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() / 60)
        .unwrap_or_default();
    let key = format!("orders-per-minute:{}:{minute}", order.user_id);
    match kv::incr(&key, 1, Some(120)) {
        Ok(count) if count > limit => Some(Violation {
            code: "rate-limited".into(),
            field: "user_id".into(),
            message: format!("at most {limit} orders per minute per user"),
        }),
        Ok(_) => None,
        Err(error) => skipped("order rate limit", error),
    }
}

/// Counts the user's orders that are not yet shipped.
fn open_order_limit(order: &Order, limit: i64) -> Option<Violation> {
    let statement = "SELECT count(*) FROM open_orders WHERE user_id = $1";
    let user = i64::try_from(order.user_id).unwrap_or(i64::MAX);
    match sql::query(statement, &[sql::Value::Integer(user)]) {
        Ok(rows) => match rows.values.first().and_then(|row| row.first()) {
            Some(sql::Value::Integer(open)) if *open >= limit => Some(Violation {
                code: "too-many-open-orders".into(),
                field: "user_id".into(),
                message: format!("at most {limit} open orders per user; wait until one ships"),
            }),
            Some(sql::Value::Integer(_)) => None,
            other => skipped("open-order limit", format!("unexpected answer {other:?}")),
        },
        Err(error) => skipped("open-order limit", error),
    }
}

fn skipped(rule: &str, error: impl std::fmt::Debug) -> Option<Violation> {
    logging::log(
        logging::Level::Warn,
        &format!("{rule} skipped: counter unavailable"),
        &[logging::Field { key: "error".into(), value: format!("{error:?}") }],
    );
    None
}

bindings::export!(OrderValidation with_types_in bindings);
