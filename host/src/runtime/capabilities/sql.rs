//! `orderly:platform/sql`: parameterised, read-only queries with a statement
//! timeout and row and byte caps. PostgreSQL in production, SQLite embedded.

use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Column, Database, Encode, Row, Type, TypeInfo, ValueRef};

use crate::runtime::bindings::errors::Error;
use crate::runtime::bindings::sql::{Host, Rows, Value};
use crate::runtime::call::{CallState, UseOutcome};
use crate::runtime::slot_config::SqlGrant;

/// Longest statement text accepted.
const MAX_STATEMENT_BYTES: usize = 16 << 10;
/// Most parameters one statement may bind.
const MAX_PARAMS: usize = 100;

/// A read-only SQL executor. Implementations enforce the grant's timeout and
/// caps; the host has already checked that a grant exists.
#[async_trait]
pub trait SqlBackend: Send + Sync {
    /// Runs `statement` with `params` bound in order.
    async fn query(&self, statement: &str, params: &[Value], grant: &SqlGrant) -> Result<Rows, Error>;
}

/// No database configured: every query is `unavailable`.
pub struct NoDatabase;

#[async_trait]
impl SqlBackend for NoDatabase {
    async fn query(&self, _: &str, _: &[Value], _: &SqlGrant) -> Result<Rows, Error> {
        Err(Error::Unavailable("no database is configured".into()))
    }
}

/// Collects rows while enforcing the grant's caps.
struct RowsBuilder<'a> {
    grant: &'a SqlGrant,
    rows: Rows,
    bytes: usize,
}

impl<'a> RowsBuilder<'a> {
    fn new(grant: &'a SqlGrant) -> Self {
        Self { grant, rows: Rows { columns: Vec::new(), values: Vec::new() }, bytes: 0 }
    }

    fn push(&mut self, columns: impl FnOnce() -> Vec<String>, row: Vec<Value>) -> Result<(), Error> {
        if self.rows.values.is_empty() {
            self.rows.columns = columns();
        }
        if self.rows.values.len() >= self.grant.max_rows {
            return Err(Error::LimitExceeded(format!("the query returned more than {} rows", self.grant.max_rows)));
        }
        self.bytes += row
            .iter()
            .map(|value| match value {
                Value::Text(text) => text.len(),
                Value::Bytes(bytes) => bytes.len(),
                _ => 8,
            })
            .sum::<usize>();
        if self.bytes > self.grant.max_bytes {
            return Err(Error::LimitExceeded(format!("the query returned more than {} bytes", self.grant.max_bytes)));
        }
        self.rows.values.push(row);
        Ok(())
    }
}

fn database_error(error: sqlx::Error) -> Error {
    match &error {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // query_canceled: the statement timeout fired.
            Some("57014") => Error::Timeout,
            // insufficient_privilege and read_only_sql_transaction: the
            // database itself refused, which is a denial, not a bug.
            Some("42501") | Some("25006") => Error::Denied(db.message().to_string()),
            _ if db.message().contains("readonly") || db.message().contains("read-only") => {
                Error::Denied(db.message().to_string())
            }
            _ => Error::Invalid(db.message().to_string()),
        },
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::TypeNotFound { .. } => {
            Error::Invalid(error.to_string())
        }
        sqlx::Error::PoolTimedOut => Error::Timeout,
        _ => Error::Unavailable("the database is unreachable".into()),
    }
}

fn column_names<R: Row>(row: &R) -> Vec<String> {
    row.columns().iter().map(|column| column.name().to_string()).collect()
}

/// PostgreSQL: each query in its own `READ ONLY` transaction with a
/// `statement_timeout`, optionally under a restricted role.
pub struct PostgresSql {
    pool: PgPool,
}

impl PostgresSql {
    /// Queries through `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// Binds one typed value; the same for both databases.
fn bind<'q, DB: Database>(
    query: Query<'q, DB, <DB as Database>::Arguments<'q>>,
    value: &'q Value,
) -> Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    Option<String>: Encode<'q, DB> + Type<DB>,
    bool: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    f64: Encode<'q, DB> + Type<DB>,
    &'q str: Encode<'q, DB> + Type<DB>,
    &'q [u8]: Encode<'q, DB> + Type<DB>,
{
    match value {
        Value::Null => query.bind(None::<String>),
        Value::Boolean(b) => query.bind(*b),
        Value::Integer(n) => query.bind(*n),
        Value::Float(x) => query.bind(*x),
        Value::Text(text) => query.bind(text.as_str()),
        Value::Bytes(bytes) => query.bind(bytes.as_slice()),
    }
}

