//! A problem with one field of a request, as every front end reports it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A problem with one field of a request, or with a whole order when a
/// component refuses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Violation {
    /// Stable, machine-readable code, e.g. `quantity-out-of-range`.
    pub code: String,
    /// The offending field as a path such as `items/2/quantity`; empty for the whole request.
    pub field: String,
    /// Human-readable explanation.
    pub message: String,
}

impl Violation {
    /// A violation found at the API edge.
    pub fn new(code: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.to_owned(), field: field.into(), message: message.into() }
    }
}
