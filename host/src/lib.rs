//! The order service host: it serves the REST API, stores orders, queues
//! fulfillment, and delegates every business rule to a WebAssembly component
//! loaded into one of three slots (see [`runtime`]).

pub mod api;
pub mod checkout;
pub mod config;
pub mod domain;
pub mod queue;
pub mod runtime;
pub mod service;
pub mod startup;
pub mod store;
pub mod swap;
pub mod telemetry;
pub mod worker;
