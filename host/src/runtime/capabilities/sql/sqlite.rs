//! SQLite for components (the embedded default): connections of their own,
//! opened read-only on the service's database file, never the service's.
//! SQLite itself enforces every rule, not string matching:
//! - what is named: the statement is first compiled against an *outline*,
//!   an in-memory database holding only empty tables shaped like the
//!   granted relations. A statement naming anything else (another table, a
//!   view that is not granted, a `WITH` query that reads one and borrows a
//!   granted view's name) fails there and never reaches the data;
//! - what is read: an authorizer allows `SELECT`, function calls and
//!   reading the granted relations (and, for a granted view, what the view
//!   itself reads) and denies everything else: `ATTACH`, `PRAGMA`, `BEGIN`,
//!   temporary tables and views, writes;
//! - one statement, read-only: a second statement in the text is refused,
//!   and `sqlite3_stmt_readonly` must hold;
//! - time: a progress handler stops the statement at its deadline on its
//!   blocking thread (not just its future);
//! - size: no string or blob larger than the byte cap is ever built, and
//!   each value is counted before it is copied out.
//!
//! A connection goes back for reuse only in autocommit mode with its hooks
//! removed; anything else is closed.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Batch, Connection, ErrorCode, OpenFlags, Statement};
use tokio::sync::Semaphore;

use super::{RowsBuilder, SqlBackend, SqlQuery};
use crate::runtime::Slot;
use crate::runtime::bindings::errors::Error;
use crate::runtime::bindings::sql::{Rows, Value};
use crate::runtime::slot_config::SqlGrant;

/// Statements of one slot running at once (each holds a blocking thread).
const QUERIES_PER_SLOT: usize = 2;
/// Idle connections kept for reuse.
const IDLE_CONNECTIONS: usize = 4;
/// How often (in virtual machine steps) the deadline is looked at.
const PROGRESS_STEPS: i32 = 1000;

/// The granted relations, lower-cased: what an outline is built for.
type Relations = BTreeSet<String>;

/// Connections shared by the calls: idle ones on the file, and one outline
/// per set of granted relations.
#[derive(Default)]
struct Connections {
    idle: Mutex<Vec<Connection>>,
    outlines: Mutex<HashMap<Relations, Connection>>,
}

/// The `sql` capability on the embedded SQLite file.
pub struct SqliteSql {
    path: PathBuf,
    connections: Arc<Connections>,
    turns: [Arc<Semaphore>; 3],
}

impl SqliteSql {
    /// Components read the database file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            connections: Arc::default(),
            turns: Slot::ALL.map(|_| Arc::new(Semaphore::new(QUERIES_PER_SLOT))),
        }
    }
}

#[async_trait]
impl SqlBackend for SqliteSql {
    async fn query(&self, query: SqlQuery<'_>) -> Result<Rows, Error> {
        let turns = self.turns[query.slot as usize].clone();
        let turn = match tokio::time::timeout_at(query.deadline.into(), turns.acquire_owned()).await {
            Ok(Ok(turn)) => turn,
            _ => return Err(Error::Timeout),
        };
        let (path, connections) = (self.path.clone(), self.connections.clone());
        let (statement, params, grant) = (query.statement.to_owned(), query.params.to_vec(), query.grant.clone());
        let deadline = query.deadline;
        let work = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let call = Call { statement: &statement, params: &params, grant: &grant, deadline };
            run(&path, &connections, &call)
        });
        work.await.unwrap_or_else(|error| Err(Error::Unavailable(format!("the query thread failed: {error}"))))
    }
}

/// One statement to run, with what bounds it.
struct Call<'a> {
    statement: &'a str,
    params: &'a [Value],
    grant: &'a SqlGrant,
    deadline: Instant,
}

