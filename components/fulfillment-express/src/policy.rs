//! The express policy as a plain function.

use crate::bindings::orderly::rules::types::{Decision, Order, Quote, Shipment};

/// The policy's settings, from its slot's `[config]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `(region, warehouse)` pairs.
    pub warehouses: Vec<(String, String)>,
    /// Totals above this (minor units) are held for review.
    pub review_threshold: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { warehouses: vec![("eu".into(), "ams".into()), ("us".into(), "nyc".into())], review_threshold: 500_000 }
    }
}

impl Settings {
    /// Reads settings through `get`; an invalid value is an error naming it.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let defaults = Self::default();
        let warehouses = match get("warehouses") {
            Some(text) => text
                .split(',')
                .filter(|pair| !pair.trim().is_empty())
                .map(|pair| {
                    pair.split_once(':')
                        .map(|(region, warehouse)| (region.trim().to_lowercase(), warehouse.trim().to_string()))
                        .ok_or_else(|| format!("setting warehouses: {pair:?} is not region:warehouse"))
                })
                .collect::<Result<_, _>>()?,
            None => defaults.warehouses,
        };
        let review_threshold = match get("review_threshold") {
            Some(text) => {
                text.trim().parse().map_err(|_| format!("setting review_threshold = {text:?} is not a whole number"))?
            }
            None => defaults.review_threshold,
        };
        Ok(Self { warehouses, review_threshold })
    }
}

/// Decides what happens to `order`, priced as `quote`.
pub fn decide(order: &Order, quote: &Quote, settings: &Settings) -> Decision {
    if order.items.is_empty() {
        return Decision::Reject("the order has no lines to ship".into());
    }
    if quote.total > settings.review_threshold {
        return Decision::Hold(format!(
            "express order above {} {} needs review",
            settings.review_threshold, quote.currency
        ));
    }
    let region = order
        .attributes
        .iter()
        .find(|attribute| attribute.key == "region")
        .map(|attribute| attribute.value.trim().to_lowercase());
    let warehouse = region
        .and_then(|region| settings.warehouses.iter().find(|(r, _)| *r == region).map(|(_, w)| w.clone()))
        .unwrap_or_else(|| "main".into());
    Decision::Ship(Shipment { carrier: "courier".into(), service: "express".into(), warehouse, estimated_days: 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::orderly::rules::types::{Attribute, LineItem};

    fn order(region: Option<&str>) -> Order {
        let item = LineItem { product_id: 1, sku: "A".into(), name: "a".into(), unit_price: 100, quantity: 1 };
        let attributes = region.map(|r| vec![Attribute { key: "region".into(), value: r.into() }]).unwrap_or_default();
        Order { id: Some(1), user_id: 1, currency: "EUR".into(), items: vec![item], attributes }
    }

    fn quote(total: u64) -> Quote {
        Quote {
            lines: vec![],
            subtotal: total,
            discount: 0,
            tax: 0,
            shipping: 0,
            total,
            currency: "EUR".into(),
            notes: vec![],
        }
    }

    #[test]
    fn ships_express_from_the_regional_warehouse() {
        let settings = Settings::default();
        let Decision::Ship(shipment) = decide(&order(Some("US")), &quote(100), &settings) else { panic!() };
        assert_eq!(
            (shipment.warehouse.as_str(), shipment.service.as_str(), shipment.estimated_days),
            ("nyc", "express", 1)
        );
        let Decision::Ship(shipment) = decide(&order(None), &quote(100), &settings) else { panic!() };
        assert_eq!(shipment.warehouse, "main");
    }

    #[test]
    fn holds_only_above_its_own_threshold() {
        let settings = Settings::default();
        assert!(matches!(decide(&order(None), &quote(200_000), &settings), Decision::Ship(_)));
        assert!(matches!(decide(&order(None), &quote(500_001), &settings), Decision::Hold(_)));
    }

    #[test]
    fn warehouses_setting_parses() {
        let settings = Settings::from_lookup(|key| (key == "warehouses").then(|| "apac: sin".into())).unwrap();
        assert_eq!(settings.warehouses, vec![("apac".to_string(), "sin".to_string())]);
        assert!(Settings::from_lookup(|key| (key == "warehouses").then(|| "apac".into())).is_err());
    }
}
