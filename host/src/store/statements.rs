//! What every writer of an order shares: the outbox topics, the events it
//! announces, the history and outbox inserts, and numbered placeholders.

use serde_json::json;

use crate::domain::OrderStatus;
pub(crate) use crate::domain::now;

/// The outbox topic of fulfillment jobs (relayed to the `fulfillment_queue` list).
pub const FULFILLMENT_TOPIC: &str = "fulfillment";
/// The outbox topic of order events (relayed to the `order_events` stream).
pub const EVENTS_TOPIC: &str = "order_events";

pub(super) fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let cells: Vec<String> = (1..=columns).map(|column| format!("${}", row * columns + column)).collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An `OrderCreated` or `OrderStatusChanged` event.
/// `version` is the order's version after the change, so a client can tell
/// which events a snapshot already includes; `user_id`, so a customer's
/// feed carries only its own orders' events.
pub(super) fn order_event(
    order_id: i64,
    user_id: i64,
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
        "user_id": user_id,
        "version": version,
        "from": from,
        "to": to,
        "reason": reason,
        "correlation_id": correlation_id,
        "timestamp": now().to_rfc3339(),
    })
    .to_string()
}

pub(super) const INSERT_HISTORY: &str = "INSERT INTO order_status_history \
     (order_id, from_status, to_status, reason, correlation_id, changed_at) VALUES ($1, $2, $3, $4, $5, $6)";

pub(super) const INSERT_OUTBOX: &str =
    "INSERT INTO outbox (topic, payload, correlation_id, created_at, order_id) VALUES ";

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_number_rows_then_columns() {
        assert_eq!(placeholders(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(1, 1), "($1)");
    }
}
