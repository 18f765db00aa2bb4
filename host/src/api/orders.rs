//! `/api/v1/orders`: placing, reading, listing and moving orders.

use axum::Extension;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{BackOffice, OrderCaller};
use super::documented::{BodyProblems, ScopeProblems, TooMany, Unavailable};
use super::extract::{ApiJson, ApiPath, ApiQuery, PathId};
use super::order_shapes::CreateOrder;
use super::page::{PageQuery, next_cursor};
use super::problem::{ApiError, Problem, Result, correlation_id};
use super::state::ApiState;
use crate::domain::input::{CreateOrderRequest, StatusChangeRequest};
use crate::domain::{OrderDetail, OrderStatus, OrderSummary};
use crate::orders::Deadline;
use crate::store::OrderFilter;

/// The order routes.
pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(create_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(change_status))
}

/// The header naming an idempotent request.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on an answer replayed for a repeated idempotent request.
pub const REPLAYED: &str = "idempotent-replayed";

/// A page of orders.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    /// The orders, newest first.
    pub items: Vec<OrderSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn created(body: Vec<u8>, id: i64, replayed: bool) -> Response {
    let mut response = (StatusCode::CREATED, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/orders/{id}")) {
        headers.insert(header::LOCATION, location);
    }
    if replayed {
        headers.insert(REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// The `Idempotency-Key` header, if sent: 1 to 255 visible ASCII characters.
/// Extracted before the body, so a bad key is a 400 whatever the body.
pub struct IdempotencyKey(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_KEY) else { return Ok(Self(None)) };
        let bytes = value.as_bytes();
        if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(u8::is_ascii_graphic) {
            return Err(ApiError::BadRequest {
                detail: "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
            });
        }
        Ok(Self(Some(String::from_utf8_lossy(bytes).into_owned())))
    }
}

/// Places an order. The business rules are the `validation` and `pricing`
/// components; stock is taken in the same transaction that stores the order.
/// With an `Idempotency-Key`, a repeat of the same request replays the first
/// answer (marked `Idempotent-Replayed: true`), and the key with another body is a 422.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = CreateOrder,
    security(("bearer" = ["orders"]), ("bearer" = ["orders:all"])),
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
        description = "Makes retries safe: the same key and body replay the first answer")),
    responses(
        (status = 201, description = "Placed: status `pending`", body = OrderDetail,
            headers(("Location" = String, description = "The order's address")),
            links(
                ("GetOrder" = (operation_id = "get_order", parameters(("id" = "$response.body#/id")))),
                ("ChangeStatus" = (operation_id = "change_status", parameters(("id" = "$response.body#/id")))),
                ("OrderEvents" = (operation_id = "order_events", parameters(("id" = "$response.body#/id")))),
            )),
        (status = 404, description = "An unknown product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not enough stock, an inactive product, or the same key still in progress", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong shape, rule violations (listed), or a reused idempotency key", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ScopeProblems,
        TooMany,
        (status = 503, description = "A rule component failed (nothing was stored), a backing service is down, or the request ran out of time", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
async fn create_order(
    OrderCaller { caller, access }: OrderCaller,
    State(api): State<ApiState>,
    IdempotencyKey(key): IdempotencyKey,
    Extension(deadline): Extension<Deadline>,
    ApiJson(request): ApiJson<CreateOrderRequest>,
) -> Result<Response> {
    let parsed = request.parse(api.orders.default_currency(), access.own_user()).map_err(ApiError::violations)?;
    let placed = api.orders.place(parsed, &caller.0, &correlation_id(), key, deadline).await?;
    Ok(created(placed.json.into_bytes(), placed.order.id, placed.replayed))
}

/// The order's id in a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
pub struct OrderId(
    /// The order's id.
    pub i64,
);

/// One order: lines, totals, status history and the components that decided it.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", params(OrderId),
    security(("bearer" = ["orders"]), ("bearer" = ["orders:all"])),
    responses(
        (status = 200, description = "The order", body = OrderDetail),
        (status = 400, description = "The id is not a 64-bit integer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order, or another user's", body = Problem, content_type = "application/problem+json"),
        ScopeProblems,
        Unavailable,
    ))]
async fn get_order(
    OrderCaller { access, .. }: OrderCaller,
    State(api): State<ApiState>,
    ApiPath(PathId(id)): ApiPath<PathId>,
) -> Result<Response> {
    let json = api.orders.order_json(id, access).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// `GET /orders` filters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// Only this customer's orders (a customer's token lists its own
    /// without it; naming another user is a 403).
    pub user_id: Option<i64>,
    /// Only orders in this state.
    #[param(value_type = Option<OrderStatus>)]
    pub status: Option<String>,
    /// Items per page (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    pub cursor: Option<String>,
}

/// Lists orders, newest first, a page at a time.
#[utoipa::path(get, path = "/orders", tag = "orders", params(OrderQuery),
    security(("bearer" = ["orders"]), ("bearer" = ["orders:all"])),
    responses(
        (status = 200, description = "A page", body = OrderPage),
        (status = 400, description = "A filter, limit or cursor out of its bounds", body = Problem, content_type = "application/problem+json"),
        ScopeProblems,
        Unavailable,
    ))]
async fn list_orders(
    OrderCaller { access, .. }: OrderCaller,
    State(api): State<ApiState>,
    ApiQuery(query): ApiQuery<OrderQuery>,
) -> Result<axum::Json<OrderPage>> {
    let page = PageQuery { limit: query.limit, cursor: query.cursor.clone() };
    let (limit, before) = page.resolve()?;
    let status = match query.status.as_deref() {
        None => None,
        Some(name) => Some(OrderStatus::parse(name).ok_or_else(|| ApiError::BadRequest {
            detail: format!(
                "unknown status {name:?}; one of pending, processing, on_hold, fulfilled, shipped, delivered, cancelled"
            ),
        })?),
    };
    let filter = OrderFilter { user_id: query.user_id, status, before, limit };
    let items = api.orders.list(&filter, access).await?;
    let next_cursor = next_cursor(&items, limit, |order| order.id);
    Ok(axum::Json(OrderPage { items, next_cursor }))
}

/// Moves an order along its lifecycle. Of two concurrent changes exactly one
/// wins; an illegal change is a 409 naming the order's current state and the
/// moves allowed from it. Cancelling returns the stock. Fulfillment's own
/// moves (`pending -> processing`, `processing -> fulfilled | on_hold`) are
/// refused: only a worker with the order's job makes them. Releasing a hold
/// (`on_hold -> processing`) queues a job for the order, so the fulfillment
/// policy serving then decides it again.
#[utoipa::path(patch, path = "/orders/{id}/status", tag = "orders", params(OrderId),
    request_body = StatusChangeRequest, security(("bearer" = ["orders:all"])),
    responses(
        (status = 200, description = "The order in its new state", body = OrderDetail),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Illegal transition from the current state (names it and what is allowed)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown status, or a field of the wrong type", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ScopeProblems,
        Unavailable,
    ))]
async fn change_status(
    _: BackOffice,
    State(api): State<ApiState>,
    ApiPath(PathId(id)): ApiPath<PathId>,
    ApiJson(request): ApiJson<StatusChangeRequest>,
) -> Result<axum::Json<OrderDetail>> {
    let order = api.orders.change_status(id, request.status, request.reason.as_deref(), &correlation_id()).await?;
    tracing::info!(order_id = id, status = %order.status, "order status changed");
    Ok(axum::Json(order))
}
