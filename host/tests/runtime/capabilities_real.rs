//! Capabilities end to end: a real component, the real linker, and real
//! Redis, PostgreSQL, SQLite and HTTP behind them.

use std::sync::Arc;

use host::runtime::bindings::types::Violation;
use host::runtime::capabilities::RedisKv;
use host::runtime::fakes::Fakes;
use host::runtime::{CallContext, Capabilities, Slot};

use crate::helpers::{
    TestDatabase, config, load, order, redis_url, runtime, runtime_on, serve, shipped_config, sql_probe, store,
};

async fn redis_kv() -> (Arc<RedisKv>, redis::aio::ConnectionManager) {
    let client = redis::Client::open(redis_url()).expect("valid Redis URL");
    let connection = redis::aio::ConnectionManager::new(client).await.expect("Redis reachable");
    (Arc::new(RedisKv::new(connection.clone())), connection)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Runs the probe fixture with `grants` and returns its three reports.
async fn probe(capabilities: Capabilities, grants: &str) -> Vec<Violation> {
    let runtime = runtime(capabilities);
    // A generous deadline: the probe waits on real I/O in a debug build.
    let grants = format!("[limits]\ndeadline_ms = 10000\n{grants}");
    let probe = load(&runtime, "fixtures/forbidden", Slot::Pricing, config(&grants)).await;
    runtime.price(&probe, &CallContext::new("probe"), &order(42)).await.unwrap().value.unwrap_err()
}

#[tokio::test]
async fn pricing_reads_a_promo_code_from_redis() {
    let (kv, mut connection) = redis_kv().await;
    let prefix = unique("pricing");
    let _: () = redis::cmd("SET")
        .arg(format!("kv:{prefix}:promo:SAVE20"))
        .arg("2000")
        .query_async(&mut connection)
        .await
        .unwrap();
    let runtime = runtime(Capabilities { kv, ..Fakes::default().capabilities() });
    let grants = format!("[grants.kv]\nprefix = \"{prefix}\"\n[config]\ntax_rate_bp = 0\n");
    let pricing = load(&runtime, "pricing", Slot::Pricing, config(&grants)).await;
    let order = component_testkit::OrderBuilder::new(1).item(1, 10_000, 1).attribute("promo_code", "save20").build();
    let output = runtime.price(&pricing, &CallContext::new("promo"), &order).await.unwrap();
    let quote = output.value.unwrap();
    assert_eq!((quote.discount, quote.total), (2000, 8000));
    assert_eq!(quote.notes[0], "promo SAVE20: -20%");

    let unknown = component_testkit::OrderBuilder::new(1).item(1, 100, 1).attribute("promo_code", "nope").build();
    let violations = runtime.price(&pricing, &CallContext::new("promo"), &unknown).await.unwrap().value.unwrap_err();
    assert_eq!(violations[0].code, "unknown-promo-code");
    let _: () = redis::cmd("DEL").arg(format!("kv:{prefix}:promo:SAVE20")).query_async(&mut connection).await.unwrap();
}

#[tokio::test]
async fn validation_rate_limits_through_redis_counters_with_a_ttl() {
    let (kv, mut connection) = redis_kv().await;
    let prefix = unique("validation");
    let runtime = runtime(Capabilities { kv, ..Fakes::default().capabilities() });
    let grants = format!("[grants.kv]\nprefix = \"{prefix}\"\n[config]\norders_per_minute = 2\n");
    let validation = load(&runtime, "order-validation", Slot::Validation, config(&grants)).await;
    let context = CallContext::new("rate");
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(runtime.validate(&validation, &context, &order(77)).await.unwrap().value);
    }
    assert!(answers[0].is_empty() && answers[1].is_empty());
    assert_eq!(answers[2][0].code, "rate-limited");
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("kv:{prefix}:*")).query_async(&mut connection).await.unwrap();
    assert_eq!(keys.len(), 1);
    let ttl: i64 = redis::cmd("TTL").arg(&keys[0]).query_async(&mut connection).await.unwrap();
    assert!((1..=120).contains(&ttl), "the counter expires: ttl {ttl}");
    let _: () = redis::cmd("DEL").arg(&keys[0]).query_async(&mut connection).await.unwrap();
}

