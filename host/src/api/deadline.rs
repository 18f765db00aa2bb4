//! The server-side time limit of a request: a handler still running when it
//! expires is stopped (its future dropped, so a transaction it held rolls
//! back) and the client gets a `request-timeout` problem. Event streams are
//! long-lived by design and are not under it.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::ApiError;
use crate::orders::Deadline;

/// Answers `request-timeout` if the rest of the stack takes longer than
/// `limit`; the deadline rides in the request's extensions for work that
/// runs on its own (a keyed order's placing) and must stop at it too.
pub async fn middleware(State(limit): State<Duration>, mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(Deadline::after(limit));
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout { limit_ms: limit.as_millis() as u64 }.into_response(),
    }
}
