//! One error type for the API, answered as RFC 9457 `application/problem+json`
//! with the request's correlation id. 5xx answers never carry internals: the
//! cause goes to the log (once, in the request middleware) instead.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::auth::{AccessError, TokenError};
use crate::domain::OrderStatus;
use crate::domain::input::Violation;
use crate::fulfillment::QueueError;
use crate::orders::OrderError;
use crate::rules::swap::GateReport;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The protection space named in `WWW-Authenticate` challenges.
const REALM: &str = "orderly";

tokio::task_local! {
    /// The correlation id of the request being served.
    pub static CORRELATION_ID: std::sync::Arc<str>;
}

/// The current request's correlation id (empty outside a request).
pub fn correlation_id() -> std::sync::Arc<str> {
    CORRELATION_ID.try_with(|id| id.clone()).unwrap_or_else(|_| "".into())
}

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request could not be read (bad JSON syntax, bad query or path).
    #[error("{detail}")]
    BadRequest { detail: String },
    /// 413: the body is larger than the configured cap.
    #[error("{detail}")]
    TooLarge { detail: String },
    /// 415: the body is not `application/json`.
    #[error("{detail}")]
    UnsupportedMediaType { detail: String },
    /// 422: well-formed JSON of the wrong shape or types.
    #[error("{detail}")]
    Unprocessable { detail: String },
    /// 422: the request breaks rules (the edge's or the validation component's).
    #[error("the order breaks {} rule(s)", violations.len())]
    Violations { detail: String, violations: Vec<Violation> },
    /// 422: an uploaded component the gate refused; the report says why.
    #[error("the gate rejected the component: {}", report.reason.as_deref().unwrap_or("see the report"))]
    ComponentRejected { report: Box<GateReport> },
    /// 422: an `Idempotency-Key` reused with another request body.
    #[error("the idempotency key was already used with a different request body")]
    KeyReused,
    /// 401: no bearer token, or one that does not verify.
    #[error("{0}")]
    Unauthenticated(TokenError),
    /// 403: the caller's token does not cover the request.
    #[error("{0}")]
    Forbidden(AccessError),
    /// 404.
    #[error("{detail}")]
    NotFound { detail: String },
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: not enough stock.
    #[error("{detail}")]
    InsufficientStock { detail: String, product_id: i64, requested: i64, available: i64 },
    /// 409: the state machine forbids the change.
    #[error("{detail}")]
    IllegalTransition { detail: String, current: OrderStatus, requested: OrderStatus },
    /// 409: anything else that conflicts with the current state.
    #[error("{detail}")]
    Conflict { detail: String },
    /// 409: a request with the same `Idempotency-Key` is still being
    /// placed (or its process died, and the key is free again once its
    /// time limit has passed); worth retrying, unlike other conflicts.
    #[error("{detail}")]
    KeyInProgress { detail: String },
    /// 429: the caller holds as many of something as it may at once (live
    /// streams, keyed orders being placed), or the service does.
    #[error("{detail}")]
    TooMany { detail: String },
    /// 503: a component failed (trap, deadline, memory, malformed output) or
    /// its slot is empty. The kind is logged, not answered.
    #[error("{slot} component failed: {cause}")]
    Component { slot: &'static str, cause: String },
    /// 503: a server the service depends on is down.
    #[error("{cause}")]
    Unavailable { cause: String },
    /// 503: the request did not finish within the server's time limit; what
    /// it was doing was stopped (an order it was placing is not stored, or,
    /// if it committed just then, its `Idempotency-Key` replays it).
    #[error("the request did not finish within {limit_ms} ms")]
    Timeout { limit_ms: u64 },
    /// 500: a bug. The cause is logged, not answered.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The problem body (RFC 9457) plus our extensions.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// The request's correlation id: quote it when reporting a problem.
    pub correlation_id: String,
    /// Further members, such as `violations` or `current_status`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: Map<String, Value>,
}