/// Inserts an order for `user_id` in `status`, as the service would have stored it.
async fn insert_order(pool: &sqlx::PgPool, user_id: i64, status: &str) {
    sqlx::query(
        "INSERT INTO orders (user_id, status, currency, subtotal, discount, tax, shipping, total, validated_by,
                             priced_by, created_at, updated_at)
         VALUES ($1, $2, 'EUR', 100, 0, 0, 0, 100, 'v', 'p', now(), now())",
    )
    .bind(user_id)
    .bind(status)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn validation_counts_open_orders_in_postgres_through_its_view() {
    let database = TestDatabase::create().await;
    let store = store(database.url()).await;
    for (user, status) in [(5, "pending"), (5, "on_hold"), (5, "delivered"), (6, "pending")] {
        insert_order(&database.pool, user, status).await;
    }
    let shipped = shipped_config("order-validation", Slot::Validation);
    let mut settings = shipped.config.clone();
    settings.insert("max_open_orders".into(), "2".into());
    let runtime = runtime_on(&store, Slot::Validation, &shipped).await;
    let validation = load(&runtime, "order-validation", Slot::Validation, shipped).await.with_settings(settings);
    let context = CallContext::new("open-orders");
    let blocked = runtime.validate(&validation, &context, &order(5)).await.unwrap();
    assert_eq!(blocked.value[0].code, "too-many-open-orders");
    let counted = blocked.uses.iter().find(|used| used.capability == "sql.query").expect("it asked the database");
    assert_eq!(counted.outcome, host::runtime::UseOutcome::Ok);
    assert!(runtime.validate(&validation, &context, &order(6)).await.unwrap().value.is_empty());
}

#[tokio::test]
async fn postgres_queries_are_read_only_bounded_and_typed() {
    let database = TestDatabase::create().await;
    let store = store(database.url()).await;
    sqlx::query("CREATE TABLE notes (id int PRIMARY KEY, body text, price numeric, at timestamptz, data bytea)")
        .execute(&database.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO notes SELECT g, 'note ' || g, g * 1.5, '2026-01-02T03:04:05Z', '\\x0102' FROM generate_series(1, 50) g")
        .execute(&database.pool)
        .await
        .unwrap();
    let probe = |statement: &str, grant: &str| {
        format!("[grants.sql]\nrelations = [\"notes\"]\n{grant}\n[config]\nstatement = {statement:?}\n")
    };

    // Typed parameters and values, including types returned as text.
    let statement =
        "SELECT id, body, price::text, at, data, NULL::int AS nothing, $1::bigint AS param FROM notes WHERE id = 2";
    let (code, message) = sql_probe(&store, &probe(statement, "")).await;
    assert_eq!(code, "sql-ok", "{message}");
    for expected in [
        "Integer(2)",
        "Text(\"note 2\")",
        "Text(\"3.0\")",
        "2026-01-02T03:04:05+00:00",
        "Bytes([1, 2])",
        "Null",
        "Integer(42)",
    ] {
        assert!(message.contains(expected), "{expected} missing from {message}");
    }

    // Writes are refused before they reach the data.
    let (code, message) = sql_probe(&store, &probe("DELETE FROM notes WHERE id > $1", "")).await;
    assert_eq!(code, "sql-error", "{message}");
    assert!(message.contains("one query"), "{message}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM notes").fetch_one(&database.pool).await.unwrap();
    assert_eq!(left, 50);

    // Row cap, statement timeout, and undecodable types are typed errors.
    let (_, message) = sql_probe(&store, &probe("SELECT id FROM notes WHERE id < $1", "max_rows = 10")).await;
    assert!(message.contains("LimitExceeded"), "{message}");
    let (_, message) = sql_probe(&store, &probe("SELECT pg_sleep(2), $1::int", "timeout_ms = 100")).await;
    assert_eq!(message, "Error::Timeout");
    let (_, message) = sql_probe(&store, &probe("SELECT price FROM notes WHERE id = $1", "")).await;
    assert!(message.contains("cast it to text"), "{message}");
    let (_, message) = sql_probe(&store, &probe("SELEC nonsense $1", "")).await;
    assert!(message.starts_with("Error::Invalid"), "{message}");
}

#[tokio::test]
async fn sqlite_queries_are_read_only_and_typed() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&format!("sqlite:{}", dir.path().join("orderly.db").display())).await;
    let writer =
        sqlx::SqlitePool::connect(&format!("sqlite:{}", dir.path().join("orderly.db").display())).await.unwrap();
    sqlx::query("CREATE TABLE weights (id integer PRIMARY KEY, user_id integer, status text, weight real)")
        .execute(&writer)
        .await
        .unwrap();
    sqlx::query("INSERT INTO weights (user_id, status, weight) VALUES (42, 'pending', 1.5), (42, 'processing', NULL)")
        .execute(&writer)
        .await
        .unwrap();
    let probe =
        |statement: &str| format!("[grants.sql]\nrelations = [\"weights\"]\n[config]\nstatement = {statement:?}\n");
    let (code, message) =
        sql_probe(&store, &probe("SELECT id, status, weight FROM weights WHERE user_id = $1 ORDER BY id")).await;
    assert_eq!(code, "sql-ok", "{message}");
    assert!(message.contains("[Value::Integer(1), Value::Text(\"pending\"), Value::Float(1.5)]"), "{message}");
    assert!(message.contains("[Value::Integer(2), Value::Text(\"processing\"), Value::Null]"), "{message}");
    let (code, message) = sql_probe(&store, &probe("DELETE FROM weights WHERE user_id = $1")).await;
    assert_eq!(code, "sql-denied", "{message}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM weights").fetch_one(&writer).await.unwrap();
    assert_eq!(left, 2);
    writer.close().await;
}

