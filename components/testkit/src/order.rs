//! A builder for test orders.

use host::runtime::bindings::types::{Attribute, LineItem, Order, Quote};

/// Builds an [`Order`] line by line.
#[derive(Debug, Clone)]
pub struct OrderBuilder {
    order: Order,
}

impl OrderBuilder {
    /// An EUR order for `user_id` with no lines yet.
    pub fn new(user_id: u64) -> Self {
        Self { order: Order { id: None, user_id, currency: "EUR".into(), items: vec![], attributes: vec![] } }
    }

    /// Sets the order's id, as for a stored order.
    pub fn id(mut self, id: u64) -> Self {
        self.order.id = Some(id);
        self
    }

    /// Sets the currency.
    pub fn currency(mut self, currency: &str) -> Self {
        self.order.currency = currency.into();
        self
    }

    /// Adds a line for product `product_id` (sku `SKU-<id>`).
    pub fn item(mut self, product_id: u64, unit_price: u64, quantity: u32) -> Self {
        self.order.items.push(LineItem {
            product_id,
            sku: format!("SKU-{product_id}"),
            name: format!("Product {product_id}"),
            unit_price,
            quantity,
        });
        self
    }

    /// Adds an attribute.
    pub fn attribute(mut self, key: &str, value: &str) -> Self {
        self.order.attributes.push(Attribute { key: key.into(), value: value.into() });
        self
    }

    /// The order.
    pub fn build(self) -> Order {
        self.order
    }
}

/// A quote that only carries a total, for policies that decide on the total:
/// no lines, no discount, tax or shipping.
pub fn quote_with_total(total: u64, currency: &str) -> Quote {
    Quote {
        lines: vec![],
        subtotal: total,
        discount: 0,
        tax: 0,
        shipping: 0,
        total,
        currency: currency.into(),
        notes: vec![],
    }
}
