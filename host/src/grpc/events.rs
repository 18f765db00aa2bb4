//! Order events as the proto's `OrderEvent`: parsed from the event's JSON
//! (what the outbox and the `order_events` stream carry).

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::convert::{status, timestamp};
use super::proto::order_event::Type;
use super::proto::{OrderEvent, OrderStatus as WireStatus};
use crate::domain::OrderStatus;
use crate::orders::{Snapshot, Watched};

/// The event's JSON, as the store writes it.
#[derive(Deserialize)]
struct Body {
    #[serde(rename = "type")]
    kind: String,
    event_id: String,
    order_id: i64,
    version: i64,
    from: Option<OrderStatus>,
    to: OrderStatus,
    reason: Option<String>,
    correlation_id: String,
    timestamp: DateTime<Utc>,
}

/// The first message of `WatchOrder`: the order's state when it began.
pub fn state(snapshot: Snapshot) -> OrderEvent {
    OrderEvent {
        r#type: Type::State.into(),
        order_id: snapshot.order_id,
        version: snapshot.version,
        to: status(snapshot.status).into(),
        ..OrderEvent::default()
    }
}

/// An event for a watcher; `None` for one that cannot be read (logged).
pub fn event(watched: Watched) -> Option<OrderEvent> {
    let event = match watched {
        Watched::Lagged(missed) => {
            return Some(OrderEvent { r#type: Type::Lagged.into(), missed, ..OrderEvent::default() });
        }
        Watched::Event(event) => event,
    };
    let body: Body = match serde_json::from_str(&event.json) {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(target: "grpc", event = %event.id, %error, "an order event cannot be read; skipped");
            return None;
        }
    };
    let kind = if body.kind == "OrderCreated" { Type::Created } else { Type::StatusChanged };
    Some(OrderEvent {
        r#type: kind.into(),
        event_id: body.event_id,
        order_id: body.order_id,
        version: body.version,
        from: body.from.map(status).unwrap_or(WireStatus::Unspecified).into(),
        to: status(body.to).into(),
        reason: body.reason,
        correlation_id: body.correlation_id,
        at: timestamp(body.timestamp),
        missed: 0,
    })
}
