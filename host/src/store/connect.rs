//! Opening the database: backend chosen by URL, retried at start-up.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use super::Store;
use crate::runtime::capabilities::ComponentLogins;

/// How often and how far apart to try reaching a server at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts before giving up (at least one).
    pub tries: u32,
    /// Pause between attempts.
    pub delay: Duration,
}

impl Default for Retry {
    /// Five tries, two seconds apart.
    fn default() -> Self {
        Self { tries: 5, delay: Duration::from_secs(2) }
    }
}

impl Retry {
    /// Runs `attempt` until it succeeds or the tries run out; logs each failure.
    pub async fn run<T, E, F>(&self, what: &str, mut attempt: impl FnMut() -> F) -> anyhow::Result<T>
    where
        F: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let tries = self.tries.max(1);
        for number in 1..=tries {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) if number == tries => {
                    anyhow::bail!("cannot reach {what} after {tries} tries: {error}")
                }
                Err(error) => {
                    tracing::warn!(target: "startup", attempt = number, tries, %error, "cannot reach {what}; retrying");
                    tokio::time::sleep(self.delay).await;
                }
            }
        }
        unreachable!("the last try returns")
    }
}

/// Where the database is and how to reach it.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `postgres://…` or `sqlite:…`.
    pub url: String,
    /// Most connections in the pool (PostgreSQL).
    pub max_connections: u32,
    /// Start-up retries.
    pub retry: Retry,
    /// The logins components query PostgreSQL as.
    pub component_logins: ComponentLogins,
}

/// A URL with the password hidden, for messages.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

pub(super) async fn open(options: &ConnectOptions) -> anyhow::Result<Store> {
    let url = options.url.as_str();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let pool_options =
            PgPoolOptions::new().max_connections(options.max_connections).acquire_timeout(Duration::from_secs(5));
        let what = format!("PostgreSQL at {}", redacted(url));
        let pool = options.retry.run(&what, || pool_options.clone().connect(url)).await?;
        Ok(Store::postgres(pool, options.component_logins.clone()))
    } else if url.starts_with("sqlite:") {
        let connect = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("bad SQLite URL {url}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        if let Some(dir) = connect.get_filename().parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // One writer connection: SQLite serialises writers anyway, and one
        // connection makes every transaction (stock checks included) strictly
        // serial without busy retries. Components read through connections
        // of their own.
        let file = connect.get_filename();
        let file = (!file.as_os_str().is_empty() && file != std::path::Path::new(":memory:")).then(|| file.to_owned());
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(connect).await?;
        Ok(Store::sqlite(pool, file))
    } else {
        anyhow::bail!("DATABASE_URL must start with postgres:// or sqlite: (got {})", redacted(url))
    }
}
