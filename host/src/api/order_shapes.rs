//! The two shapes `POST /orders` accepts, as the OpenAPI document states
//! them (`oneOf`). The handler reads both through `CreateOrderRequest`,
//! whose `parse` makes the same exclusive choice; these types only describe.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::input::LineRequest;

/// The request body of `POST /orders`: the lines as `items`, or the
/// single-line shorthand (`product_id` + `quantity`); not both.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CreateOrder {
    Items(OrderOfItems),
    SingleLine(OrderOfOneLine),
}

/// An order given as its lines.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"user_id": 42, "currency": "EUR", "items": [{"product_id": 1, "quantity": 2}, {"product_id": 2, "quantity": 1}]}))]
pub struct OrderOfItems {
    /// The customer the order is for. A customer's token (scope `orders`)
    /// may leave it out (it orders for itself) and may name only itself.
    #[schema(value_type = i64, minimum = 0, maximum = 9223372036854775807_i64)]
    user_id: u64,
    /// ISO 4217 code; the host's default currency when absent. The
    /// `validation` component decides which codes it accepts.
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*(?![\\s\\S])"
    )]
    currency: Option<String>,
    /// The lines. How many, and which quantities, is the `validation`
    /// component's rule (a refused order is a 422 listing the violations).
    items: Vec<LineRequest>,
    /// Free-form attributes passed to the components (e.g. `promo-code`).
    /// A key holds no control character; a value may hold tabs and line breaks, no other.
    #[serde(default)]
    attributes: BTreeMap<String, AttributeValue>,
}

/// An order of one line, in the seeds' shorthand.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"user_id": 42, "product_id": 1, "quantity": 1}))]
pub struct OrderOfOneLine {
    /// The customer the order is for. A customer's token (scope `orders`)
    /// may leave it out (it orders for itself) and may name only itself.
    #[schema(value_type = i64, minimum = 0, maximum = 9223372036854775807_i64)]
    user_id: u64,
    /// ISO 4217 code; the host's default currency when absent.
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*(?![\\s\\S])"
    )]
    currency: Option<String>,
    /// The product to order.
    #[schema(minimum = 1)]
    product_id: i64,
    /// How many units.
    #[schema(value_type = i64, minimum = 0, maximum = 4294967295_i64)]
    quantity: u32,
    /// Free-form attributes passed to the components (e.g. `promo-code`).
    /// A key holds no control character; a value may hold tabs and line breaks, no other.
    #[serde(default)]
    attributes: BTreeMap<String, AttributeValue>,
}

/// An attribute's value: free text without control characters other than
/// tabs and line breaks.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(pattern = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$")]
pub struct AttributeValue(String);
