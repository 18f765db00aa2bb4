//! PostgreSQL for components: each slot queries through a pool of its own,
//! under a login of its own that may read only what the slot's grant names
//! (see `postgres_logins`). The service's own login and connections are
//! never lent to a component.
//!
//! One query is: `BEGIN READ ONLY` with a statement timeout, the statement
//! wrapped as `SELECT * FROM (<statement>) AS component_query` (so the
//! server's parser accepts one query and nothing else: no `COPY`, `SET`,
//! `PREPARE`, `DEALLOCATE`, data-modifying `WITH`, second statement), then
//! `ROLLBACK` and all `DISCARD ALL` does, so nothing the statement did to its session
//! (a setting, an advisory lock, a prepared plan) reaches the next call. The
//! work runs on a task of its own: a call stopped at its deadline does not
//! leave a connection half-way through; the server cancels the statement at
//! the same deadline, and the connection is reset before it is reused (or
//! closed if it cannot be).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Column, Connection, Executor, Postgres, Row, TypeInfo, ValueRef};

use super::postgres_logins::ComponentLogins;
use super::{RowsBuilder, SqlBackend, SqlQuery, size_of};
use crate::runtime::Slot;
use crate::runtime::bindings::errors::Error;
use crate::runtime::bindings::sql::{Rows, Value};
use crate::runtime::slot_config::SqlGrant;

/// Connections one slot's components may hold in this process.
const CONNECTIONS_PER_SLOT: u32 = 4;

/// The `sql` capability on PostgreSQL.
pub struct PostgresSql {
    /// The service's own pool: used only to manage the slots' privileges,
    /// never to run a component's statement.
    admin: PgPool,
    logins: ComponentLogins,
    /// One pool per slot, under the slot's login, connecting on first use.
    pools: [PgPool; 3],
}

impl PostgresSql {
    /// Components reach the database `admin` is connected to, each slot as
    /// its login from `logins`.
    pub fn new(admin: PgPool, logins: ComponentLogins) -> Self {
        let base: PgConnectOptions = (*admin.connect_options()).clone();
        let pools = Slot::ALL.map(|slot| {
            let mut options = base.clone().username(&logins.role(slot)).application_name("orderly-component");
            if let Some(password) = &logins.password {
                options = options.password(password);
            }
            PgPoolOptions::new()
                .max_connections(CONNECTIONS_PER_SLOT)
                .min_connections(0)
                .acquire_timeout(Duration::from_secs(5))
                .idle_timeout(Duration::from_secs(60))
                // Every connection is reset after each use (below).
                .test_before_acquire(false)
                .connect_lazy_with(options)
        });
        Self { admin, logins, pools }
    }

    /// How components log in.
    pub fn logins(&self) -> &ComponentLogins {
        &self.logins
    }
}

#[async_trait]
impl SqlBackend for PostgresSql {
    async fn query(&self, query: SqlQuery<'_>) -> Result<Rows, Error> {
        let pool = self.pools[query.slot as usize].clone();
        let role = self.logins.role(query.slot);
        let statement = wrap(query.statement);
        let params = query.params.to_vec();
        let grant = Arc::new(query.grant.clone());
        let deadline = query.deadline;
        let work = tokio::spawn(async move { run(pool, &role, &statement, &params, &grant, deadline).await });
        work.await.unwrap_or_else(|error| Err(Error::Unavailable(format!("the query task failed: {error}"))))
    }

    async fn apply_grant(&self, slot: Slot, grant: Option<&SqlGrant>) -> Result<(), String> {
        super::postgres_logins::apply_grant(&self.admin, &self.logins.role(slot), grant).await
    }
}

/// The statement as the only query the server will accept from a component.
fn wrap(statement: &str) -> String {
    // A trailing `;` is a habit, not a second statement. Anything else that
    // is not one query is a syntax error inside the parentheses.
    let statement = statement.trim_end().trim_end_matches(';');
    format!("SELECT * FROM (\n{statement}\n) AS component_query")
}

/// Acquires a connection of the slot's login, runs the query, resets the session.
async fn run(
    pool: PgPool,
    role: &str,
    statement: &str,
    params: &[Value],
    grant: &SqlGrant,
    deadline: Instant,
) -> Result<Rows, Error> {
    let mut connection = match tokio::time::timeout_at(deadline.into(), pool.acquire()).await {
        Err(_) => return Err(Error::Timeout),
        Ok(Err(sqlx::Error::PoolTimedOut)) => return Err(Error::Timeout),
        Ok(Err(error)) => {
            return Err(Error::Unavailable(format!("the component login {role} cannot connect: {}", brief(&error))));
        }
        Ok(Ok(connection)) => connection,
    };
    let answer = select(&mut connection, statement, params, grant, deadline).await;
    if let Err(error) = reset(&mut connection).await {
        tracing::warn!(role, error = %brief(&error), "a component session could not be reset; closing it");
        connection.close_on_drop();
    }
    answer
}

