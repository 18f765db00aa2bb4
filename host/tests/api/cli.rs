//! The `host` binary: `migrate`, start-up retries, `serve` and a graceful stop.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{Bearer, TestDatabase, client_with, install_components};

fn host() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
    for variable in [
        "DATABASE_URL",
        "REDIS_URL",
        "LISTEN_ADDR",
        "GRPC_LISTEN_ADDR",
        "ADMIN_LISTEN_ADDR",
        "COMPONENTS_DIR",
        "RUST_LOG",
        "AUTH_HS256_SECRET",
        "AUTH_JWKS_URL",
        "AUTH_JWKS_FILE",
        "ADMIN_TOKEN",
    ] {
        command.env_remove(variable);
    }
    command
}

#[tokio::test]
async fn migrate_creates_the_schema_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fresh.db");
    let output = host().args(["migrate", "--database-url", &format!("sqlite:{}", file.display())]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let sqlite = sqlx::SqlitePool::connect(&format!("sqlite:{}", file.display())).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .fetch_all(&sqlite)
        .await
        .unwrap();
    for table in ["idempotency_keys", "order_items", "order_status_history", "orders", "outbox", "products"] {
        assert!(tables.iter().any(|name| name == table), "{table} in {tables:?}");
    }

    let database = TestDatabase::create().await;
    let output = host().args(["migrate", "--database-url", database.url()]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name IN \
         ('products', 'orders', 'order_items', 'order_status_history', 'outbox', 'idempotency_keys')",
    )
    .fetch_one(&database.pool)
    .await
    .unwrap();
    assert_eq!(count, 6);
    // A second run finds nothing to do.
    assert!(host().args(["migrate", "--database-url", database.url()]).output().unwrap().status.success());
}

#[test]
fn an_unreachable_database_is_retried_then_named() {
    let started = Instant::now();
    let output = host()
        .args(["migrate", "--database-url", "postgres://nobody@127.0.0.1:1/none"])
        .env("CONNECT_TRIES", "3")
        .env("CONNECT_DELAY_SECS", "0.2")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let logs = String::from_utf8_lossy(&output.stdout);
    assert!(logs.contains("cannot reach PostgreSQL at postgres://nobody@127.0.0.1:1/none after 3 tries"), "{logs}");
    assert_eq!(logs.matches("retrying").count(), 2, "{logs}");
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn serve_answers_then_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let components = dir.path().join("components");
    install_components(&components, None);
    let mut child = host()
        .current_dir(dir.path())
        .args(["serve", "--listen-addr", "127.0.0.1:0", "--grpc-listen-addr", "127.0.0.1:0"])
        .args(["--admin-listen-addr", "127.0.0.1:0", "--components-dir"])
        .arg(&components)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut address, mut grpc, mut token) = (None, None, None);
    while address.is_none() || grpc.is_none() || token.is_none() {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the server exited before serving");
        if let Some(rest) = line.trim().strip_prefix("Orderly is serving on ") {
            address = Some(rest.to_owned());
        }
        if let Some(rest) = line.trim().strip_prefix("gRPC (orderly.v1.OrderService) on ") {
            grpc = Some(rest.to_owned());
        }
        if let Some(rest) = line.trim().strip_prefix("export TOKEN=") {
            token = Some(rest.to_owned());
        }
    }
    let (address, grpc, token) = (address.unwrap(), grpc.unwrap(), token.unwrap());
    // No token, no answer: the embedded default is protected too.
    let anonymous = reqwest::get(format!("{address}/api/v1/products")).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    // The token it printed works; it signed it with the key it made under ./data.
    let http = client_with(&token);
    let products: serde_json::Value =
        http.get(format!("{address}/api/v1/products")).send().await.unwrap().json().await.unwrap();
    assert!(!products["items"].as_array().unwrap().is_empty(), "demo products seeded");
    assert!(dir.path().join("data/orderly.db").exists());
    assert!(dir.path().join("data/auth.key").exists());
    // The gRPC API of the same process answers the same catalogue's orders.
    let channel = tonic::transport::Endpoint::from_shared(grpc).unwrap().connect().await.unwrap();
    let bearer = Bearer(format!("Bearer {token}").parse().unwrap());
    let mut client = host::grpc::proto::order_service_client::OrderServiceClient::with_interceptor(channel, bearer);
    let product = products["items"][0]["id"].as_i64().unwrap();
    let order = host::grpc::proto::CreateOrderRequest {
        user_id: Some(7),
        product_id: Some(product),
        quantity: Some(1),
        ..Default::default()
    };
    let placed = client.create_order(order).await.unwrap().into_inner();
    let over_rest: serde_json::Value =
        http.get(format!("{address}/api/v1/orders/{}", placed.id)).send().await.unwrap().json().await.unwrap();
    assert_eq!(over_rest["total"], placed.total);
    // `host token issue` in the same folder signs with the same key.
    let issued =
        host().current_dir(dir.path()).args(["token", "issue", "--sub", "7", "--scope", "orders"]).output().unwrap();
    assert!(issued.status.success(), "{}", String::from_utf8_lossy(&issued.stderr));
    let customer = String::from_utf8(issued.stdout).unwrap().trim().to_owned();
    let own = client_with(&customer).get(format!("{address}/api/v1/orders/{}", placed.id)).send().await.unwrap();
    assert_eq!(own.status(), 200, "user 7's own order");

    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "a clean exit on SIGTERM: {status}");
    let rest: Vec<String> = stdout.lines().map_while(Result::ok).collect();
    assert!(rest.iter().any(|line| line.contains("\"stopped\"")), "{rest:?}");
}

