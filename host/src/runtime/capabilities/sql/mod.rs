//! `orderly:platform/sql`: one parameterised, read-only statement per call,
//! reaching only the views and tables the slot's grant names, with a
//! statement timeout (never past the call's deadline) and row and byte caps.
//! PostgreSQL in production (a pool and a login of the slot's own), SQLite
//! in the embedded default (a connection of its own under an authorizer).

mod postgres;
mod postgres_logins;
mod sqlite;

use std::time::Instant;

use async_trait::async_trait;

pub use postgres::PostgresSql;
pub use postgres_logins::{ComponentLogins, LoginSetupError, set_up as set_up_logins};
pub use sqlite::SqliteSql;

use crate::runtime::Slot;
use crate::runtime::bindings::errors::Error;
use crate::runtime::bindings::sql::{Host, Rows, Value};
use crate::runtime::call::{CallState, UseOutcome};
use crate::runtime::slot_config::SqlGrant;

/// Longest statement text accepted.
const MAX_STATEMENT_BYTES: usize = 16 << 10;
/// Most parameters one statement may bind.
const MAX_PARAMS: usize = 100;

/// One query of one call, checked against the grant's existence and the
/// statement caps; the backend enforces the rest.
#[derive(Debug, Clone, Copy)]
pub struct SqlQuery<'a> {
    /// Whose query it is: each slot reads as itself.
    pub slot: Slot,
    /// The statement as the component wrote it.
    pub statement: &'a str,
    /// Its parameters, bound in order (`$1`, `$2`, …).
    pub params: &'a [Value],
    /// The slot's grant.
    pub grant: &'a SqlGrant,
    /// When the statement must be over: its grant's timeout from now, or the
    /// call's deadline if that comes first.
    pub deadline: Instant,
}

/// A read-only SQL executor. Implementations enforce what the grant names,
/// its timeout and its caps; the host has already checked that a grant exists.
#[async_trait]
pub trait SqlBackend: Send + Sync {
    /// Runs the query.
    async fn query(&self, query: SqlQuery<'_>) -> Result<Rows, Error>;

    /// Makes the database let `slot` read what `grant` names and nothing
    /// else, when a version with that grant goes live. Backends that
    /// enforce the grant on every query need not do anything here.
    async fn apply_grant(&self, _slot: Slot, _grant: Option<&SqlGrant>) -> Result<(), String> {
        Ok(())
    }
}

/// No database configured: every query is `unavailable`.
pub struct NoDatabase;

#[async_trait]
impl SqlBackend for NoDatabase {
    async fn query(&self, _: SqlQuery<'_>) -> Result<Rows, Error> {
        Err(Error::Unavailable("no database is configured".into()))
    }
}

/// Collects rows while enforcing the grant's caps: the row cap before a
/// row is taken, the byte cap before each value is kept.
struct RowsBuilder<'a> {
    grant: &'a SqlGrant,
    rows: Rows,
    bytes: usize,
}

impl<'a> RowsBuilder<'a> {
    fn new(grant: &'a SqlGrant, columns: Vec<String>) -> Self {
        Self { grant, rows: Rows { columns, values: Vec::new() }, bytes: 0 }
    }

    /// Room for one more row?
    fn start_row(&self) -> Result<(), Error> {
        if self.rows.values.len() >= self.grant.max_rows {
            return Err(Error::LimitExceeded(format!("the query returned more than {} rows", self.grant.max_rows)));
        }
        Ok(())
    }

    /// Counts `bytes` more of the answer.
    fn charge(&mut self, bytes: usize) -> Result<(), Error> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > self.grant.max_bytes {
            return Err(Error::LimitExceeded(format!("the query returned more than {} bytes", self.grant.max_bytes)));
        }
        Ok(())
    }

    fn push(&mut self, row: Vec<Value>) {
        self.rows.values.push(row);
    }

    fn finish(self) -> Rows {
        self.rows
    }
}

/// What a value costs against the byte cap.
fn size_of(value: &Value) -> usize {
    match value {
        Value::Text(text) => text.len(),
        Value::Bytes(bytes) => bytes.len(),
        _ => 8,
    }
}

impl Host for CallState {
    async fn query(&mut self, statement: String, params: Vec<Value>) -> wasmtime::Result<Result<Rows, Error>> {
        let Some(grant) = self.config.grants.sql.clone() else {
            self.record("sql.query", &statement, UseOutcome::Denied);
            return Ok(Err(Error::Denied(format!("the {} slot has no sql grant", self.info.slot))));
        };
        if statement.len() > MAX_STATEMENT_BYTES || params.len() > MAX_PARAMS {
            self.record("sql.query", &statement, UseOutcome::Failed);
            return Ok(Err(Error::Invalid(format!(
                "statements are capped at {MAX_STATEMENT_BYTES} bytes and {MAX_PARAMS} parameters"
            ))));
        }
        // The statement never outlives the call: the database stops it by
        // the call's deadline, whatever the grant allows.
        let deadline = (Instant::now() + grant.timeout()).min(self.deadline);
        let query = SqlQuery { slot: self.info.slot, statement: &statement, params: &params, grant: &grant, deadline };
        let sql = self.capabilities.sql.clone();
        let result = sql.query(query).await;
        let outcome = match &result {
            Ok(_) => UseOutcome::Ok,
            Err(Error::Denied(_)) => UseOutcome::Denied,
            Err(_) => UseOutcome::Failed,
        };
        if let Err(error @ Error::Unavailable(_)) = &result {
            self.note_backend_failure("sql", error);
        }
        self.record("sql.query", &statement, outcome);
        Ok(result)
    }
}
