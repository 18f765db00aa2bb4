//! The service's types as the proto's messages, and the requests back.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use super::proto;
use crate::domain::input::{CreateOrderRequest, LineRequest};
use crate::domain::{ComponentRecord, HistoryEntry, OrderDetail, OrderLine, OrderStatus, OrderSummary, Shipment};

pub fn timestamp(at: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 })
}

pub fn status(status: OrderStatus) -> proto::OrderStatus {
    use proto::OrderStatus as Wire;
    match status {
        OrderStatus::Pending => Wire::Pending,
        OrderStatus::Processing => Wire::Processing,
        OrderStatus::OnHold => Wire::OnHold,
        OrderStatus::Fulfilled => Wire::Fulfilled,
        OrderStatus::Shipped => Wire::Shipped,
        OrderStatus::Delivered => Wire::Delivered,
        OrderStatus::Cancelled => Wire::Cancelled,
    }
}

/// The status a request names; `None` for UNSPECIFIED or a number the
/// proto does not define.
pub fn requested_status(value: i32) -> Option<OrderStatus> {
    use proto::OrderStatus as Wire;
    Some(match Wire::try_from(value).ok()? {
        Wire::Unspecified => return None,
        Wire::Pending => OrderStatus::Pending,
        Wire::Processing => OrderStatus::Processing,
        Wire::OnHold => OrderStatus::OnHold,
        Wire::Fulfilled => OrderStatus::Fulfilled,
        Wire::Shipped => OrderStatus::Shipped,
        Wire::Delivered => OrderStatus::Delivered,
        Wire::Cancelled => OrderStatus::Cancelled,
    })
}

/// The request in the REST API's shape, so both front ends parse and check
/// an order the same way.
pub fn create_request(request: proto::CreateOrderRequest) -> CreateOrderRequest {
    let items = (!request.items.is_empty()).then(|| {
        request.items.iter().map(|line| LineRequest { product_id: line.product_id, quantity: line.quantity }).collect()
    });
    CreateOrderRequest {
        user_id: request.user_id,
        currency: request.currency,
        items,
        product_id: request.product_id,
        quantity: request.quantity,
        attributes: request.attributes.into_iter().collect(),
    }
}

pub fn order(order: OrderDetail) -> proto::Order {
    proto::Order {
        id: order.id,
        user_id: order.user_id,
        status: status(order.status).into(),
        status_reason: order.status_reason,
        shipment: order.shipment.map(shipment),
        currency: order.currency,
        items: order.items.into_iter().map(line).collect(),
        subtotal: order.subtotal,
        discount: order.discount,
        tax: order.tax,
        shipping: order.shipping,
        total: order.total,
        notes: order.notes,
        attributes: order.attributes.into_iter().collect(),
        version: order.version,
        validated_by: order.validated_by,
        priced_by: order.priced_by,
        components: order.components.into_iter().map(component).collect(),
        history: order.history.into_iter().map(history).collect(),
        created_at: timestamp(order.created_at),
        updated_at: timestamp(order.updated_at),
    }
}

pub fn summary(order: OrderSummary) -> proto::OrderSummary {
    proto::OrderSummary {
        id: order.id,
        user_id: order.user_id,
        status: status(order.status).into(),
        currency: order.currency,
        items: order.items.into_iter().map(line).collect(),
        total: order.total,
        created_at: timestamp(order.created_at),
        updated_at: timestamp(order.updated_at),
    }
}

fn line(line: OrderLine) -> proto::OrderLine {
    proto::OrderLine {
        product_id: line.product_id,
        sku: line.sku,
        name: line.name,
        unit_price: line.unit_price,
        quantity: line.quantity,
        line_total: line.line_total,
    }
}

fn shipment(shipment: Shipment) -> proto::Shipment {
    proto::Shipment {
        carrier: shipment.carrier,
        service: shipment.service,
        warehouse: shipment.warehouse,
        estimated_days: shipment.estimated_days,
    }
}

fn component(record: ComponentRecord) -> proto::ComponentRecord {
    proto::ComponentRecord {
        slot: record.slot,
        component: record.component,
        version: record.version,
        digest: record.digest,
        duration_us: record.duration_us,
        at: timestamp(record.at),
    }
}

fn history(entry: HistoryEntry) -> proto::HistoryEntry {
    proto::HistoryEntry {
        from: entry.from.map(status).unwrap_or(proto::OrderStatus::Unspecified).into(),
        to: status(entry.to).into(),
        reason: entry.reason,
        correlation_id: entry.correlation_id.unwrap_or_default(),
        at: timestamp(entry.at),
    }
}
