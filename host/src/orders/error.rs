//! What placing, reading or changing an order (or a product) can answer
//! besides success, in the application's terms. Each front end maps these
//! to its own protocol: problem+json over HTTP, a status with details over gRPC.

use crate::auth::AccessError;
use crate::domain::OrderStatus;
use crate::domain::input::Violation;
use crate::rules::RuleError;
use crate::runtime::Slot;
use crate::store::StoreError;

/// How long a client is told to wait before retrying after a fault of the
/// platform (`Retry-After` over HTTP, `RetryInfo` over gRPC): a backing
/// service restarting or failing over, a busy database or a failing rule is
/// usually back within seconds, and the request changed nothing (or
/// replays with its idempotency key).
pub const RETRY_AFTER_SECONDS: u16 = 1;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The request breaks rules (the service's own or a rule component's).
    #[error("{}", join(.0))]
    Invalid(Vec<Violation>),
    /// The caller's token does not cover the request (a customer acting for
    /// another user).
    #[error("{0}")]
    Forbidden(#[from] AccessError),
    /// The caller holds as many of something as it may at once (watch
    /// streams, keyed orders being placed), or the process does.
    #[error(transparent)]
    Exhausted(#[from] super::quota::Exhausted),
    /// The order or product named does not exist.
    #[error("{resource} {id} does not exist")]
    NotFound { resource: Resource, id: i64 },
    /// A line names a product that cannot be ordered now.
    #[error("product {0} is not available for ordering")]
    Inactive(i64),
    /// Not enough units left.
    #[error("product {product_id}: {requested} requested, {available} in stock")]
    InsufficientStock { product_id: i64, requested: i64, available: i64 },
    /// The state machine forbids the change, given the order's state now.
    #[error("the order is {current}; it cannot become {requested}")]
    IllegalTransition { current: OrderStatus, requested: OrderStatus },
    /// A unique value is taken (a product's SKU).
    #[error("{0} already exists")]
    Duplicate(&'static str),
    /// The idempotency key was used before with another request.
    #[error("the idempotency key was already used with a different request body")]
    KeyReused,
    /// A request with the same idempotency key is still running.
    #[error("a request with this Idempotency-Key is still running")]
    KeyInProgress,
    /// The idempotency key this request held expired while it ran.
    #[error("the idempotency key expired while the request ran; retry")]
    KeyLost,
    /// The work was stopped at its deadline; nothing was stored (the key,
    /// if any, is free again).
    #[error("the order was not placed within {} ms", limit.as_millis())]
    TimedOut { limit: std::time::Duration },
    /// A rule gave no answer (its slot is empty, or the call failed):
    /// nothing was stored.
    #[error("{slot} component failed: {cause}")]
    Rule { slot: Slot, cause: String },
    /// A server the service depends on is down.
    #[error("{0}")]
    Down(String),
    /// A bug or inconsistent data.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What a lookup was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Order,
    Product,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Resource::Order => "order",
            Resource::Product => "product",
        })
    }
}

fn join(violations: &[Violation]) -> String {
    violations.iter().map(|violation| violation.message.as_str()).collect::<Vec<_>>().join("; ")
}

impl OrderError {
    /// The answer to a lookup of order `id` that found nothing.
    pub fn order_not_found(id: i64) -> impl FnOnce(StoreError) -> OrderError {
        move |error| match error {
            StoreError::NotFound => OrderError::NotFound { resource: Resource::Order, id },
            other => other.into(),
        }
    }

    /// The answer to a lookup of product `id` that found nothing.
    pub fn product_not_found(id: i64) -> impl FnOnce(StoreError) -> OrderError {
        move |error| match error {
            StoreError::NotFound => OrderError::NotFound { resource: Resource::Product, id },
            other => other.into(),
        }
    }
}

impl From<StoreError> for OrderError {
    fn from(error: StoreError) -> Self {
        match error {
            // Every lookup names what it looked for (`order_not_found`, `product_not_found`):
            // a missing row nobody named is a bug, not the client's 404.
            StoreError::NotFound => OrderError::Internal(anyhow::anyhow!("a record the service expected is missing")),
            StoreError::Conflict(what) => OrderError::Duplicate(what),
            StoreError::UnknownProduct(id) => OrderError::NotFound { resource: Resource::Product, id },
            StoreError::InactiveProduct(id) => OrderError::Inactive(id),
            StoreError::InsufficientStock { product_id, requested, available } => {
                OrderError::InsufficientStock { product_id, requested, available }
            }
            StoreError::IllegalTransition { current, requested } => {
                OrderError::IllegalTransition { current, requested }
            }
            StoreError::KeyLost => OrderError::KeyLost,
            StoreError::Database(error) if crate::store::is_unavailable(&error) => {
                OrderError::Down(format!("database: {error}"))
            }
            other => OrderError::Internal(other.into()),
        }
    }
}

impl From<RuleError> for OrderError {
    fn from(error: RuleError) -> Self {
        match error {
            RuleError::Unrepresentable(unfit) => {
                OrderError::Invalid(vec![Violation::new("out-of-range", unfit.field.clone(), unfit.to_string())])
            }
            RuleError::Empty { slot } => OrderError::Rule { slot, cause: "the slot is empty".into() },
            RuleError::Failed { slot, .. } => OrderError::Rule { slot, cause: error.to_string() },
        }
    }
}
