//! Request bodies and the checks the API edge makes before anything else
//! runs: types, ranges the database could not store, and required fields.
//! Business rules (line counts, quantity limits, duplicates) belong to the
//! `validation` component, not here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::OrderStatus;
use super::text::{Lines, control_character, refused_character};
pub use super::violation::Violation;
use super::whole::{optional_whole, present_whole, whole};

/// One requested line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LineRequest {
    /// The product to order.
    #[serde(deserialize_with = "whole")]
    #[schema(minimum = 1)]
    pub product_id: i64,
    /// How many units.
    #[serde(deserialize_with = "whole")]
    #[schema(value_type = i64, minimum = 0, maximum = 4294967295_i64)]
    pub quantity: u32,
}

/// `POST /orders`: either `items`, or the single-line shorthand
/// `product_id` + `quantity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateOrderRequest {
    /// The customer the order is for; absent, the caller's own user.
    #[serde(default, deserialize_with = "optional_whole")]
    pub user_id: Option<u64>,
    /// ISO 4217 code; the host's default currency when absent.
    #[serde(default)]
    pub currency: Option<String>,
    /// The lines.
    #[serde(default)]
    pub items: Option<Vec<LineRequest>>,
    /// Single-line shorthand: the product.
    #[serde(default, deserialize_with = "optional_whole")]
    pub product_id: Option<i64>,
    /// Single-line shorthand: how many units.
    #[serde(default, deserialize_with = "optional_whole")]
    pub quantity: Option<u32>,
    /// Free-form attributes passed to the components (e.g. `promo-code`).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// A create-order request after the edge checks. Serialised, it names the
/// request as understood (what an idempotency key is bound to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderRequest {
    pub user_id: i64,
    pub currency: String,
    pub lines: Vec<LineRequest>,
    pub attributes: BTreeMap<String, String>,
}

impl CreateOrderRequest {
    /// Resolves the shorthand and checks what the database could not store.
    /// An absent `user_id` is `own_user` (the caller's own, for a customer);
    /// without one it is required.
    pub fn parse(self, default_currency: &str, own_user: Option<i64>) -> Result<OrderRequest, Vec<Violation>> {
        let mut violations = Vec::new();
        let user_id = match (self.user_id, own_user) {
            (Some(named), _) => i64::try_from(named).unwrap_or_else(|_| {
                violations.push(Violation::new("out-of-range", "user_id", "user_id is too large"));
                0
            }),
            (None, Some(own)) => own,
            (None, None) => {
                violations.push(Violation::new("required", "user_id", "user_id is required"));
                0
            }
        };
        let lines = match (self.items, self.product_id, self.quantity) {
            (Some(items), None, None) => items,
            (None, Some(product_id), Some(quantity)) => vec![LineRequest { product_id, quantity }],
            (None, Some(_), None) => {
                violations.push(Violation::new("required", "quantity", "quantity is required with product_id"));
                Vec::new()
            }
            (None, None, Some(_)) => {
                violations.push(Violation::new("required", "product_id", "product_id is required with quantity"));
                Vec::new()
            }
            (None, None, None) => {
                violations.push(Violation::new("required", "items", "give items, or product_id and quantity"));
                Vec::new()
            }
            (Some(_), _, _) => {
                violations.push(Violation::new(
                    "ambiguous",
                    "items",
                    "give either items or the product_id/quantity shorthand, not both",
                ));
                Vec::new()
            }
        };
        for (index, line) in lines.iter().enumerate() {
            if line.product_id <= 0 {
                violations.push(Violation::new(
                    "out-of-range",
                    format!("items/{index}/product_id"),
                    "product_id must be positive",
                ));
            }
        }
        let currency = self.currency.unwrap_or_else(|| default_currency.to_owned());
        violations.extend(control_character("currency", &currency, Lines::One));
        for (key, value) in &self.attributes {
            violations.extend(control_character("attributes", key, Lines::One));
            // The field's name is built only for a refusal: this runs for every order placed.
            if refused_character(value, Lines::Many).is_some() {
                violations.extend(control_character(&format!("attributes/{key}"), value, Lines::Many));
            }
        }
        if violations.is_empty() {
            Ok(OrderRequest { user_id, currency, lines, attributes: self.attributes })
        } else {
            Err(violations)
        }
    }
}

