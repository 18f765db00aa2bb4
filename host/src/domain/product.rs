//! A product in the catalogue.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A product as stored and as served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Product {
    /// The product's id.
    pub id: i64,
    /// Stock-keeping unit, unique in the catalogue.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Price of one unit in the currency's minor unit (cents).
    pub price: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Units in stock. Orders are checked against the database, never a cache.
    pub stock: i64,
    /// Inactive products cannot be ordered.
    pub active: bool,
    /// When the product was created.
    pub created_at: DateTime<Utc>,
    /// When the product last changed.
    pub updated_at: DateTime<Utc>,
}
