//! Placing an order: parse -> `validation` slot -> products (cache-aside) ->
//! `pricing` slot -> one transaction. Nothing is written unless every step
//! succeeds; the components see the order but never the database's stock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::api::problem::ApiError;
use crate::domain::input::{OrderRequest, Violation};
use crate::domain::{ComponentRecord, OrderDetail, Product};
use crate::runtime::bindings::types::{Attribute, LineItem, Order, Quote};
use crate::runtime::{CallContext, CallError, CallOutput, LoadedComponent, Slot};
use crate::service::Service;
use crate::store::{NewOrder, PricedLine};

impl Service {
    /// Validates, prices and stores an order.
    pub async fn place_order(
        self: &Arc<Self>,
        request: OrderRequest,
        correlation_id: &str,
        idempotency_key: Option<String>,
    ) -> Result<OrderDetail, ApiError> {
        let context = CallContext::new(correlation_id);
        let mut order = Order {
            id: None,
            user_id: request.user_id as u64,
            currency: request.currency.clone(),
            // Validation sees what the customer sent: product ids and quantities.
            // Names and prices are filled in from the catalogue before pricing.
            items: request
                .lines
                .iter()
                .map(|line| LineItem {
                    product_id: line.product_id as u64,
                    sku: String::new(),
                    name: String::new(),
                    unit_price: 0,
                    quantity: line.quantity,
                })
                .collect(),
            attributes: request
                .attributes
                .iter()
                .map(|(key, value)| Attribute { key: key.clone(), value: value.clone() })
                .collect(),
        };

        let validator = self.component(Slot::Validation)?;
        let started = Instant::now();
        let verdict = self.runtime.validate(&validator, &context, &order).await;
        self.observe_call(&validator, started.elapsed(), verdict.as_ref().err());
        let verdict = verdict.map_err(component_error(&validator))?;
        if !verdict.value.is_empty() {
            return Err(ApiError::violations(verdict.value.iter().map(violation).collect()));
        }
        let mut records = vec![record(&validator, &verdict)];

        let products = self.products(&request).await?;
        for (item, line) in order.items.iter_mut().zip(&request.lines) {
            let product = &products[&line.product_id];
            item.sku = product.sku.clone();
            item.name = product.name.clone();
            item.unit_price = product.price as u64;
        }

        let pricer = self.component(Slot::Pricing)?;
        let started = Instant::now();
        let priced = self.runtime.price(&pricer, &context, &order).await;
        self.observe_call(&pricer, started.elapsed(), priced.as_ref().err());
        let priced = priced.map_err(component_error(&pricer))?;
        records.push(record(&pricer, &priced));
        let quote = match priced.value {
            Ok(quote) => quote,
            Err(violations) => return Err(ApiError::violations(violations.iter().map(violation).collect())),
        };
        let new_order = new_order(&request, &order, &quote, records, correlation_id, idempotency_key)?;
        let stored = self.store.create_order(&new_order).await?;
        self.remember(&stored).await;
        Ok(stored)
    }

    /// The component in `slot`, or a 503 when the slot is empty.
    fn component(&self, slot: Slot) -> Result<Arc<LoadedComponent>, ApiError> {
        self.slots.get(slot).ok_or(ApiError::Component { slot: slot.name(), cause: "the slot is empty".into() })
    }

    /// The ordered products, from the cache where possible; every one must
    /// exist, be active and be sold in the order's currency.
    async fn products(&self, request: &OrderRequest) -> Result<HashMap<i64, Product>, ApiError> {
        let mut ids: Vec<i64> = request.lines.iter().map(|line| line.product_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let cached = self.cache.get_many(&ids).await;
        let mut found: HashMap<i64, Product> = cached.into_iter().flatten().map(|p| (p.id, p)).collect();
        let missing: Vec<i64> = ids.iter().copied().filter(|id| !found.contains_key(id)).collect();
        if !missing.is_empty() {
            let loaded = self.store.products_by_id(&missing).await?;
            self.cache.put_many(&loaded).await;
            found.extend(loaded.into_iter().map(|p| (p.id, p)));
        }
        let mut violations = Vec::new();
        for (index, line) in request.lines.iter().enumerate() {
            let Some(product) = found.get(&line.product_id) else {
                return Err(ApiError::not_found(format!("product {} does not exist", line.product_id)));
            };
            if !product.active {
                return Err(ApiError::Conflict {
                    detail: format!("product {} is not available for ordering", product.id),
                });
            }
            if product.currency != request.currency {
                violations.push(Violation::new(
                    "currency-mismatch",
                    format!("items/{index}/product_id"),
                    format!(
                        "product {} is sold in {}, the order is in {}",
                        product.id, product.currency, request.currency
                    ),
                ));
            }
        }
        if violations.is_empty() { Ok(found) } else { Err(ApiError::violations(violations)) }
    }
}

fn violation(from: &crate::runtime::bindings::types::Violation) -> Violation {
    Violation { code: from.code.clone(), field: from.field.clone(), message: from.message.clone() }
}

fn record<T>(component: &LoadedComponent, output: &CallOutput<T>) -> ComponentRecord {
    ComponentRecord {
        slot: component.slot.name().into(),
        component: component.name.to_string(),
        version: component.version.to_string(),
        digest: component.digest.to_string(),
        duration_us: output.elapsed.as_micros() as i64,
        at: crate::store::orders::now(),
    }
}

fn component_error(component: &LoadedComponent) -> impl Fn(CallError) -> ApiError + '_ {
    move |error| ApiError::Component {
        slot: component.slot.name(),
        cause: format!("{}@{} ({}): {error}", component.name, component.version, error.kind()),
    }
}

fn amount(value: u64, field: &str) -> Result<i64, ApiError> {
    i64::try_from(value)
        .map_err(|_| ApiError::violations(vec![Violation::new("amount-too-large", field, "the amount does not fit")]))
}

/// The order to store, from the request and the quote the host checked.
fn new_order(
    request: &OrderRequest,
    order: &Order,
    quote: &Quote,
    components: Vec<ComponentRecord>,
    correlation_id: &str,
    idempotency_key: Option<String>,
) -> Result<NewOrder, ApiError> {
    let mut lines = Vec::with_capacity(order.items.len());
    for (item, priced) in order.items.iter().zip(&quote.lines) {
        lines.push(PricedLine {
            product_id: item.product_id as i64,
            sku: item.sku.clone(),
            name: item.name.clone(),
            unit_price: amount(priced.unit_price, "unit_price")?,
            quantity: i32::try_from(priced.quantity).map_err(|_| {
                ApiError::violations(vec![Violation::new("quantity-out-of-range", "quantity", "too many units")])
            })?,
            line_total: amount(priced.line_total, "line_total")?,
        });
    }
    Ok(NewOrder {
        user_id: request.user_id,
        currency: quote.currency.clone(),
        lines,
        subtotal: amount(quote.subtotal, "subtotal")?,
        discount: amount(quote.discount, "discount")?,
        tax: amount(quote.tax, "tax")?,
        shipping: amount(quote.shipping, "shipping")?,
        total: amount(quote.total, "total")?,
        notes: quote.notes.clone(),
        attributes: request.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>(),
        components,
        correlation_id: correlation_id.to_owned(),
        idempotency_key,
    })
}