/// Whether `code` is an ISO 4217-shaped code: three upper-case ASCII letters.
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|byte| byte.is_ascii_uppercase())
}

/// `POST /products`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"sku": "MUG-BLUE", "name": "Blue mug", "price": 1250, "currency": "EUR", "stock": 100}))]
pub struct CreateProductRequest {
    /// Unique stock-keeping unit, 1 to 64 characters, not only spaces, no control characters.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*(?![\\s\\S])"
    )]
    pub sku: String,
    /// Display name, 1 to 200 characters, not only spaces, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*(?![\\s\\S])"
    )]
    pub name: String,
    /// Unit price in minor units.
    #[serde(deserialize_with = "whole")]
    #[schema(value_type = i64, minimum = 0, maximum = 4294967295_i64)]
    pub price: u32,
    /// ISO 4217 code; the host's default currency when absent.
    #[serde(default)]
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    /// Units in stock.
    #[serde(default, deserialize_with = "whole")]
    #[schema(value_type = i64, minimum = 0, maximum = 4294967295_i64)]
    pub stock: u32,
    /// Whether it can be ordered (default true).
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// A product to insert, after the edge checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub sku: String,
    pub name: String,
    pub price: i64,
    pub currency: String,
    pub stock: i64,
    pub active: bool,
}

impl CreateProductRequest {
    /// Checks lengths and the currency code.
    pub fn parse(self, default_currency: &str) -> Result<NewProduct, Vec<Violation>> {
        let mut violations = Vec::new();
        check_text(&mut violations, "sku", &self.sku, 64);
        check_text(&mut violations, "name", &self.name, 200);
        let currency = self.currency.unwrap_or_else(|| default_currency.to_owned());
        if !is_currency_code(&currency) {
            violations.push(Violation::new("invalid-currency", "currency", "three upper-case letters, e.g. EUR"));
        }
        if !violations.is_empty() {
            return Err(violations);
        }
        Ok(NewProduct {
            sku: self.sku,
            name: self.name,
            price: self.price.into(),
            currency,
            stock: self.stock.into(),
            active: self.active,
        })
    }
}

/// `PATCH /products/{id}`: any of the fields, at least one; each given
/// field holds a value (`null` is not one), and an unknown field is refused
/// rather than ignored, so a misspelt change is never a silent no-op.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"price": 1100, "stock": 80}))]
pub struct UpdateProductRequest {
    /// New display name, 1 to 200 characters, not only spaces, no control characters.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\u0000-\\u001f\\u007f-\\u009f]*(?![\\s\\S])")]
    pub name: Option<String>,
    /// New unit price in minor units.
    #[serde(default, deserialize_with = "present_whole", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = i64, minimum = 0, maximum = 4294967295_i64)]
    pub price: Option<u32>,
    /// New stock level (absolute).
    #[serde(default, deserialize_with = "present_whole", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = i64, minimum = 0, maximum = 4294967295_i64)]
    pub stock: Option<u32>,
    /// Whether it can be ordered.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = bool)]
    pub active: Option<bool>,
}

/// A field that, when given, must hold a value: `null` is refused.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

impl UpdateProductRequest {
    /// Checks that something changes and that the name fits.
    pub fn check(&self) -> Result<(), Vec<Violation>> {
        let mut violations = Vec::new();
        if let Some(name) = &self.name {
            check_text(&mut violations, "name", name, 200);
        }
        if self.name.is_none() && self.price.is_none() && self.stock.is_none() && self.active.is_none() {
            violations.push(Violation::new("required", "", "give at least one of name, price, stock, active"));
        }
        if violations.is_empty() { Ok(()) } else { Err(violations) }
    }
}

