//! The order domain: the state machine, the shapes an order and a product
//! take on the wire, and the parsed inputs. Pure code, unit-tested inline.

pub mod decision;
pub mod input;
pub mod job;
pub mod order;
pub mod product;
pub mod status;
pub mod text;
pub mod violation;
pub mod whole;

pub use job::{Job, JobItem};
pub use order::{ComponentRecord, HistoryEntry, OrderDetail, OrderLine, OrderSummary, Shipment};
pub use product::Product;
pub use status::OrderStatus;

/// The current time at the database's precision (microseconds), so an
/// answer built in memory equals the same order read back.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}