#[test]
fn component_check_runs_the_gate_offline() {
    let pricing = crate::helpers::wasm("pricing");
    let fixtures = crate::helpers::component_dir("pricing").join("fixtures");
    let cases = std::fs::read_dir(&fixtures)
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().ends_with(".input.json"))
        .count();
    let check = |file: &std::path::Path, slot: &str, fixtures: &std::path::Path, json: bool| {
        let mut command = host();
        command.args(["component", "check"]).arg(file).args(["--slot", slot, "--fixtures"]).arg(fixtures);
        let config = fixtures.parent().unwrap().join(format!("{slot}.toml"));
        command.arg("--config").arg(config);
        if json {
            command.arg("--json");
        }
        command.output().unwrap()
    };
    let passed = check(&pricing, "pricing", &fixtures, false);
    let report = String::from_utf8_lossy(&passed.stdout);
    assert!(passed.status.success(), "{report}");
    assert!(report.contains("pricing for the pricing slot: ACCEPTED"), "{report}");
    assert!(report.contains(&format!("{cases} of {cases} passed")), "{report}");
    assert!(report.contains("exports   price"), "{report}");
    assert!(report.contains("orderly:platform/kv@0.1.0"), "the imports requested: {report}");

    // Another policy against the standard policy's fixtures: rejected, with the differences.
    let express = crate::helpers::wasm("fulfillment-express");
    let standard = crate::helpers::component_dir("fulfillment-standard").join("fixtures");
    let failed = check(&express, "fulfillment", &standard, true);
    assert_eq!(failed.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(report["accepted"], false);
    assert!(report["reason"].as_str().unwrap().contains("golden fixtures failed"), "{report}");
    let diff = report["fixtures"].as_array().unwrap().iter().find(|case| case["passed"] == false).unwrap();
    assert!(diff["problem"].as_str().unwrap().starts_with("expected"), "{diff}");
}

/// A login that may not create roles, owning a fresh database; both dropped
/// by [`Unprivileged::drop_all`].
struct Unprivileged {
    admin: sqlx::PgPool,
    name: String,
}

impl Unprivileged {
    async fn create() -> Self {
        let admin = sqlx::PgPool::connect(&crate::helpers::postgres_url()).await.unwrap();
        let name = format!("owner_{}", uuid::Uuid::new_v4().simple());
        for statement in [
            format!("CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB"),
            format!("CREATE DATABASE {name} OWNER {name}"),
        ] {
            sqlx::query(&statement).execute(&admin).await.unwrap();
        }
        Self { admin, name }
    }

    fn url(&self) -> String {
        let mut url = url::Url::parse(&crate::helpers::postgres_url()).unwrap();
        url.set_username(&self.name).unwrap();
        url.set_path(&self.name);
        url.to_string()
    }

