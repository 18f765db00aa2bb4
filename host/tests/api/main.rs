//! API tests: the whole service on port 0, once on the embedded backend and
//! once on PostgreSQL + Redis, through HTTP only (plus the store for checks).

mod helpers;

mod auth;
mod cli;
mod concurrency;
mod dead_letters;
mod edge;
mod errors;
mod fleet;
mod fulfillment;
mod fulfillment_faults;
mod grpc;
mod grpc_python;
mod health;
mod idempotency;
mod observability;
mod openapi;
mod orders;
mod platform_faults;
mod processes;
mod products;
mod registry;
mod sandbox;
mod swap;
mod text;
