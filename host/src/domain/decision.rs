//! What the rules are asked and what they answer, in the service's own
//! terms: an order before it is stored, its quote, and the fulfillment
//! policy's decision. The WIT types the components see are made from these
//! (and back) in one place, `rules::mapping`.

use std::collections::BTreeMap;

use super::Shipment;

/// An order on its way in: what the customer sent, with the catalogue's
/// names and prices once they are known (empty and zero before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftOrder {
    pub user_id: i64,
    pub currency: String,
    pub lines: Vec<DraftLine>,
    pub attributes: BTreeMap<String, String>,
}

/// One line of a [`DraftOrder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftLine {
    pub product_id: i64,
    pub sku: String,
    pub name: String,
    pub unit_price: i64,
    pub quantity: u32,
}

/// The pricing rule's quote, checked by the host and in the store's ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub lines: Vec<QuotedLine>,
    pub subtotal: i64,
    pub discount: i64,
    pub tax: i64,
    pub shipping: i64,
    pub total: i64,
    pub currency: String,
    pub notes: Vec<String>,
}

/// One priced line of a [`Quote`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotedLine {
    pub product_id: i64,
    pub quantity: i32,
    pub unit_price: i64,
    pub line_total: i64,
}

/// What the fulfillment policy decided for a stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FulfillmentDecision {
    /// Ship it this way: the order becomes `fulfilled`.
    Ship(Shipment),
    /// A human looks first: the order becomes `on_hold`.
    Hold(String),
    /// It will not ship: the order is `cancelled` and its stock returned.
    Reject(String),
}
