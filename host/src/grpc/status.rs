//! The application's errors as gRPC statuses with `google.rpc` details:
//! INVALID_ARGUMENT with `BadRequest` field violations, NOT_FOUND with
//! `ResourceInfo`, FAILED_PRECONDITION with `PreconditionFailure`,
//! ALREADY_EXISTS / ABORTED for idempotency conflicts, UNAVAILABLE with
//! `RetryInfo` for a failing rule or backend. Every status carries an `ErrorInfo` whose reason
//! is the REST API's problem type, so both front ends name a problem alike;
//! server-side causes are logged, never sent.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::input::Violation;
use crate::orders::OrderError;

/// The `ErrorInfo` domain of every status.
pub const DOMAIN: &str = "orderly";

fn status(code: Code, message: impl Into<String>, reason: &str, mut details: ErrorDetails) -> Status {
    details.set_error_info(reason, DOMAIN, HashMap::new());
    Status::with_error_details(code, message, details)
}

/// INVALID_ARGUMENT, each violation a field violation (`code: message`).
pub fn invalid(violations: &[Violation]) -> Status {
    let mut details = ErrorDetails::new();
    for violation in violations {
        details.add_bad_request_violation(&violation.field, format!("{}: {}", violation.code, violation.message));
    }
    let message = violations.iter().map(|violation| violation.message.as_str()).collect::<Vec<_>>().join("; ");
    status(Code::InvalidArgument, message, "validation-failed", details)
}

/// INVALID_ARGUMENT for one field of the request.
pub fn bad_field(field: &str, description: impl Into<String>) -> Status {
    let description = description.into();
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation(field, &description);
    status(Code::InvalidArgument, description, "bad-request", details)
}

fn precondition(kind: &str, subject: String, message: String, reason: &str) -> Status {
    let mut details = ErrorDetails::new();
    details.add_precondition_failure_violation(kind, subject, &message);
    status(Code::FailedPrecondition, message, reason, details)
}

impl From<OrderError> for Status {
    fn from(error: OrderError) -> Self {
        let message = error.to_string();
        match error {
            OrderError::Forbidden(refused) => super::auth::permission_denied(&refused),
            OrderError::Exhausted(exhausted) => {
                let mut details = retry_later();
                let subject = if exhausted.scope == "in all" { "service" } else { "caller" };
                details.add_quota_failure_violation(subject, &message);
                status(Code::ResourceExhausted, message, "too-many", details)
            }
            OrderError::Invalid(violations) => invalid(&violations),
            OrderError::NotFound { resource, id } => {
                let mut details = ErrorDetails::new();
                details.set_resource_info(resource.to_string(), format!("{resource}s/{id}"), "", &message);
                status(Code::NotFound, message, "not-found", details)
            }
            OrderError::Inactive(id) => precondition("PRODUCT_INACTIVE", format!("products/{id}"), message, "conflict"),
            OrderError::InsufficientStock { product_id, .. } => {
                precondition("INSUFFICIENT_STOCK", format!("products/{product_id}"), message, "insufficient-stock")
            }
            OrderError::IllegalTransition { current, requested } => {
                precondition("ILLEGAL_TRANSITION", format!("{current} -> {requested}"), message, "illegal-transition")
            }
            OrderError::Duplicate(_) => status(Code::AlreadyExists, message, "conflict", ErrorDetails::new()),
            OrderError::KeyReused => {
                status(Code::AlreadyExists, message, "idempotency-key-reused", ErrorDetails::new())
            }
            OrderError::KeyInProgress => status(Code::Aborted, message, "idempotency-key-in-progress", retry_later()),
            OrderError::KeyLost => status(Code::Aborted, message, "conflict", ErrorDetails::new()),
            OrderError::Rule { slot, cause } => {
                tracing::error!(target: "grpc", slot = slot.name(), error = %cause, "a rule failed");
                let message = format!("the {slot} rule failed; nothing was stored, try again later");
                status(Code::Unavailable, message, "rule-unavailable", retry_later())
            }
            OrderError::Down(cause) => unavailable(&cause),
            OrderError::TimedOut { .. } => {
                status(Code::DeadlineExceeded, message, "request-timeout", ErrorDetails::new())
            }
            OrderError::Internal(cause) => {
                tracing::error!(target: "grpc", error = %cause, "request failed");
                let message = "an unexpected error occurred; it has been logged";
                status(Code::Internal, message, "internal-error", ErrorDetails::new())
            }
        }
    }
}

/// UNAVAILABLE: a backing service is down (the cause is logged).
fn unavailable(cause: &str) -> Status {
    tracing::error!(target: "grpc", error = %cause, "a backing service is unavailable");
    let message = "a backing service is unavailable; try again later";
    status(Code::Unavailable, message, "service-unavailable", retry_later())
}

/// `RetryInfo` of every UNAVAILABLE, as REST's `Retry-After`.
fn retry_later() -> ErrorDetails {
    ErrorDetails::with_retry_info(Some(Duration::from_secs(u64::from(crate::orders::RETRY_AFTER_SECONDS))))
}
