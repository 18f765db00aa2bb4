//! An order as stored and as served: these types are the API's
//! representation, so an idempotent replay can store the exact answer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::OrderStatus;

/// One line of an order, with the product's name and price as they were when
/// the order was placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderLine {
    /// The product ordered.
    pub product_id: i64,
    /// Its SKU at order time.
    pub sku: String,
    /// Its name at order time.
    pub name: String,
    /// Its unit price at order time, in minor units.
    pub unit_price: i64,
    /// Units ordered.
    pub quantity: i32,
    /// `unit_price * quantity`.
    pub line_total: i64,
}

/// One recorded status change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    /// The state left; absent for the creation.
    pub from: Option<OrderStatus>,
    /// The state entered.
    pub to: OrderStatus,
    /// Why, when given.
    pub reason: Option<String>,
    /// The request or job that made the change.
    pub correlation_id: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Which component took part in an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ComponentRecord {
    /// `validation`, `pricing` or `fulfillment`.
    pub slot: String,
    /// The component's name.
    pub component: String,
    /// The component's version.
    pub version: String,
    /// The sha256 of the `.wasm` that ran.
    pub digest: String,
    /// How long the call took, in microseconds.
    pub duration_us: i64,
    /// When it ran.
    pub at: DateTime<Utc>,
}

/// Where and how an order ships, as the fulfillment policy decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Shipment {
    /// The carrier, for example `postal`.
    pub carrier: String,
    /// The carrier's service level, for example `standard`.
    pub service: String,
    /// The warehouse that ships it.
    pub warehouse: String,
    /// Estimated days until delivery.
    pub estimated_days: u32,
}

/// An order with its lines, totals, history and the components that decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderDetail {
    /// The order's id.
    pub id: i64,
    /// The customer.
    pub user_id: i64,
    /// Where the order is in its lifecycle.
    pub status: OrderStatus,
    /// Why it is in that state (a hold or a rejection), when known.
    pub status_reason: Option<String>,
    /// Where and how it ships, once the fulfillment policy said ship.
    pub shipment: Option<Shipment>,
    /// ISO 4217 code of every amount.
    pub currency: String,
    /// The lines, in the order they were submitted.
    pub items: Vec<OrderLine>,
    /// Sum of the line totals.
    pub subtotal: i64,
    /// Discount granted by pricing.
    pub discount: i64,
    /// Tax.
    pub tax: i64,
    /// Shipping charge.
    pub shipping: i64,
    /// `subtotal - discount + tax + shipping`.
    pub total: i64,
    /// Pricing's explanations (promotions applied, free shipping).
    pub notes: Vec<String>,
    /// Free-form attributes submitted with the order.
    pub attributes: std::collections::BTreeMap<String, String>,
    /// Incremented on every change.
    pub version: i64,
    /// `name@version` of the validation component that accepted it.
    pub validated_by: String,
    /// `name@version` of the pricing component that priced it.
    pub priced_by: String,
    /// Every component call that decided something about this order.
    pub components: Vec<ComponentRecord>,
    /// Every status change, oldest first.
    pub history: Vec<HistoryEntry>,
    /// When the order was placed.
    pub created_at: DateTime<Utc>,
    /// When the order last changed.
    pub updated_at: DateTime<Utc>,
}

/// An order in a listing: totals and lines, without history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OrderSummary {
    /// The order's id.
    pub id: i64,
    /// The customer.
    pub user_id: i64,
    /// Where the order is in its lifecycle.
    pub status: OrderStatus,
    /// ISO 4217 code of every amount.
    pub currency: String,
    /// The lines.
    pub items: Vec<OrderLine>,
    /// What the customer pays.
    pub total: i64,
    /// When the order was placed.
    pub created_at: DateTime<Utc>,
    /// When the order last changed.
    pub updated_at: DateTime<Utc>,
}