/// Takes a connection, checks the statement against the grant's outline,
/// runs it under the grant, gives the connection back if clean.
fn run(path: &Path, connections: &Connections, call: &Call<'_>) -> Result<Rows, Error> {
    let reused = connections.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
    let connection = match reused {
        Some(connection) => connection,
        None => open(path)?,
    };
    let relations: Relations = call.grant.relation_names().map(|(_, name)| name.to_ascii_lowercase()).collect();
    let answer = check_outline(connections, &connection, &relations, call.statement).and_then(|()| {
        guard(&connection, relations, call);
        let answer = select(&connection, call);
        connection.authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
        connection.progress_handler(0, None::<fn() -> bool>);
        answer
    });
    if connection.is_autocommit() {
        let mut idle = connections.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(connection);
        }
    }
    answer
}

fn open(path: &Path) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags(path, flags)
        .map_err(|error| Error::Unavailable(format!("cannot open the database: {error}")))?;
    // Nothing can be attached, whatever the authorizer says.
    connection.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0);
    connection.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, 1 << 20);
    connection.set_limit(Limit::SQLITE_LIMIT_VARIABLE_NUMBER, 100);
    Ok(connection)
}

/// Compiles the statement against the outline of `relations`: it may name
/// those and nothing else of the database.
fn check_outline(
    connections: &Connections,
    file: &Connection,
    relations: &Relations,
    statement: &str,
) -> Result<(), Error> {
    let mut outlines = connections.outlines.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !outlines.contains_key(relations) {
        outlines.insert(relations.clone(), outline(file, relations)?);
    }
    let outline = &outlines[relations];
    let readable = relations.clone();
    outline.authorizer(Some(move |context: AuthContext<'_>| authorize(&readable, false, &context)));
    let compiled = outline.prepare(statement).map(drop);
    outline.authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
    compiled.map_err(|error| match sqlite_error(error) {
        Error::Invalid(message) if message.starts_with("no such table") => {
            Error::Denied(format!("the statement reads outside its grant ({message})"))
        }
        other => other,
    })
}

/// An in-memory database with an empty table per granted relation, with the
/// relation's columns as the file has them. A relation the file lacks gets
/// no table (naming it fails as it would on the file).
fn outline(file: &Connection, relations: &Relations) -> Result<Connection, Error> {
    let outline = Connection::open_in_memory().map_err(|error| Error::Unavailable(error.to_string()))?;
    for relation in relations {
        let columns: Vec<String> = file
            .prepare("SELECT name FROM pragma_table_info(?1)")
            .and_then(|mut columns| columns.query_map([relation], |row| row.get(0))?.collect())
            .map_err(|error| Error::Unavailable(format!("cannot read the shape of {relation}: {error}")))?;
        if columns.is_empty() {
            continue;
        }
        let quoted = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
        let columns: Vec<String> = columns.iter().map(|column| quoted(column)).collect();
        let create = format!("CREATE TABLE {} ({})", quoted(relation), columns.join(", "));
        outline.execute_batch(&create).map_err(|error| Error::Unavailable(error.to_string()))?;
    }
    Ok(outline)
}

/// Installs this call's authorizer, deadline and value size cap.
fn guard(connection: &Connection, relations: Relations, call: &Call<'_>) {
    connection.authorizer(Some(move |context: AuthContext<'_>| authorize(&relations, true, &context)));
    let deadline = call.deadline;
    connection.progress_handler(PROGRESS_STEPS, Some(move || Instant::now() >= deadline));
    let largest = i32::try_from(call.grant.max_bytes.saturating_add(1)).unwrap_or(i32::MAX);
    connection.set_limit(Limit::SQLITE_LIMIT_LENGTH, largest);
}

/// Allows a query and reading what the grant names; denies everything else.
/// With `through_views`, a granted view may read what it reads (the outline
/// has shown that every such name really is the granted view).
fn authorize(readable: &Relations, through_views: bool, context: &AuthContext<'_>) -> Authorization {
    let named = |name: &str| readable.contains(&name.to_ascii_lowercase());
    match context.action {
        AuthAction::Select | AuthAction::Function { .. } | AuthAction::Recursive => Authorization::Allow,
        // A `WITH` query's own rows: no database behind them.
        AuthAction::Read { .. } if context.database_name.is_none() => Authorization::Allow,
        AuthAction::Read { table_name, .. }
            if context.database_name == Some("main")
                && (named(table_name) || (through_views && context.accessor.is_some_and(named))) =>
        {
            Authorization::Allow
        }
        _ => Authorization::Deny,
    }
}

/// Prepares exactly one read-only statement, binds, collects the rows.
fn select(connection: &Connection, call: &Call<'_>) -> Result<Rows, Error> {
    let mut batch = Batch::new(connection, call.statement);
    let mut prepared = batch.next().map_err(sqlite_error)?.ok_or_else(|| Error::Invalid("no statement".into()))?;
    if batch.next().map_err(sqlite_error)?.is_some() {
        return Err(Error::Invalid("only one statement may be run per query".into()));
    }
    if !prepared.readonly() {
        return Err(Error::Denied("only a read-only statement may be run".into()));
    }
    bind(&mut prepared, call.params)?;
    let columns: Vec<String> = prepared.column_names().into_iter().map(str::to_owned).collect();
    let count = columns.len();
    let mut rows = RowsBuilder::new(call.grant, columns);
    let mut cursor = prepared.raw_query();
    while let Some(row) = cursor.next().map_err(sqlite_error)? {
        rows.start_row()?;
        let mut values = Vec::with_capacity(count);
        for index in 0..count {
            let value = row.get_ref(index).map_err(sqlite_error)?;
            // Counted while still SQLite's, before any copy.
            rows.charge(match value {
                ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes.len(),
                _ => 8,
            })?;
            values.push(owned(value));
        }
        rows.push(values);
    }
    Ok(rows.finish())
}

/// Binds `params` by position: `$n` and `?n` name parameter n, `?` the
/// next. As on PostgreSQL, parameters the statement does not use are ignored.
fn bind(statement: &mut Statement<'_>, params: &[Value]) -> Result<(), Error> {
    let expected = statement.parameter_count();
    if expected > params.len() {
        return Err(Error::Invalid(format!("the statement takes {expected} parameters; {} were given", params.len())));
    }
    for (position, value) in params.iter().enumerate() {
        let number = position + 1;
        let named = statement.parameter_index(&format!("${number}")).map_err(sqlite_error)?;
        let Some(index) = named.or((number <= expected).then_some(number)) else { continue };
        let bound = match value {
            Value::Null => statement.raw_bind_parameter(index, rusqlite::types::Null),
            Value::Boolean(b) => statement.raw_bind_parameter(index, *b),
            Value::Integer(n) => statement.raw_bind_parameter(index, *n),
            Value::Float(x) => statement.raw_bind_parameter(index, *x),
            Value::Text(text) => statement.raw_bind_parameter(index, text.as_str()),
            Value::Bytes(bytes) => statement.raw_bind_parameter(index, bytes.as_slice()),
        };
        bound.map_err(sqlite_error)?;
    }
    Ok(())
}

/// SQLite is dynamically typed: a value is decoded by its own storage class.
fn owned(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Integer(n),
        ValueRef::Real(x) => Value::Float(x),
        ValueRef::Text(bytes) => Value::Text(String::from_utf8_lossy(bytes).into_owned()),
        ValueRef::Blob(bytes) => Value::Bytes(bytes.to_vec()),
    }
}

/// Maps what SQLite said to what the component is told.
fn sqlite_error(error: rusqlite::Error) -> Error {
    let rusqlite::Error::SqliteFailure(failure, message) = &error else {
        return Error::Invalid(error.to_string());
    };
    let message = message.clone().unwrap_or_else(|| error.to_string());
    match failure.code {
        ErrorCode::AuthorizationForStatementDenied | ErrorCode::ReadOnly | ErrorCode::PermissionDenied => {
            Error::Denied(message)
        }
        ErrorCode::OperationInterrupted => Error::Timeout,
        ErrorCode::TooBig => Error::LimitExceeded(message),
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Error::Timeout,
        ErrorCode::CannotOpen | ErrorCode::NotADatabase | ErrorCode::SystemIoFailure => Error::Unavailable(message),
        _ => Error::Invalid(message),
    }
}