fn pg_value(row: &PgRow, index: usize) -> Result<Value, sqlx::Error> {
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_name = raw.type_info().name().to_string();
    Ok(match type_name.as_str() {
        "BOOL" => Value::Boolean(row.try_get(index)?),
        "INT2" => Value::Integer(row.try_get::<i16, _>(index)?.into()),
        "INT4" => Value::Integer(row.try_get::<i32, _>(index)?.into()),
        "INT8" => Value::Integer(row.try_get(index)?),
        "FLOAT4" => Value::Float(row.try_get::<f32, _>(index)?.into()),
        "FLOAT8" => Value::Float(row.try_get(index)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" => Value::Text(row.try_get(index)?),
        "BYTEA" => Value::Bytes(row.try_get(index)?),
        "TIMESTAMPTZ" => Value::Text(row.try_get::<chrono::DateTime<chrono::Utc>, _>(index)?.to_rfc3339()),
        "TIMESTAMP" => Value::Text(row.try_get::<chrono::NaiveDateTime, _>(index)?.to_string()),
        "DATE" => Value::Text(row.try_get::<chrono::NaiveDate, _>(index)?.to_string()),
        "UUID" => Value::Text(row.try_get::<uuid::Uuid, _>(index)?.to_string()),
        "JSON" | "JSONB" => Value::Text(row.try_get::<serde_json::Value, _>(index)?.to_string()),
        other => {
            return Err(sqlx::Error::Decode(
                format!("column {index} has type {other}, which the sql capability does not decode; cast it to text")
                    .into(),
            ));
        }
    })
}

#[async_trait]
impl SqlBackend for PostgresSql {
    async fn query(&self, statement: &str, params: &[Value], grant: &SqlGrant) -> Result<Rows, Error> {
        let work = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SET TRANSACTION READ ONLY").execute(&mut *tx).await?;
            // Neither setting takes a bound parameter; both values are checked
            // (an integer, and an identifier validated when the grant was parsed).
            sqlx::query(&format!("SET LOCAL statement_timeout = {}", grant.timeout_ms.max(1)))
                .execute(&mut *tx)
                .await?;
            if let Some(role) = &grant.role {
                sqlx::query(&format!("SET LOCAL ROLE {role}")).execute(&mut *tx).await?;
            }
            let query = params.iter().fold(sqlx::query(statement), bind);
            let mut rows = RowsBuilder::new(grant);
            {
                let mut stream = query.fetch(&mut *tx);
                while let Some(row) = stream.try_next().await? {
                    let values = (0..row.len()).map(|i| pg_value(&row, i)).collect::<Result<Vec<_>, _>>()?;
                    if let Err(cap) = rows.push(|| column_names(&row), values) {
                        return Ok(Err(cap));
                    }
                }
            }
            tx.rollback().await?;
            Ok::<_, sqlx::Error>(Ok(rows.rows))
        };
        // The statement timeout covers the query; this also bounds waiting for
        // a pooled connection and the round trips around it.
        match tokio::time::timeout(grant.timeout() * 2, work).await {
            Err(_) => Err(Error::Timeout),
            Ok(Err(error)) => Err(database_error(error)),
            Ok(Ok(result)) => result,
        }
    }
}

/// SQLite: a pool opened read-only on the service's database file.
pub struct SqliteSql {
    pool: SqlitePool,
}

impl SqliteSql {
    /// Queries through `pool`, which the caller opened with `read_only(true)`.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

fn sqlite_value(row: &SqliteRow, index: usize) -> Result<Value, sqlx::Error> {
    let raw = row.try_get_raw(index)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    // SQLite is dynamically typed: decode by the storage class of the value
    // itself, not by the column's declared type.
    let type_name = raw.type_info().name().to_string();
    Ok(match type_name.as_str() {
        "INTEGER" | "BOOLEAN" => Value::Integer(row.try_get_unchecked(index)?),
        "REAL" => Value::Float(row.try_get_unchecked(index)?),
        "BLOB" => Value::Bytes(row.try_get_unchecked(index)?),
        _ => Value::Text(row.try_get_unchecked(index)?),
    })
}

#[async_trait]
impl SqlBackend for SqliteSql {
    async fn query(&self, statement: &str, params: &[Value], grant: &SqlGrant) -> Result<Rows, Error> {
        let work = async {
            let query = params.iter().fold(sqlx::query(statement), bind);
            let mut rows = RowsBuilder::new(grant);
            let mut stream = query.fetch(&self.pool);
            while let Some(row) = stream.try_next().await? {
                let values = (0..row.len()).map(|i| sqlite_value(&row, i)).collect::<Result<Vec<_>, _>>()?;
                if let Err(cap) = rows.push(|| column_names(&row), values) {
                    return Ok(Err(cap));
                }
            }
            Ok::<_, sqlx::Error>(Ok(rows.rows))
        };
        match tokio::time::timeout(grant.timeout(), work).await {
            Err(_) => Err(Error::Timeout),
            Ok(Err(error)) => Err(database_error(error)),
            Ok(Ok(result)) => result,
        }
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
        // The statement never outlives the call: the server cancels it by
        // the call's deadline, whatever the grant allows.
        let left = self.deadline.saturating_duration_since(std::time::Instant::now());
        let grant = SqlGrant { timeout_ms: grant.timeout_ms.min(left.as_millis() as u64).max(1), ..grant };
        let sql = self.capabilities.sql.clone();
        let result = sql.query(&statement, &params, &grant).await;
        let outcome = if result.is_ok() { UseOutcome::Ok } else { UseOutcome::Failed };
        self.record("sql.query", &statement, outcome);
        Ok(result)
    }
}