    async fn drop_all(self) {
        for statement in [
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            format!("DROP ROLE IF EXISTS {}", self.name),
        ] {
            sqlx::query(&statement).execute(&self.admin).await.unwrap();
        }
    }
}

#[tokio::test]
async fn migrate_without_the_right_to_create_roles_prints_the_sql_to_run() {
    let owner = Unprivileged::create().await;
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let output = host()
        .args(["migrate", "--database-url", &owner.url(), "--component-db-role-prefix", &prefix])
        .env("CONNECT_TRIES", "1")
        .output()
        .unwrap();
    assert!(!output.status.success(), "a migration that cannot give components their logins fails");
    let logs = String::from_utf8_lossy(&output.stdout);
    for slot in ["validation", "pricing", "fulfillment"] {
        assert!(logs.contains(&format!("CREATE ROLE {prefix}_{slot} LOGIN NOSUPERUSER")), "{logs}");
    }
    assert!(logs.contains(&owner.name) && logs.contains("may not create roles"), "{logs}");
    // The schema itself was applied; nothing was created for components.
    let pool = sqlx::PgPool::connect(&owner.url()).await.unwrap();
    let view: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_views WHERE viewname = 'open_orders'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(view, 1);
    let roles: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_roles WHERE rolname LIKE $1 || '%'")
        .bind(&prefix)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(roles, 0);
    pool.close().await;
    owner.drop_all().await;
}

#[tokio::test]
async fn the_shipped_postgres_set_up_runs_the_service_without_a_superuser() {
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
    let (login, database, prefix) = (format!("svc_{suffix}"), format!("db_{suffix}"), format!("rules_{suffix}"));
    let admin = url::Url::parse(&crate::helpers::postgres_url()).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/postgres/init-orderly.sh");
    let output = Command::new("sh")
        .arg(&script)
        .env("PGHOST", admin.host_str().unwrap())
        .env("PGPORT", admin.port().unwrap_or(5432).to_string())
        .env("POSTGRES_USER", admin.username())
        .env("ORDERLY_DB_USER", &login)
        .env("ORDERLY_DB_NAME", &database)
        .env("COMPONENT_DB_ROLE_PREFIX", &prefix)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let mut url = admin.clone();
    url.set_username(&login).unwrap();
    url.set_path(&database);
    let migrated = host()
        .args(["migrate", "--database-url", url.as_str(), "--component-db-role-prefix", &prefix])
        .env("CONNECT_TRIES", "1")
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stdout));
    let pool = sqlx::PgPool::connect(url.as_str()).await.unwrap();
    let (superuser, creates_roles): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!superuser && !creates_roles, "the service runs as a plain login");
    let read_only: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
         WHERE r.rolname LIKE $1 || '\\_%' AND 'default_transaction_read_only=on' = ANY(s.setconfig)",
    )
    .bind(&prefix)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(read_only, 3, "a read-only login for each slot");
    pool.close().await;

    let cleanup = sqlx::PgPool::connect(&crate::helpers::postgres_url()).await.unwrap();
    let mut statements = vec![format!("DROP DATABASE {database} WITH (FORCE)")];
    statements.extend(["validation", "pricing", "fulfillment"].map(|slot| format!("DROP ROLE {prefix}_{slot}")));
    statements.push(format!("DROP ROLE {login}"));
    for statement in statements {
        sqlx::query(&statement).execute(&cleanup).await.unwrap();
    }
}

#[test]
fn serving_beyond_loopback_without_an_issuer_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = host()
        .current_dir(dir.path())
        .args(["serve", "--listen-addr", "0.0.0.0:0", "--grpc-listen-addr", "127.0.0.1:0"])
        .args(["--admin-listen-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success(), "it must not serve unprotected");
    let logs = String::from_utf8_lossy(&output.stdout);
    assert!(logs.contains("0.0.0.0:0") && logs.contains("AUTH_JWKS_URL") && logs.contains("AUTH_DISABLED"), "{logs}");
    assert!(!dir.path().join("data/orderly.db").exists(), "refused before touching anything");
}
