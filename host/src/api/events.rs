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

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::OrderCaller;
use super::documented::{ScopeProblems, TooMany};
use super::extract::{ApiPath, PathId};
use super::problem::{Problem, Result};
use super::state::ApiState;
use crate::orders::Watched;

/// One server-sent event as it arrives (for the document).
#[derive(ToSchema)]
#[allow(dead_code)]
struct StreamedEvent {
    /// `OrderState`, `OrderCreated`, `OrderStatusChanged`, or `Lagged`.
    #[schema(inline)]
    event: EventName,
    /// The event as JSON: the order's id, its status and version, and for a
    /// change where it came from, why, and the correlation id; for `Lagged`,
    /// how many events were missed.
    #[schema(content_media_type = "application/json")]
    data: String,
    /// The event's id (absent on `OrderState` and `Lagged`).
    id: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
enum EventName {
    OrderState,
    OrderCreated,
    OrderStatusChanged,
    Lagged,
}

/// The event routes.
pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(order_events)).routes(routes!(all_events))
}

fn sse_event(watched: Watched) -> Event {
    match watched {
        Watched::Event(event) => Event::default().event(&event.kind).id(&event.id).data(&*event.json),
        Watched::Lagged(missed) => Event::default().event("Lagged").data(json!({"missed": missed}).to_string()),
    }
}

/// An order's status changes as server-sent events: first `OrderState`
/// (its status now), then `OrderStatusChanged` for every change.
#[utoipa::path(get, path = "/orders/{id}/events", tag = "orders", params(super::orders::OrderId),
    security(("bearer" = ["orders"]), ("bearer" = ["orders:all"])),
    responses(
        (status = 200, description = "An event stream (`text/event-stream`)", body = StreamedEvent, content_type = "text/event-stream"),
        (status = 400, description = "The id is not a 64-bit integer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order, or another user's", body = Problem, content_type = "application/problem+json"),
        ScopeProblems,
        TooMany,
        (status = 503, description = "The database is down", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
async fn order_events(
    OrderCaller { caller, .. }: OrderCaller,
    State(api): State<ApiState>,
    ApiPath(PathId(id)): ApiPath<PathId>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let (snapshot, changes) = api.orders.watch(id, &caller.0).await?;
    let snapshot = json!({"order_id": id, "status": snapshot.status, "version": snapshot.version});
    let state = Event::default().event("OrderState").data(snapshot.to_string());
    let changes = changes.map(sse_event).take_until(api.stopping.clone().cancelled_owned());
    let stream = futures::stream::once(async move { state }).chain(changes).map(Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Every order's events as server-sent events: `OrderCreated` and
/// `OrderStatusChanged`, from the moment of connecting; for a customer's
/// token, its own orders' only.
#[utoipa::path(get, path = "/events", tag = "orders", security(("bearer" = ["orders"]), ("bearer" = ["orders:all"])),
    responses(
        (status = 200, description = "An event stream (`text/event-stream`)", body = StreamedEvent, content_type = "text/event-stream"),
        ScopeProblems,
        TooMany,
    ))]
async fn all_events(
    OrderCaller { caller, .. }: OrderCaller,
    State(api): State<ApiState>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let events = api.orders.watch_all(&caller.0)?.map(sse_event).take_until(api.stopping.clone().cancelled_owned());
    Ok(Sse::new(events.map(Ok)).keep_alive(KeepAlive::default()))
}