#[tokio::test]
async fn http_reaches_an_allowlisted_host_with_a_size_cap() {
    let (port, _) = serve("200 OK", "rate=1.08".into()).await;
    let grants = format!(
        "[grants.http]\nallow_hosts = [\"http://127.0.0.1:{port}\"]\n[config]\nurl = \"http://127.0.0.1:{port}/rates\"\n"
    );
    let real = || Capabilities {
        http: Arc::new(host::runtime::capabilities::ReqwestHttp::new()),
        ..Fakes::default().capabilities()
    };
    let reports = probe(real(), &grants).await;
    assert_eq!(reports[2].code, "http-ok", "{}", reports[2].message);
    assert_eq!(reports[2].message, "(200, \"rate=1.08\")");

    let (big, _) = serve("200 OK", "x".repeat(10_000)).await;
    let grants = format!(
        "[grants.http]\nallow_hosts = [\"http://127.0.0.1:*\"]\nmax_response_bytes = 1000\n[config]\nurl = \"http://127.0.0.1:{big}/\"\n"
    );
    let reports = probe(real(), &grants).await;
    assert!(reports[2].message.contains("LimitExceeded"), "{}", reports[2].message);
}

#[tokio::test]
async fn the_redis_backend_gets_sets_expires_counts_and_deletes() {
    use host::runtime::capabilities::kv::{KvBackend, KvSpace};
    use std::time::Duration;
    let (kv, connection) = redis_kv().await;
    let prefix = format!("{}:", unique("kv:backend-test"));
    let space = KvSpace { prefix: &prefix, max_bytes: 1 << 20 };
    let key = format!("{prefix}counter");
    assert_eq!(kv.get(&key).await.unwrap(), None);
    kv.set(space, &key, "v1", Some(Duration::from_millis(200))).await.unwrap();
    assert_eq!(kv.get(&key).await.unwrap().as_deref(), Some("v1"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(kv.get(&key).await.unwrap(), None, "the value expired");
    assert_eq!(kv.incr(space, &key, 5, Some(Duration::from_secs(60))).await.unwrap(), 5);
    assert_eq!(kv.incr(space, &key, -2, None).await.unwrap(), 3);
    kv.set(space, &key, "not a number", None).await.unwrap();
    assert!(matches!(kv.incr(space, &key, 1, None).await, Err(host::runtime::bindings::errors::Error::Invalid(_))));
    assert!(kv.delete(space, &key).await.unwrap());
    assert!(!kv.delete(space, &key).await.unwrap());
    // A small budget: full until an entry expires or is deleted.
    let small = KvSpace { prefix: &prefix, max_bytes: 1_000 };
    let value = "x".repeat(500);
    kv.set(small, &format!("{prefix}a"), &value, Some(Duration::from_millis(150))).await.unwrap();
    let refused = kv.set(small, &format!("{prefix}b"), &value, None).await;
    assert!(matches!(refused, Err(host::runtime::bindings::errors::Error::LimitExceeded(_))), "{refused:?}");
    tokio::time::sleep(Duration::from_millis(250)).await;
    kv.set(small, &format!("{prefix}b"), &value, None).await.unwrap();
    assert!(kv.set(small, &format!("{prefix}c"), &value, None).await.is_err());
    kv.delete(small, &format!("{prefix}b")).await.unwrap();
    kv.set(small, &format!("{prefix}c"), &value, None).await.unwrap();
    let mut connection = connection;
    for pattern in [format!("{prefix}*"), format!("kvindex:{prefix}*")] {
        let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(&mut connection).await.unwrap();
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut connection).await.unwrap();
    }
}
