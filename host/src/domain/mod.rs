//! The order domain: the state machine, the shapes an order and a product
//! take on the wire, and the parsed inputs. Pure code, unit-tested inline.

pub mod input;
pub mod order;
pub mod product;
pub mod status;

pub use order::{ComponentRecord, HistoryEntry, OrderDetail, OrderLine, OrderSummary, Shipment};
pub use product::Product;
pub use status::OrderStatus;
