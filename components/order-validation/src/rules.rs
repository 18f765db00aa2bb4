//! The validation rules as plain functions, testable without a host.

use crate::bindings::orderly::rules::types::{Order, Violation};

/// The component's settings, from its slot's `[config]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Most lines per order.
    pub max_lines: usize,
    /// Largest quantity on one line.
    pub max_quantity: u32,
    /// Orders per user per minute, when set.
    pub orders_per_minute: Option<i64>,
    /// Open (not yet shipped) orders per user, when set.
    pub max_open_orders: Option<i64>,
}

impl Default for Settings {
    fn default() -> Self {
        Self { max_lines: 100, max_quantity: 1000, orders_per_minute: None, max_open_orders: None }
    }
}

impl Settings {
    /// Reads settings through `get`; an unparsable value is an error naming it.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        fn parse<T: std::str::FromStr>(get: &impl Fn(&str) -> Option<String>, key: &str) -> Result<Option<T>, String> {
            get(key)
                .map(|text| text.trim().parse().map_err(|_| format!("setting {key} = {text:?} is not a valid number")))
                .transpose()
        }
        let defaults = Self::default();
        Ok(Self {
            max_lines: parse(&get, "max_lines")?.unwrap_or(defaults.max_lines),
            max_quantity: parse(&get, "max_quantity")?.unwrap_or(defaults.max_quantity),
            orders_per_minute: parse(&get, "orders_per_minute")?,
            max_open_orders: parse(&get, "max_open_orders")?,
        })
    }
}

fn violation(code: &str, field: impl Into<String>, message: impl Into<String>) -> Violation {
    Violation { code: code.into(), field: field.into(), message: message.into() }
}

/// Every rule violation of `order`, in field order.
pub fn violations(order: &Order, settings: &Settings) -> Vec<Violation> {
    let mut found = Vec::new();
    let currency = &order.currency;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        found.push(violation(
            "invalid-currency",
            "currency",
            format!("currency must be a three-letter ISO 4217 code such as EUR, not {currency:?}"),
        ));
    }
    if order.items.is_empty() {
        found.push(violation("no-items", "items", "an order needs at least one line"));
    }
    if order.items.len() > settings.max_lines {
        found.push(violation(
            "too-many-items",
            "items",
            format!("an order has at most {} lines, this one has {}", settings.max_lines, order.items.len()),
        ));
    }
    for (index, item) in order.items.iter().enumerate() {
        if item.quantity == 0 || item.quantity > settings.max_quantity {
            found.push(violation(
                "quantity-out-of-range",
                format!("items/{index}/quantity"),
                format!("quantity must be between 1 and {}, not {}", settings.max_quantity, item.quantity),
            ));
        }
        if let Some(first) = order.items[..index].iter().position(|other| other.product_id == item.product_id) {
            found.push(violation(
                "duplicate-product",
                format!("items/{index}/product_id"),
                format!("product {} is already on line {first}; put the whole quantity on one line", item.product_id),
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::orderly::rules::types::LineItem;

    fn item(product_id: u64, quantity: u32) -> LineItem {
        LineItem { product_id, sku: format!("SKU-{product_id}"), name: "thing".into(), unit_price: 100, quantity }
    }

    fn order(items: Vec<LineItem>) -> Order {
        Order { id: None, user_id: 1, currency: "EUR".into(), items, attributes: vec![] }
    }

    fn codes(order: &Order, settings: &Settings) -> Vec<String> {
        violations(order, settings).into_iter().map(|v| v.code).collect()
    }

    #[test]
    fn a_plain_order_passes() {
        assert!(codes(&order(vec![item(1, 1), item(2, 1000)]), &Settings::default()).is_empty());
    }

    #[test]
    fn quantities_are_bounded_on_both_sides() {
        let found = violations(&order(vec![item(1, 0), item(2, 1001)]), &Settings::default());
        let fields: Vec<_> = found.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["items/0/quantity", "items/1/quantity"]);
    }

    #[test]
    fn line_count_and_duplicates_and_currency() {
        let settings = Settings { max_lines: 2, ..Settings::default() };
        let mut bad = order(vec![item(1, 1), item(2, 1), item(1, 1)]);
        bad.currency = "eur".into();
        assert_eq!(codes(&bad, &settings), ["invalid-currency", "too-many-items", "duplicate-product"]);
        assert_eq!(codes(&order(vec![]), &settings), ["no-items"]);
    }

    #[test]
    fn settings_parse_or_name_the_bad_key() {
        let settings = Settings::from_lookup(|key| (key == "max_quantity").then(|| "5".to_string())).unwrap();
        assert_eq!(settings.max_quantity, 5);
        assert_eq!(settings.max_lines, 100);
        let error = Settings::from_lookup(|key| (key == "max_lines").then(|| "many".to_string())).unwrap_err();
        assert!(error.contains("max_lines"), "{error}");
    }
}
