//! The order service host: it serves the REST API, stores orders, queues
//! fulfillment, and delegates every business rule to a WebAssembly component
//! loaded into one of three slots (see [`runtime`]).
//!
//! Layers point one way:
//!
//! ```text
//! transport    api (REST)          grpc (gRPC)
//!                 │                   │
//! application  fulfillment ──► orders ──► rules        health   auth
//!                 │              │          │             │
//! platform     store ◄──────────────── runtime (wasmtime, capabilities)
//!              domain (pure types, used by all)
//! ```
//!
//! [`app`] assembles one process's parts, [`startup`] runs them.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod domain;
pub mod fulfillment;
pub mod grpc;
pub mod health;
pub mod orders;
pub mod rules;
pub mod runtime;
pub mod startup;
pub mod store;
pub mod telemetry;
