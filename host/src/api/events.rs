//! Server-sent events: an order's status changes as they happen
//! (`/orders/{id}/events`), or every order's (`/events`).
//!
//! Each event is named by its type (`OrderCreated`, `OrderStatusChanged`)
//! and carries the event's JSON; a per-order stream opens with
//! `OrderState`, the order's status and version when the stream began, then
//! the changes after that version: nothing falls between reading the order
//! and subscribing, and nothing the snapshot includes comes again. A client too slow to keep up
//! gets `Lagged` with the number of events it missed.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiPath;
use super::problem::{ApiError, Problem, Result};
use crate::queue::events::OrderEvent;
use crate::service::Service;
use crate::store::StoreError;

/// The event routes.
pub fn router() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(order_events)).routes(routes!(all_events))
}

fn sse_event(event: &OrderEvent) -> Event {
    Event::default().event(&event.kind).id(&event.id).data(&*event.json)
}

/// Live events from `service`'s hub that pass `keep`, until the process stops.
fn live<F>(service: &Service, keep: F) -> impl Stream<Item = Event> + use<F>
where
    F: Fn(&OrderEvent) -> bool + Send + 'static,
{
    let receiver = service.events.subscribe();
    let stream = futures::stream::unfold((receiver, keep), |(mut receiver, keep)| async move {
        loop {
            match receiver.recv().await {
                Ok(event) if keep(&event) => return Some((sse_event(&event), (receiver, keep))),
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    let lagged = Event::default().event("Lagged").data(json!({"missed": missed}).to_string());
                    return Some((lagged, (receiver, keep)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    stream.take_until(service.stopping.clone().cancelled_owned())
}

/// An order's status changes as server-sent events: first `OrderState`
/// (its status now), then `OrderStatusChanged` for every change.
#[utoipa::path(get, path = "/orders/{id}/events", tag = "orders", params(super::orders::OrderId),
    responses(
        (status = 200, description = "An event stream (`text/event-stream`)", body = String, content_type = "text/event-stream"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
    ))]
async fn order_events(
    State(service): State<Arc<Service>>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    // Subscribed before reading the state, so no change can fall in between;
    // events the state already includes (relayed late) are left out.
    let since = Arc::new(std::sync::atomic::AtomicI64::new(i64::MAX));
    let changes = live(&service, {
        let since = since.clone();
        move |event| event.order_id == id && event.version > since.load(std::sync::atomic::Ordering::Relaxed)
    });
    let state = service.store.order_state(id).await.map_err(|error| match error {
        StoreError::NotFound => ApiError::not_found(format!("order {id} does not exist")),
        other => other.into(),
    })?;
    since.store(state.version, std::sync::atomic::Ordering::Relaxed);
    let snapshot = json!({"order_id": id, "status": state.status, "version": state.version});
    let state = Event::default().event("OrderState").data(snapshot.to_string());
    let stream = futures::stream::once(async move { state }).chain(changes).map(Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Every order's events as server-sent events: `OrderCreated` and
/// `OrderStatusChanged`, from the moment of connecting.
#[utoipa::path(get, path = "/events", tag = "orders",
    responses((status = 200, description = "An event stream (`text/event-stream`)", body = String, content_type = "text/event-stream")))]
async fn all_events(
    State(service): State<Arc<Service>>,
) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>>> {
    Sse::new(live(&service, |_| true).map(Ok)).keep_alive(KeepAlive::default())
}