/// `PATCH /orders/{id}/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"status": "cancelled", "reason": "the customer changed their mind"}))]
pub struct StatusChangeRequest {
    /// The state to move to.
    pub status: OrderStatus,
    /// Why (kept in the history; cut to 500 bytes). Tabs and line breaks
    /// are kept; any other control character is refused.
    #[serde(default)]
    #[schema(pattern = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]*$")]
    pub reason: Option<String>,
}

/// A one-line text: 1 to `max` characters, not only spaces, no control character.
fn check_text(violations: &mut Vec<Violation>, field: &str, value: &str, max: usize) {
    let length = value.chars().count();
    if length == 0 || length > max || value.trim().is_empty() {
        violations.push(Violation::new("invalid-length", field, format!("{field} must have 1 to {max} characters")));
    }
    violations.extend(control_character(field, value, Lines::One));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> CreateOrderRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_shorthand_becomes_one_line_with_the_default_currency() {
        let parsed =
            request(serde_json::json!({"user_id": 3, "product_id": 9, "quantity": 2})).parse("EUR", None).unwrap();
        assert_eq!(parsed.lines, vec![LineRequest { product_id: 9, quantity: 2 }]);
        assert_eq!((parsed.user_id, parsed.currency.as_str()), (3, "EUR"));
    }

    #[test]
    fn items_and_shorthand_together_or_neither_are_refused() {
        let both = request(serde_json::json!({"user_id": 1, "product_id": 1, "quantity": 1,
            "items": [{"product_id": 1, "quantity": 1}]}));
        assert_eq!(both.parse("EUR", None).unwrap_err()[0].code, "ambiguous");
        let neither = request(serde_json::json!({"user_id": 1}));
        assert_eq!(neither.parse("EUR", None).unwrap_err()[0].field, "items");
        let half = request(serde_json::json!({"user_id": 1, "product_id": 4}));
        assert_eq!(half.parse("EUR", None).unwrap_err()[0].field, "quantity");
    }

    #[test]
    fn an_absent_user_is_the_callers_own_or_required() {
        let unnamed = || request(serde_json::json!({"product_id": 9, "quantity": 2}));
        assert_eq!(unnamed().parse("EUR", Some(42)).unwrap().user_id, 42);
        assert_eq!(unnamed().parse("EUR", None).unwrap_err()[0].field, "user_id");
        let named = request(serde_json::json!({"user_id": 3, "product_id": 9, "quantity": 2}));
        assert_eq!(named.parse("EUR", Some(42)).unwrap().user_id, 3, "named: the caller's scope decides, not parsing");
    }

    #[test]
    fn ids_the_database_cannot_hold_are_refused() {
        let huge_user = request(serde_json::json!({"user_id": u64::MAX, "items": [{"product_id": 0, "quantity": 1}]}));
        let fields: Vec<_> = huge_user.parse("EUR", None).unwrap_err().into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["user_id", "items/0/product_id"]);
    }

    #[test]
    fn product_fields_are_checked() {
        let bad = CreateProductRequest {
            sku: String::new(),
            name: "x".repeat(201),
            price: 1,
            currency: Some("eur".into()),
            stock: 0,
            active: true,
        };
        let codes: Vec<_> = bad.parse("EUR").unwrap_err().into_iter().map(|v| v.field).collect();
        assert_eq!(codes, ["sku", "name", "currency"]);
        assert!(UpdateProductRequest::default().check().is_err());
        assert!(UpdateProductRequest { stock: Some(0), ..Default::default() }.check().is_ok());
    }

    #[test]
    fn currency_codes() {
        assert!(is_currency_code("EUR"));
        assert!(!is_currency_code("EU") && !is_currency_code("eur") && !is_currency_code("EURO"));
    }
}
