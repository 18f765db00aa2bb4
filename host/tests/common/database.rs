//! Test databases shared by the integration-test binaries: a fresh
//! PostgreSQL database per test, and where the test servers are.
#![allow(dead_code)] // Each test binary uses its own part of this file.

/// The PostgreSQL server tests create their databases on.
pub fn postgres_url() -> String {
    std::env::var("DATABASE_TEST_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The Redis server tests use (each under a namespace of its own).
pub fn redis_url() -> String {
    std::env::var("REDIS_TEST_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh PostgreSQL database for one test, dropped when this is dropped.
pub struct TestDatabase {
    pub pool: sqlx::PgPool,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates the database and a small pool on it.
    pub async fn create() -> Self {
        use sqlx::Connection;
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&postgres_url()).await.expect("PostgreSQL reachable");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create database");
        let url = url::Url::parse(&postgres_url()).unwrap();
        let mut url = url.clone();
        url.set_path(&name);
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(url.as_str()).await.unwrap();
        Self { pool, name, url: url.to_string() }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Best effort, from a connection of its own on a thread of its own
        // (Drop cannot await, and the test's runtime is blocked here). FORCE
        // ends the pool's connections, which belong to the test's runtime.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&postgres_url()).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await;
                }
            });
        })
        .join()
        .ok();
    }
}
