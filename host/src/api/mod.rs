//! The HTTP API: one router per domain, merged here, every answer either
//! JSON or an RFC 9457 problem.

pub mod admin;
pub mod auth;
pub mod correlation;
pub mod deadline;
pub mod documented;
pub mod events;
pub mod extract;
pub mod health;
pub mod openapi;
pub mod order_shapes;
pub mod orders;
pub mod page;
pub mod problem;
pub mod products;
pub mod serve;
pub mod slots;
pub mod state;
pub mod versions;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::Response;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use problem::{ApiError, Problem, problem_response};
pub use state::ApiState;

/// Limits on every request.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How long a request may run before it is stopped (event streams excepted).
    pub request_timeout: Duration,
}

/// The public API: products, orders and their events, health, and its
/// OpenAPI 3.1 document, built together. Everything under `/api/v1` but the
/// document itself needs a bearer token.
pub fn router(state: ApiState, limits: HttpLimits) -> Router {
    let bounded = products::router().merge(orders::router());
    let routes = within_time_limit(bounded, limits).merge(events::router());
    served(OpenApiRouter::with_openapi(openapi::ApiDoc::openapi()), routes, state, limits)
}

/// The admin API, for its own listener (never the public one): the queue,
/// dead letters, slots and versions, health, and its own OpenAPI document.
/// Every admin route needs the `admin` scope.
pub fn admin_router(state: ApiState, limits: HttpLimits) -> Router {
    let routes = within_time_limit(admin::router().merge(slots::router()).merge(versions::router()), limits);
    served(OpenApiRouter::with_openapi(openapi::AdminDoc::openapi()), routes, state, limits)
}

/// `routes`, each stopped at the request time limit.
fn within_time_limit(routes: OpenApiRouter<ApiState>, limits: HttpLimits) -> OpenApiRouter<ApiState> {
    routes.layer(axum::middleware::from_fn_with_state(limits.request_timeout, deadline::middleware))
}

/// `routes` under `/api/v1`, authenticated, beside health and the document
/// they make, with what every answer shares: problems for unknown routes and
/// methods, the body cap, a panic caught as a 500, the correlation id.
fn served(
    frame: OpenApiRouter<ApiState>,
    routes: OpenApiRouter<ApiState>,
    state: ApiState,
    limits: HttpLimits,
) -> Router {
    let authenticated =
        routes.layer(axum::middleware::from_fn_with_state(state.credentials.clone(), auth::authenticate));
    let (api, document) = frame.nest("/api/v1", authenticated).merge(health::router()).split_for_parts();
    // Rendered once; each request shares the bytes.
    let document = axum::body::Bytes::from(openapi::render(document));
    api.route(
        "/api/v1/openapi.json",
        axum::routing::get(move || {
            let document = document.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], document) }
        }),
    )
    .fallback(not_found)
    .method_not_allowed_fallback(method_not_allowed)
    .with_state(state)
    .layer(DefaultBodyLimit::max(limits.max_body_bytes))
    .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
    .layer(axum::middleware::from_fn(correlation::middleware))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A handler that panicked: a 500 problem (the task is gone; the service is not).
fn panicked(cause: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let cause = cause
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| cause.downcast_ref::<&str>().map(|text| text.to_string()))
        .unwrap_or_else(|| "unknown panic".into());
    let problem = Problem {
        kind: "urn:orderly:problem:internal-error".into(),
        title: "Internal error".into(),
        status: 500,
        detail: "an unexpected error occurred; it has been logged".into(),
        correlation_id: problem::correlation_id().to_string(),
        extensions: Default::default(),
    };
    problem_response(StatusCode::INTERNAL_SERVER_ERROR, &problem, Some(format!("panic: {cause}")))
}
