//! The standard policy as a plain function.

use crate::bindings::orderly::rules::types::{Decision, Order, Quote, Shipment};

/// The policy's settings, from its slot's `[config]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The warehouse every order ships from.
    pub warehouse: String,
    /// The carrier.
    pub carrier: String,
    /// The carrier's service level.
    pub service: String,
    /// Promised days to delivery.
    pub estimated_days: u32,
    /// Totals above this (minor units) are held for review.
    pub review_threshold: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            warehouse: "main".into(),
            carrier: "postal".into(),
            service: "standard".into(),
            estimated_days: 3,
            review_threshold: 100_000,
        }
    }
}

impl Settings {
    /// Reads settings through `get`; an invalid number is an error naming it.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let defaults = Self::default();
        let text = |key: &str, default: String| get(key).filter(|v| !v.trim().is_empty()).unwrap_or(default);
        let number = |key: &str| -> Result<Option<u64>, String> {
            get(key)
                .map(|v| v.trim().parse().map_err(|_| format!("setting {key} = {v:?} is not a whole number")))
                .transpose()
        };
        Ok(Self {
            warehouse: text("warehouse", defaults.warehouse),
            carrier: text("carrier", defaults.carrier),
            service: text("service", defaults.service),
            estimated_days: number("estimated_days")?.map_or(Ok(defaults.estimated_days), |days| {
                u32::try_from(days).map_err(|_| "setting estimated_days is too large".to_string())
            })?,
            review_threshold: number("review_threshold")?.unwrap_or(defaults.review_threshold),
        })
    }
}

/// Decides what happens to `order`, priced as `quote`.
pub fn decide(order: &Order, quote: &Quote, settings: &Settings) -> Decision {
    if order.items.is_empty() {
        return Decision::Reject("the order has no lines to ship".into());
    }
    if quote.total > settings.review_threshold {
        return Decision::Hold(format!(
            "order total {} {} is above the review threshold of {}",
            quote.total, quote.currency, settings.review_threshold
        ));
    }
    Decision::Ship(Shipment {
        carrier: settings.carrier.clone(),
        service: settings.service.clone(),
        warehouse: settings.warehouse.clone(),
        estimated_days: settings.estimated_days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::orderly::rules::types::LineItem;

    fn order_and_quote(total: u64) -> (Order, Quote) {
        let item = LineItem { product_id: 1, sku: "A".into(), name: "a".into(), unit_price: total, quantity: 1 };
        let order = Order { id: Some(9), user_id: 1, currency: "EUR".into(), items: vec![item], attributes: vec![] };
        let quote = Quote {
            lines: vec![],
            subtotal: total,
            discount: 0,
            tax: 0,
            shipping: 0,
            total,
            currency: "EUR".into(),
            notes: vec![],
        };
        (order, quote)
    }

    #[test]
    fn ships_at_the_threshold_and_holds_above_it() {
        let settings = Settings::default();
        let (order, quote) = order_and_quote(100_000);
        assert!(matches!(decide(&order, &quote, &settings), Decision::Ship(s) if s.warehouse == "main"));
        let (order, quote) = order_and_quote(100_001);
        assert!(matches!(decide(&order, &quote, &settings), Decision::Hold(reason) if reason.contains("100001 EUR")));
    }

    #[test]
    fn rejects_an_empty_order() {
        let (mut order, quote) = order_and_quote(10);
        order.items.clear();
        assert!(matches!(decide(&order, &quote, &Settings::default()), Decision::Reject(_)));
    }

    #[test]
    fn settings_override_defaults() {
        let settings = Settings::from_lookup(|key| match key {
            "warehouse" => Some("berlin".into()),
            "review_threshold" => Some("5".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(settings.warehouse, "berlin");
        assert_eq!(settings.review_threshold, 5);
        assert_eq!(settings.carrier, "postal");
        assert!(Settings::from_lookup(|key| (key == "estimated_days").then(|| "soon".into())).is_err());
    }
}
