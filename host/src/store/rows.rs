//! Rows as the database returns them, and their conversion to domain types.

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{ComponentRecord, HistoryEntry, OrderDetail, OrderLine, OrderStatus, OrderSummary};

#[derive(sqlx::FromRow)]
pub(super) struct OrderRow {
    pub id: i64,
    pub user_id: i64,
    pub status: String,
    pub status_reason: Option<String>,
    pub shipment: Option<String>,
    pub currency: String,
    pub subtotal: i64,
    pub discount: i64,
    pub tax: i64,
    pub shipping: i64,
    pub total: i64,
    pub notes: String,
    pub attributes: String,
    pub version: i64,
    pub validated_by: String,
    pub priced_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(super) const ORDER_COLUMNS: &str = "id, user_id, status, status_reason, shipment, currency, subtotal, discount, tax, \
     shipping, total, notes, attributes, version, validated_by, priced_by, created_at, updated_at";

#[derive(sqlx::FromRow)]
pub(super) struct LineRow {
    pub order_id: i64,
    pub product_id: i64,
    pub sku: String,
    pub product_name: String,
    pub unit_price: i64,
    pub quantity: i32,
    pub line_total: i64,
}

pub(super) const LINE_COLUMNS: &str = "order_id, product_id, sku, product_name, unit_price, quantity, line_total";

#[derive(sqlx::FromRow)]
pub(super) struct HistoryRow {
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: Option<String>,
    pub correlation_id: Option<String>,
    pub changed_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
pub(super) struct DecisionRow {
    pub slot: String,
    pub component: String,
    pub version: String,
    pub digest: String,
    pub duration_us: i64,
    pub decided_at: DateTime<Utc>,
}

pub(super) fn status(name: &str) -> Result<OrderStatus, StoreError> {
    OrderStatus::parse(name).ok_or_else(|| StoreError::Corrupt(format!("unknown order status {name:?}")))
}

fn json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt(format!("{what}: {error}")))
}

impl From<LineRow> for OrderLine {
    fn from(row: LineRow) -> Self {
        Self {
            product_id: row.product_id,
            sku: row.sku,
            name: row.product_name,
            unit_price: row.unit_price,
            quantity: row.quantity,
            line_total: row.line_total,
        }
    }
}

impl HistoryRow {
    pub fn into_entry(self) -> Result<HistoryEntry, StoreError> {
        Ok(HistoryEntry {
            from: self.from_status.as_deref().map(status).transpose()?,
            to: status(&self.to_status)?,
            reason: self.reason,
            correlation_id: self.correlation_id,
            at: self.changed_at,
        })
    }
}

impl From<DecisionRow> for ComponentRecord {
    fn from(row: DecisionRow) -> Self {
        Self {
            slot: row.slot,
            component: row.component,
            version: row.version,
            digest: row.digest,
            duration_us: row.duration_us,
            at: row.decided_at,
        }
    }
}

impl OrderRow {
    pub fn into_detail(
        self,
        items: Vec<OrderLine>,
        history: Vec<HistoryEntry>,
        components: Vec<ComponentRecord>,
    ) -> Result<OrderDetail, StoreError> {
        Ok(OrderDetail {
            id: self.id,
            user_id: self.user_id,
            status: status(&self.status)?,
            status_reason: self.status_reason,
            shipment: self.shipment.as_deref().map(|text| json(text, "order shipment")).transpose()?,
            currency: self.currency,
            items,
            subtotal: self.subtotal,
            discount: self.discount,
            tax: self.tax,
            shipping: self.shipping,
            total: self.total,
            notes: json(&self.notes, "order notes")?,
            attributes: json(&self.attributes, "order attributes")?,
            version: self.version,
            validated_by: self.validated_by,
            priced_by: self.priced_by,
            components,
            history,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }

    pub fn into_summary(self, items: Vec<OrderLine>) -> Result<OrderSummary, StoreError> {
        Ok(OrderSummary {
            id: self.id,
            user_id: self.user_id,
            status: status(&self.status)?,
            currency: self.currency,
            items,
            total: self.total,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}
