//! The order service host: it serves the REST API, stores orders, queues
//! fulfillment, and delegates every business rule to a WebAssembly component
//! loaded into one of three slots (see [`runtime`]).

pub mod runtime;
pub mod telemetry;
