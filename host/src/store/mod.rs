//! Storage: one [`Store`] over either PostgreSQL (production) or an embedded
//! SQLite file (the default when no `DATABASE_URL` is set).
//!
//! Both backends run the same SQL text (numbered `$n` parameters, `RETURNING`,
//! `ON CONFLICT`, timestamps bound from Rust); [`with_pool!`] expands each
//! query once per backend so the types are checked for both. The schema
//! differs only in dialect: `migrations/postgres` and `migrations/sqlite`.
//! SQL lives here and nowhere else.

mod connect;
pub mod create_order;
pub mod faults;
pub mod idempotency;
mod leases;
pub mod orders;
pub mod outbox;
pub mod products;
pub mod registry;
mod rows;
pub mod statements;
pub mod transitions;
mod writes;

use std::sync::Arc;

use sqlx::{PgPool, SqlitePool};

pub use connect::{ConnectOptions, Retry};
pub use create_order::{NewOrder, PricedLine};
pub use faults::is_unavailable;
pub use idempotency::Claim;
pub use orders::OrderFilter;
pub use outbox::{DeadJobRow, JobCounts, JobRow, OpenJob, OutboxMessage};
pub use transitions::{Guard, Lease, Moved, OrderState, Step};

use crate::domain::OrderStatus;
use crate::runtime::capabilities::{ComponentLogins, LoginSetupError, NoDatabase, PostgresSql, SqlBackend, SqliteSql};

/// Runs `$body` with `$pool` bound to the concrete pool of whichever backend
/// `$store` uses. The body is expanded once per backend.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Postgres($pool) => $body,
            $crate::store::Pool::Sqlite($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// The connection pool of the backend in use.
#[derive(Clone)]
pub(crate) enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A PostgreSQL server.
    Postgres,
    /// The embedded SQLite file.
    Sqlite,
}

impl Backend {
    /// The name used in logs and `/ready`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

/// Orders, products and everything stored with them.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    /// What components query through the `sql` capability: the same
    /// database, but read-only.
    components_sql: Arc<dyn SqlBackend>,
    /// The logins components query PostgreSQL as.
    component_logins: Option<ComponentLogins>,
    /// Bumped after every commit that wrote outbox rows, so the relay and
    /// the database-backed queue's workers wake at once instead of polling.
    outbox_written: Arc<tokio::sync::watch::Sender<u64>>,
}

/// What can go wrong in the store. Expected outcomes (a missing row, a lost
/// race) are variants; everything else is `Database`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row asked for does not exist.
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// A line names a product that does not exist.
    #[error("product {0} does not exist")]
    UnknownProduct(i64),
    /// A line names a product that cannot be ordered.
    #[error("product {0} is not available")]
    InactiveProduct(i64),
    /// Not enough units left.
    #[error("product {product_id}: {requested} requested, {available} in stock")]
    InsufficientStock { product_id: i64, requested: i64, available: i64 },
    /// The state machine forbids the change, given the state the order is in now.
    #[error("an order in state {current} cannot become {requested}")]
    IllegalTransition { current: OrderStatus, requested: OrderStatus },
    /// The idempotency key this request held was taken over (it expired).
    #[error("the idempotency key was released while the request ran")]
    KeyLost,
    /// A stored value the code cannot read (a bug or a hand-edited row).
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// The database failed or could not be reached.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl Store {
    /// Connects to `options.url` (`postgres://…` or `sqlite:…`), retrying as
    /// configured, applies the migrations and sets up the components'
    /// logins. Logins it cannot set up are logged, not fatal: components
    /// with an `sql` grant then get `unavailable` (`host migrate` fails instead).
    pub async fn open(options: &ConnectOptions) -> anyhow::Result<Self> {
        let store = connect::open(options).await?;
        store.migrate().await?;
        if let Err(error) = store.set_up_component_logins().await {
            tracing::error!(%error, "components cannot query the database until their logins are set up");
        }
        Ok(store)
    }

    /// Creates the PostgreSQL logins components query as, where this login
    /// may, and checks that each is safe (nothing to do on SQLite).
    pub async fn set_up_component_logins(&self) -> Result<(), LoginSetupError> {
        match (&self.pool, &self.component_logins) {
            (Pool::Postgres(pool), Some(logins)) => {
                crate::runtime::capabilities::sql::set_up_logins(pool, logins).await
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn new(pool: Pool, components_sql: Arc<dyn SqlBackend>, logins: Option<ComponentLogins>) -> Self {
        let (outbox_written, _) = tokio::sync::watch::channel(0);
        Self { pool, components_sql, component_logins: logins, outbox_written: Arc::new(outbox_written) }
    }

    /// Changes whenever this process commits outbox rows.
    pub fn outbox_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.outbox_written.subscribe()
    }

    pub(crate) fn announce_outbox(&self) {
        self.outbox_written.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// A PostgreSQL store on an existing pool; components query the same
    /// database through pools of their own, as `logins`.
    pub fn postgres(pool: PgPool, logins: ComponentLogins) -> Self {
        let sql: Arc<dyn SqlBackend> = Arc::new(PostgresSql::new(pool.clone(), logins.clone()));
        Self::new(Pool::Postgres(pool), sql, Some(logins))
    }

    /// A SQLite store on the file at `path`; components read it through
    /// connections of their own (none for an in-memory database).
    pub fn sqlite(pool: SqlitePool, path: Option<std::path::PathBuf>) -> Self {
        let sql: Arc<dyn SqlBackend> = match path {
            Some(path) => Arc::new(SqliteSql::new(path)),
            None => Arc::new(NoDatabase),
        };
        Self::new(Pool::Sqlite(pool), sql, None)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The read-only `sql` capability for components, on this database.
    pub fn components_sql(&self) -> Arc<dyn SqlBackend> {
        self.components_sql.clone()
    }

    /// Applies the pending migrations of this backend.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &self.pool {
            Pool::Postgres(pool) => sqlx::migrate!("../migrations/postgres").run(pool).await?,
            Pool::Sqlite(pool) => sqlx::migrate!("../migrations/sqlite").run(pool).await?,
        }
        Ok(())
    }

    /// One trivial round trip: is the database there?
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, |pool| sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Closes the pools, waiting for connections in use.
    pub async fn close(&self) {
        with_pool!(self, |pool| pool.close().await)
    }
}

/// Whether `error` is a unique-constraint violation.
fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}