/// The cause of a 5xx, attached to the response for the request log.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub String);

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad-request", "The request could not be read"),
            TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", "The request body is too large"),
            UnsupportedMediaType { .. } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "The body must be JSON")
            }
            Unprocessable { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid-body", "The body has the wrong shape or types")
            }
            Violations { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "validation-failed", "The request breaks rules"),
            ComponentRejected { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "component-rejected", "The component did not pass the gate")
            }
            KeyReused => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused", "The idempotency key was used before")
            }
            Unauthenticated(TokenError::Missing) => {
                (StatusCode::UNAUTHORIZED, "unauthorized", "Authentication required")
            }
            Unauthenticated(TokenError::Invalid(_)) => {
                (StatusCode::UNAUTHORIZED, "invalid-token", "The access token is not valid")
            }
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Not allowed"),
            NotFound { .. } => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed"),
            InsufficientStock { .. } => (StatusCode::CONFLICT, "insufficient-stock", "Not enough stock"),
            IllegalTransition { .. } => {
                (StatusCode::CONFLICT, "illegal-transition", "The order cannot move to that state")
            }
            Conflict { .. } => (StatusCode::CONFLICT, "conflict", "Conflict with the current state"),
            KeyInProgress { .. } => {
                (StatusCode::CONFLICT, "idempotency-key-in-progress", "The same request is still being placed")
            }
            TooMany { .. } => (StatusCode::TOO_MANY_REQUESTS, "too-many", "Too many at once"),
            Component { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "rule-unavailable", "A business rule could not be applied")
            }
            Unavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "service-unavailable", "The service is temporarily unavailable")
            }
            Timeout { .. } => (StatusCode::SERVICE_UNAVAILABLE, "request-timeout", "The request took too long"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal-error", "Internal error"),
        }
    }

    /// The detail shown to the client: the error's own text for 4xx, a
    /// fixed sentence for 5xx.
    fn public_detail(&self) -> String {
        match self {
            ApiError::Component { slot, .. } => {
                format!("the {slot} rule failed; nothing was stored, try again later")
            }
            ApiError::Unavailable { .. } => "a backing service is unavailable; try again later".into(),
            ApiError::Timeout { limit_ms } => {
                format!(
                    "the request did not finish within {limit_ms} ms and was stopped; retry (with the same Idempotency-Key for an order)"
                )
            }
            ApiError::Internal(_) => "an unexpected error occurred; it has been logged".into(),
            ApiError::Violations { detail, .. } => detail.clone(),
            other => other.to_string(),
        }
    }

    fn extensions(&self) -> Map<String, Value> {
        let mut extensions = Map::new();
        match self {
            ApiError::Violations { violations, .. } => {
                extensions.insert("violations".into(), serde_json::to_value(violations).unwrap_or_default());
            }
            ApiError::ComponentRejected { report } => {
                extensions.insert("outcome".into(), "rejected".into());
                extensions.insert("report".into(), serde_json::to_value(report).unwrap_or_default());
            }
            ApiError::InsufficientStock { product_id, requested, available, .. } => {
                extensions.insert("product_id".into(), (*product_id).into());
                extensions.insert("requested".into(), (*requested).into());
                extensions.insert("available".into(), (*available).into());
            }
            ApiError::Forbidden(AccessError::MissingScope(scope)) => {
                extensions.insert("required_scope".into(), scope.name().into());
            }
            ApiError::IllegalTransition { current, requested, .. } => {
                extensions.insert("current_status".into(), current.as_str().into());
                extensions.insert("requested_status".into(), requested.as_str().into());
                let allowed: Vec<&str> = current.successors_by_hand().iter().map(|status| status.as_str()).collect();
                extensions.insert("allowed".into(), allowed.into());
            }
            _ => {}
        }
        extensions
    }

    /// The `WWW-Authenticate` challenge of a 401 or a missing scope (RFC
    /// 6750 §3): no error code when no token came, `invalid_token` with the
    /// reason when one did not verify, `insufficient_scope` with the scope.
    fn challenge(&self) -> Option<HeaderValue> {
        let challenge = match self {
            ApiError::Unauthenticated(TokenError::Missing) => format!("Bearer realm=\"{REALM}\""),
            ApiError::Unauthenticated(refused @ TokenError::Invalid(_)) => {
                format!("Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{refused}\"")
            }
            ApiError::Forbidden(AccessError::MissingScope(scope)) => {
                format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{scope}\"")
            }
            _ => return None,
        };
        HeaderValue::from_str(&challenge).ok()
    }

    /// A 422 for violations found at the API edge.
    pub fn violations(violations: Vec<Violation>) -> Self {
        let detail = violations.iter().map(|v| v.message.as_str()).collect::<Vec<_>>().join("; ");
        ApiError::Violations { detail, violations }
    }

    /// A 404 for `what`.
    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::NotFound { detail: what.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.parts();
        let problem = Problem {
            kind: format!("urn:orderly:problem:{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail: self.public_detail(),
            correlation_id: correlation_id().to_string(),
            extensions: self.extensions(),
        };
        let mut response = problem_response(status, &problem, status.is_server_error().then(|| self.to_string()));
        if let Some(challenge) = self.challenge() {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        let retry = matches!(self, ApiError::KeyInProgress { .. } | ApiError::TooMany { .. });
        if status == StatusCode::SERVICE_UNAVAILABLE || retry {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(crate::orders::RETRY_AFTER_SECONDS));
        }
        response
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        match error {
            QueueError::Store(store) => OrderError::from(store).into(),
            other => ApiError::Unavailable { cause: format!("queue: {other}") },
        }
    }
}

/// Renders a problem; `cause` (for 5xx) rides along for the request log.
pub fn problem_response(status: StatusCode, problem: &Problem, cause: Option<String>) -> Response {
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    if let Some(cause) = cause {
        response.extensions_mut().insert(ErrorCause(cause));
    }
    response
}

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        let detail = error.to_string();
        match error {
            OrderError::Invalid(violations) => ApiError::violations(violations),
            OrderError::Forbidden(refused) => ApiError::Forbidden(refused),
            OrderError::Exhausted(_) => ApiError::TooMany { detail },
            OrderError::NotFound { .. } => ApiError::NotFound { detail },
            OrderError::Inactive(_) | OrderError::Duplicate(_) | OrderError::KeyLost => ApiError::Conflict { detail },
            OrderError::KeyInProgress => ApiError::KeyInProgress { detail },
            OrderError::InsufficientStock { product_id, requested, available } => {
                ApiError::InsufficientStock { detail, product_id, requested, available }
            }
            OrderError::IllegalTransition { current, requested } => {
                ApiError::IllegalTransition { detail, current, requested }
            }
            OrderError::KeyReused => ApiError::KeyReused,
            OrderError::Rule { slot, cause } => ApiError::Component { slot: slot.name(), cause },
            OrderError::Down(cause) => ApiError::Unavailable { cause },
            OrderError::TimedOut { limit } => ApiError::Timeout { limit_ms: limit.as_millis() as u64 },
            OrderError::Internal(error) => ApiError::Internal(error),
        }
    }
}
