//! The one mapping between the service's types and the WIT types the
//! components see. Every conversion is checked: a value that does not fit
//! the other side is an error that names its field, never a silent zero.

use crate::domain::decision::{DraftOrder, FulfillmentDecision, Quote, QuotedLine};
use crate::domain::input::Violation;
use crate::domain::{OrderDetail, Shipment};
use crate::runtime::bindings::types as wit;

/// A value of the order that the component interface cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} ({value}) is out of the range the rule components accept")]
pub struct Unrepresentable {
    pub field: String,
    pub value: i64,
}

fn unsigned(value: i64, field: impl FnOnce() -> String) -> Result<u64, Unrepresentable> {
    u64::try_from(value).map_err(|_| Unrepresentable { field: field(), value })
}

fn quantity(value: i32, field: impl FnOnce() -> String) -> Result<u32, Unrepresentable> {
    u32::try_from(value).map_err(|_| Unrepresentable { field: field(), value: value.into() })
}

fn attributes(from: &std::collections::BTreeMap<String, String>) -> Vec<wit::Attribute> {
    from.iter().map(|(key, value)| wit::Attribute { key: key.clone(), value: value.clone() }).collect()
}

/// An order on its way in, as validation and pricing see it.
pub fn draft_order(order: &DraftOrder) -> Result<wit::Order, Unrepresentable> {
    let items = order
        .lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            Ok(wit::LineItem {
                product_id: unsigned(line.product_id, || format!("items/{index}/product_id"))?,
                sku: line.sku.clone(),
                name: line.name.clone(),
                unit_price: unsigned(line.unit_price, || format!("items/{index}/unit_price"))?,
                quantity: line.quantity,
            })
        })
        .collect::<Result<_, Unrepresentable>>()?;
    Ok(wit::Order {
        id: None,
        user_id: unsigned(order.user_id, || "user_id".into())?,
        currency: order.currency.clone(),
        items,
        attributes: attributes(&order.attributes),
    })
}

/// A stored order and its quote, as the fulfillment policy sees them.
pub fn stored_order(order: &OrderDetail) -> Result<(wit::Order, wit::Quote), Unrepresentable> {
    let mut items = Vec::with_capacity(order.items.len());
    let mut lines = Vec::with_capacity(order.items.len());
    for (index, line) in order.items.iter().enumerate() {
        let product_id = unsigned(line.product_id, || format!("items/{index}/product_id"))?;
        let units = quantity(line.quantity, || format!("items/{index}/quantity"))?;
        let unit_price = unsigned(line.unit_price, || format!("items/{index}/unit_price"))?;
        items.push(wit::LineItem {
            product_id,
            sku: line.sku.clone(),
            name: line.name.clone(),
            unit_price,
            quantity: units,
        });
        lines.push(wit::PricedLine {
            product_id,
            quantity: units,
            unit_price,
            line_total: unsigned(line.line_total, || format!("items/{index}/line_total"))?,
        });
    }
    let wit_order = wit::Order {
        id: Some(unsigned(order.id, || "id".into())?),
        user_id: unsigned(order.user_id, || "user_id".into())?,
        currency: order.currency.clone(),
        items,
        attributes: attributes(&order.attributes),
    };
    let quote = wit::Quote {
        lines,
        subtotal: unsigned(order.subtotal, || "subtotal".into())?,
        discount: unsigned(order.discount, || "discount".into())?,
        tax: unsigned(order.tax, || "tax".into())?,
        shipping: unsigned(order.shipping, || "shipping".into())?,
        total: unsigned(order.total, || "total".into())?,
        currency: order.currency.clone(),
        notes: order.notes.clone(),
    };
    Ok((wit_order, quote))
}

fn amount(value: u64, field: &str) -> Result<i64, Violation> {
    i64::try_from(value).map_err(|_| Violation::new("amount-too-large", field, "the amount does not fit"))
}

/// A quote the host checked, in the store's ranges; an amount that does not
/// fit is the pricing rule's violation.
pub fn quote(from: &wit::Quote) -> Result<Quote, Violation> {
    let lines = from
        .lines
        .iter()
        .map(|line| {
            Ok(QuotedLine {
                product_id: amount(line.product_id, "product_id")?,
                quantity: i32::try_from(line.quantity)
                    .map_err(|_| Violation::new("quantity-out-of-range", "quantity", "too many units"))?,
                unit_price: amount(line.unit_price, "unit_price")?,
                line_total: amount(line.line_total, "line_total")?,
            })
        })
        .collect::<Result<_, Violation>>()?;
    Ok(Quote {
        lines,
        subtotal: amount(from.subtotal, "subtotal")?,
        discount: amount(from.discount, "discount")?,
        tax: amount(from.tax, "tax")?,
        shipping: amount(from.shipping, "shipping")?,
        total: amount(from.total, "total")?,
        currency: from.currency.clone(),
        notes: from.notes.clone(),
    })
}

/// A component's violation.
pub fn violation(from: &wit::Violation) -> Violation {
    Violation { code: from.code.clone(), field: from.field.clone(), message: from.message.clone() }
}

/// The fulfillment policy's decision.
pub fn decision(from: &wit::Decision) -> FulfillmentDecision {
    match from {
        wit::Decision::Ship(ship) => FulfillmentDecision::Ship(Shipment {
            carrier: ship.carrier.clone(),
            service: ship.service.clone(),
            warehouse: ship.warehouse.clone(),
            estimated_days: ship.estimated_days,
        }),
        wit::Decision::Hold(reason) => FulfillmentDecision::Hold(reason.clone()),
        wit::Decision::Reject(reason) => FulfillmentDecision::Reject(reason.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::decision::DraftLine;

    fn draft(user_id: i64, product_id: i64, unit_price: i64) -> DraftOrder {
        DraftOrder {
            user_id,
            currency: "EUR".into(),
            lines: vec![DraftLine { product_id, sku: "S".into(), name: "N".into(), unit_price, quantity: 2 }],
            attributes: [("promo-code".to_owned(), "X".to_owned())].into(),
        }
    }

    #[test]
    fn a_draft_crosses_unchanged() {
        let order = draft_order(&draft(7, 3, 1_250)).unwrap();
        assert_eq!((order.user_id, order.items[0].product_id, order.items[0].unit_price), (7, 3, 1_250));
        assert_eq!(order.attributes[0].key, "promo-code");
    }

    #[test]
    fn negative_values_are_refused_with_their_field_not_turned_into_zero() {
        assert_eq!(draft_order(&draft(-1, 3, 10)).unwrap_err().field, "user_id");
        assert_eq!(draft_order(&draft(1, 3, -10)).unwrap_err().field, "items/0/unit_price");
    }

    #[test]
    fn a_quote_beyond_the_stores_range_is_a_violation() {
        let wit_quote = wit::Quote {
            lines: vec![],
            subtotal: u64::MAX,
            discount: 0,
            tax: 0,
            shipping: 0,
            total: 0,
            currency: "EUR".into(),
            notes: vec![],
        };
        let refused = quote(&wit_quote).unwrap_err();
        assert_eq!((refused.code.as_str(), refused.field.as_str()), ("amount-too-large", "subtotal"));
    }
}
