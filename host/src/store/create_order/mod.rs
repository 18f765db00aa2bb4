//! Storing a priced order in one transaction: the order, its lines, its
//! history, the component record, the outbox rows, the stock (decremented
//! only where enough remains) and, when keyed, the idempotency record.
//! Nothing is written if any step fails. PostgreSQL does it in one
//! statement ([`postgres`]), SQLite a statement at a time ([`sqlite`]).

mod postgres;
mod sqlite;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::statements::now;
use super::{Pool, Store, StoreError};
use crate::domain::{ComponentRecord, HistoryEntry, OrderDetail, OrderLine, OrderStatus};

/// One priced line, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct PricedLine {
    pub product_id: i64,
    pub sku: String,
    pub name: String,
    pub unit_price: i64,
    pub quantity: i32,
    pub line_total: i64,
}

/// A validated and priced order, ready to store.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub user_id: i64,
    pub currency: String,
    pub lines: Vec<PricedLine>,
    pub subtotal: i64,
    pub discount: i64,
    pub tax: i64,
    pub shipping: i64,
    pub total: i64,
    pub notes: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    /// The validation and pricing calls that decided it.
    pub components: Vec<ComponentRecord>,
    pub correlation_id: String,
    /// When set, the key's record is completed with this order's answer in
    /// the same transaction.
    pub idempotency_key: Option<String>,
}

impl Store {
    /// Stores a priced order (see the module's description).
    pub async fn create_order(&self, order: &NewOrder) -> Result<OrderDetail, StoreError> {
        let at = now();
        let detail = match &self.pool {
            Pool::Postgres(pool) => postgres::create(pool, order, at).await?,
            Pool::Sqlite(pool) => sqlite::create(pool, order, at).await?,
        };
        self.announce_outbox();
        Ok(detail)
    }
}

impl NewOrder {
    /// The stored order, as the create transaction leaves it.
    fn detail(&self, id: i64, at: DateTime<Utc>) -> OrderDetail {
        OrderDetail {
            id,
            user_id: self.user_id,
            status: OrderStatus::Pending,
            status_reason: None,
            shipment: None,
            currency: self.currency.clone(),
            items: self.lines.iter().map(PricedLine::stored).collect(),
            subtotal: self.subtotal,
            discount: self.discount,
            tax: self.tax,
            shipping: self.shipping,
            total: self.total,
            notes: self.notes.clone(),
            attributes: self.attributes.clone(),
            version: 1,
            validated_by: self.decided_by("validation"),
            priced_by: self.decided_by("pricing"),
            components: self.components.clone(),
            history: vec![HistoryEntry {
                from: None,
                to: OrderStatus::Pending,
                reason: None,
                correlation_id: Some(self.correlation_id.clone()),
                at,
            }],
            created_at: at,
            updated_at: at,
        }
    }

    /// Units wanted per product, in product-id order: the order in which
    /// stock rows are locked, so two orders can never deadlock.
    fn units_by_product(&self) -> BTreeMap<i64, i64> {
        let mut wanted = BTreeMap::new();
        for line in &self.lines {
            *wanted.entry(line.product_id).or_insert(0) += i64::from(line.quantity);
        }
        wanted
    }

    /// `name@version` of the component that decided `slot`.
    fn decided_by(&self, slot: &str) -> String {
        self.components
            .iter()
            .find(|record| record.slot == slot)
            .map(|record| format!("{}@{}", record.component, record.version))
            .unwrap_or_default()
    }

    /// The notes and attributes as stored (JSON text).
    fn json_columns(&self) -> Result<(String, String), StoreError> {
        let corrupt = |error: serde_json::Error| StoreError::Corrupt(error.to_string());
        Ok((
            serde_json::to_string(&self.notes).map_err(corrupt)?,
            serde_json::to_string(&self.attributes).map_err(corrupt)?,
        ))
    }
}

impl PricedLine {
    fn stored(&self) -> OrderLine {
        OrderLine {
            product_id: self.product_id,
            sku: self.sku.clone(),
            name: self.name.clone(),
            unit_price: self.unit_price,
            quantity: self.quantity,
            line_total: self.line_total,
        }
    }
}

/// The stored answer an idempotency key is completed with.
fn answer(detail: &OrderDetail) -> Result<String, StoreError> {
    serde_json::to_string(detail).map_err(|error| StoreError::Corrupt(error.to_string()))
}
