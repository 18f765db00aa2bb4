//! A fulfillment job on the wire: the seeds' format (`order_id`, `product_id`,
//! `quantity`, `correlation_id`, `timestamp`) plus a unique `job_id` and every
//! line of the order.

use serde::{Deserialize, Serialize};

use crate::domain::OrderDetail;

/// One line of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobItem {
    pub product_id: i64,
    pub quantity: i32,
}

/// "Fulfil this order": what the relay pushes to `fulfillment_queue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Unique per job (a re-published order gets a new one).
    pub job_id: String,
    pub order_id: i64,
    /// The first line's product, as the seeds' single-line format had it.
    pub product_id: Option<i64>,
    /// The first line's quantity.
    pub quantity: Option<i32>,
    /// Every line.
    #[serde(default)]
    pub items: Vec<JobItem>,
    /// The request that placed the order; the worker logs under it.
    pub correlation_id: String,
    /// When the job was written (RFC 3339).
    pub timestamp: String,
}

impl Job {
    /// A new job for a stored order.
    pub fn for_order(order: &OrderDetail, correlation_id: &str) -> Self {
        let items =
            order.items.iter().map(|line| JobItem { product_id: line.product_id, quantity: line.quantity }).collect();
        Self::new(order.id, items, correlation_id)
    }

    /// A new job for order `order_id` with these lines.
    pub fn new(order_id: i64, items: Vec<JobItem>, correlation_id: &str) -> Self {
        Self {
            job_id: uuid::Uuid::new_v4().to_string(),
            order_id,
            product_id: items.first().map(|item| item.product_id),
            quantity: items.first().map(|item| item.quantity),
            items,
            correlation_id: correlation_id.to_owned(),
            timestamp: super::now().to_rfc3339(),
        }
    }

    /// The job as sent on the queue.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a job always serialises")
    }

    /// Reads a job; the error says what is wrong with a poison message.
    pub fn parse(payload: &str) -> Result<Self, String> {
        serde_json::from_str(payload).map_err(|error| format!("not a fulfillment job: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_seed_fields_and_reads_a_seed_message() {
        let seed = r#"{"order_id": 7, "product_id": 3, "quantity": 2, "correlation_id": "abc",
                       "timestamp": "2026-01-01T00:00:00Z", "job_id": "j-1"}"#;
        let job = Job::parse(seed).unwrap();
        assert_eq!((job.order_id, job.product_id, job.quantity, job.items.len()), (7, Some(3), Some(2), 0));
        let wire: serde_json::Value = serde_json::from_str(&job.to_json()).unwrap();
        for field in ["job_id", "order_id", "product_id", "quantity", "items", "correlation_id", "timestamp"] {
            assert!(wire.get(field).is_some(), "{field} in {wire}");
        }
        assert!(Job::parse("{\"order_id\": \"seven\"}").unwrap_err().contains("not a fulfillment job"));
    }
}