async fn select(
    connection: &mut PoolConnection<Postgres>,
    statement: &str,
    params: &[Value],
    grant: &SqlGrant,
    deadline: Instant,
) -> Result<Rows, Error> {
    // Measured now, when the statement is about to start: the server
    // cancels it at the deadline itself.
    let timeout_ms = deadline.saturating_duration_since(Instant::now()).as_millis().max(1);
    let begin = format!(
        "BEGIN READ ONLY; SET LOCAL statement_timeout = {timeout_ms}; SET LOCAL lock_timeout = {timeout_ms}; \
         SET LOCAL idle_in_transaction_session_timeout = {}",
        timeout_ms + 1000
    );
    connection.execute(sqlx::raw_sql(&begin)).await.map_err(database_error)?;
    // Not prepared under a name: nothing of the statement outlives the call.
    let query = params.iter().fold(sqlx::query(statement).persistent(false), bind);
    let mut stream = query.fetch(&mut **connection);
    let mut rows: Option<RowsBuilder> = None;
    while let Some(row) = stream.try_next().await.map_err(database_error)? {
        let rows = rows.get_or_insert_with(|| RowsBuilder::new(grant, column_names(&row)));
        rows.start_row()?;
        let mut values = Vec::with_capacity(row.len());
        for index in 0..row.len() {
            let value = pg_value(&row, index).map_err(database_error)?;
            rows.charge(size_of(&value))?;
            values.push(value);
        }
        rows.push(values);
    }
    Ok(rows.map(RowsBuilder::finish).unwrap_or(Rows { columns: Vec::new(), values: Vec::new() }))
}

/// Ends the transaction, then what `DISCARD ALL` does, statement by
/// statement (`DISCARD ALL` itself may not follow `ROLLBACK` in one message,
/// and a round trip of its own costs more than the whole list).
const RESET: &str = "ROLLBACK; CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; \
                     UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES";

/// Ends the transaction and discards everything the session holds: settings,
/// advisory locks, prepared statements (sqlx's own cache first, so it does
/// not name statements that are gone), temporary objects, listeners.
async fn reset(connection: &mut PoolConnection<Postgres>) -> Result<(), sqlx::Error> {
    connection.clear_cached_statements().await?;
    connection.execute(sqlx::raw_sql(RESET)).await?;
    Ok(())
}

/// Binds one typed value.
fn bind<'q>(query: Query<'q, Postgres, PgArguments>, value: &'q Value) -> Query<'q, Postgres, PgArguments> {
    match value {
        Value::Null => query.bind(None::<String>),
        Value::Boolean(b) => query.bind(*b),
        Value::Integer(n) => query.bind(*n),
        Value::Float(x) => query.bind(*x),
        Value::Text(text) => query.bind(text.as_str()),
        Value::Bytes(bytes) => query.bind(bytes.as_slice()),
    }
}

fn column_names(row: &PgRow) -> Vec<String> {
    row.columns().iter().map(|column| column.name().to_string()).collect()
}

/// The error's text without connection details.
fn brief(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    }
}

/// Maps what the server said to what the component is told.
fn database_error(error: sqlx::Error) -> Error {
    let sqlx::Error::Database(db) = &error else {
        return match error {
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::TypeNotFound { .. } => {
                Error::Invalid(error.to_string())
            }
            sqlx::Error::PoolTimedOut => Error::Timeout,
            _ => Error::Unavailable("the database is unreachable".into()),
        };
    };
    let message = db.message().to_string();
    match db.code().as_deref() {
        // query_canceled: the statement timeout fired.
        Some("57014") => Error::Timeout,
        // insufficient_privilege (not granted) and read_only_sql_transaction.
        Some("42501") | Some("25006") => Error::Denied(message),
        Some("42601") => {
            Error::Invalid(format!("{message} (a component may run one query: SELECT, WITH … SELECT, VALUES or TABLE)"))
        }
        // The server is going away or refusing connections.
        Some(code) if code.starts_with("57") || code.starts_with("08") => Error::Unavailable(message),
        _ => Error::Invalid(message),
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

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn the_statement_is_wrapped_as_one_query() {
        assert_eq!(wrap("SELECT 1 ;  \n"), "SELECT * FROM (\nSELECT 1 \n) AS component_query");
        // A comment cannot swallow the closing parenthesis: it ends at the newline.
        assert!(wrap("SELECT 1 -- comment").ends_with("-- comment\n) AS component_query"));
    }
}
