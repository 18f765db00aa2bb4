//! The host side of the `orderly:platform` interfaces: one file per WIT
//! interface, each checking the slot's grant before any I/O. The I/O itself
//! goes through a backend trait, so the real clients (Redis, PostgreSQL,
//! reqwest) and the fakes used by tests and golden fixtures are interchangeable.

pub mod config;
pub mod http;
pub mod kv;
pub mod logging;
pub mod sql;

use std::sync::Arc;

use super::bindings::{errors, types};
use super::call::CallState;

pub use http::{HttpBackend, ReqwestHttp};
pub use kv::{KvBackend, MemoryKv, RedisKv};
pub use logging::{LogSink, TracingLogs};
pub use sql::{ComponentLogins, LoginSetupError, NoDatabase, PostgresSql, SqlBackend, SqlQuery, SqliteSql};

/// The backends behind every capability, shared by all calls.
#[derive(Clone)]
pub struct Capabilities {
    /// Backs `kv`.
    pub kv: Arc<dyn KvBackend>,
    /// Backs `sql`.
    pub sql: Arc<dyn SqlBackend>,
    /// Backs `http`.
    pub http: Arc<dyn HttpBackend>,
    /// Receives `logging` lines.
    pub logs: Arc<dyn LogSink>,
}

impl Capabilities {
    /// The no-server default: an in-process key-value map, no database, real
    /// outbound HTTP (still limited to each slot's allowlist), logs to tracing.
    pub fn embedded() -> Self {
        Self {
            kv: Arc::new(MemoryKv::default()),
            sql: Arc::new(NoDatabase),
            http: Arc::new(ReqwestHttp::new()),
            logs: Arc::new(TracingLogs),
        }
    }
}

// Type-only interfaces: nothing to implement, but the linker wants a host.
impl errors::Host for CallState {}
impl types::Host for CallState {}
