//! A component with an `sql` grant tries every way out of it we know of, on
//! the service's real schema, PostgreSQL and SQLite. Each attempt gets a
//! typed error (or an answer within its grant), and afterwards nothing has
//! happened outside: no file written, no data read or changed, no role or
//! lock left behind, no session left open, the service's own queries intact.

use std::sync::Arc;
use std::time::{Duration, Instant};

use host::runtime::{CallContext, CallError, Slot};
use host::store::Store;

use crate::helpers::{TestDatabase, config, load, order, runtime_on, sql_probe, store};

/// The probe's `sql` report for `statement`, granted only `open_orders`.
async fn attempt(store: &Store, statement: &str) -> (String, String) {
    let toml =
        format!("[grants.sql]\nrelations = [\"open_orders\"]\ntimeout_ms = 300\n[config]\nstatement = {statement:?}\n");
    sql_probe(store, &toml).await
}

/// A secret only the service may read.
async fn plant_secrets(pool: &sqlx::PgPool) {
    sqlx::query(
        "INSERT INTO idempotency_keys (key, request_hash, state, response_status, response_body, created_at, expires_at)
         VALUES ('other-customer', 'h', 'completed', 201, 'card 4242 4242 4242 4242', now(), now() + interval '1 day')",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO products (sku, name, price, currency, stock, created_at, updated_at)
         VALUES ('MUG', 'Mug', 1250, 'EUR', 10, now(), now())",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// The service's own connections still answer, with the real price.
async fn service_intact(store: &Store) {
    let products = store.list_products(None, 10).await.expect("the service's queries work");
    assert_eq!(products.len(), 1);
    assert_eq!((products[0].sku.as_str(), products[0].price), ("MUG", 1250));
}

#[tokio::test]
async fn postgres_escapes_are_refused_and_leave_nothing_behind() {
    let database = TestDatabase::create().await;
    let store = store(database.url()).await;
    plant_secrets(&database.pool).await;
    let marker = std::env::temp_dir().join(format!("escaped-{}", uuid::Uuid::new_v4().simple()));
    let marker_path = marker.display().to_string();
    let copy_to_program = format!("COPY (SELECT 1) TO PROGRAM 'touch {marker_path}'");
    let cases: Vec<(&str, &str)> = vec![
        (&copy_to_program, "sql-error"),
        ("SELECT pg_read_file('/etc/passwd')", "sql-denied"),
        ("SELECT pg_ls_dir('.')", "sql-denied"),
        ("SELECT response_body FROM idempotency_keys", "sql-denied"),
        ("SELECT * FROM orders", "sql-denied"),
        ("SELECT price::text FROM products", "sql-denied"),
        ("SELECT query_to_xml('select * from idempotency_keys', true, true, '')::text", "sql-denied"),
        ("SELECT set_config('role', 'postgres', false)", "sql-denied"),
        ("WITH open_orders AS (SELECT * FROM orders) SELECT count(*) FROM open_orders", "sql-denied"),
        ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()", "sql-denied"),
        ("DEALLOCATE ALL", "sql-error"),
        ("PREPARE sqlx_s_1 AS SELECT 1", "sql-error"),
        ("SET statement_timeout = 0", "sql-error"),
        ("SELECT 1; DELETE FROM products", "sql-error"),
        ("WITH gone AS (DELETE FROM products RETURNING *) SELECT count(*) FROM gone", "sql-error"),
        ("SELECT * INTO TEMP stolen FROM open_orders", "sql-error"),
        ("SELECT lo_import('/etc/passwd')::text", "sql-denied"),
        ("SELECT rolpassword FROM pg_authid", "sql-denied"),
        ("SELECT nextval('orders_id_seq')", "sql-denied"),
        ("LISTEN orders", "sql-error"),
        ("SELECT * FROM open_orders FOR UPDATE", "sql-denied"),
    ];
    for (statement, expected) in &cases {
        let (code, message) = attempt(&store, statement).await;
        assert_eq!(code, *expected, "{statement}: {message}");
    }
    // Only what the grant names answers.
    let (code, message) = attempt(&store, "SELECT count(*) FROM open_orders WHERE user_id = $1").await;
    assert_eq!(code, "sql-ok", "{message}");

    // Session state set by one call does not reach the next: a setting, the
    // role, an advisory lock.
    let (code, _) = attempt(&store, "SELECT set_config('search_path', 'pg_temp', false), $1::int").await;
    assert_eq!(code, "sql-ok");
    let (_, seen) = attempt(&store, "SELECT current_setting('search_path'), current_user::text, $1::int").await;
    assert!(!seen.contains("pg_temp") && seen.contains("public"), "the setting did not survive: {seen}");
    assert!(seen.contains("orderly_rules_pricing"), "{seen}");
    let (code, _) = attempt(&store, "SELECT pg_advisory_lock(4242)::text, $1::int").await;
    assert_eq!(code, "sql-ok");
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(4242)").fetch_one(&database.pool).await.unwrap();
    assert!(free, "the component's advisory lock did not outlive its call");

    // Nothing happened outside.
    assert!(!marker.exists(), "COPY TO PROGRAM ran");
    let role: (bool, bool, i64) = sqlx::query_as(
        "SELECT rolsuper, rolcreaterole, (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid)
         FROM pg_roles r WHERE rolname = 'orderly_rules_pricing'",
    )
    .fetch_one(&database.pool)
    .await
    .unwrap();
    assert_eq!(role, (false, false, 0), "the component's login gained nothing");
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
         AND usename LIKE 'orderly_rules_%' AND state <> 'idle'",
    )
    .fetch_one(&database.pool)
    .await
    .unwrap();
    assert_eq!(open, 0, "no component session is left in a transaction or a statement");
    service_intact(&store).await;
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM products").fetch_one(&database.pool).await.unwrap();
    assert_eq!(keys, 1);
}

#[tokio::test]
async fn a_postgres_statement_past_the_deadline_is_cancelled_on_the_server() {
    let database = TestDatabase::create().await;
    let store = store(database.url()).await;
    // The grant allows 5 s, the call only 300 ms.
    let toml = "[limits]\ndeadline_ms = 300\n[grants.sql]\ntimeout_ms = 5000\n[config]\nstatement = \"SELECT pg_sleep(5), $1::int\"\n";
    let config = config(toml);
    let runtime = runtime_on(&store, Slot::Pricing, &config).await;
    let probe = load(&runtime, "fixtures/forbidden", Slot::Pricing, config).await;
    // Connect the pool first, so the call's time is the statement's.
    let _ = runtime.price(&probe, &CallContext::new("warm"), &order(1)).await;
    let started = Instant::now();
    let outcome = runtime.price(&probe, &CallContext::new("slow"), &order(1)).await;
    let elapsed = started.elapsed();
    match outcome {
        Err(CallError::Deadline { limit_ms: 300 }) => {}
        Ok(output) => assert_eq!(output.value.unwrap_err()[1].message, "Error::Timeout"),
        Err(other) => panic!("{other:?}"),
    }
    assert!(elapsed < Duration::from_millis(1300), "{elapsed:?}");
    // The server stopped the statement (the cancel request travels on a
    // connection of its own, so it may land a moment after the call ended);
    // nothing of the slot's is still running well before its 5 s.
    let running = async || -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%pg_sleep(5)%'
             AND pid <> pg_backend_pid() AND state = 'active'",
        )
        .fetch_one(&database.pool)
        .await
        .unwrap()
    };
    let mut still = running().await;
    while still > 0 && started.elapsed() < Duration::from_millis(2_000) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        still = running().await;
    }
    assert_eq!(still, 0, "the statement outlived its call by more than a moment");
}

/// A store on a fresh SQLite file holding the planted secrets.
async fn sqlite_store(dir: &std::path::Path) -> Store {
    let url = format!("sqlite:{}", dir.join("orderly.db").display());
    let store = store(&url).await;
    let writer = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO idempotency_keys (key, request_hash, state, response_status, response_body, created_at, expires_at)
         VALUES ('other-customer', 'h', 'completed', 201, 'card 4242', '2026-01-01T00:00:00+00:00', '2099-01-01T00:00:00+00:00')",
    )
    .execute(&writer)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO products (sku, name, price, currency, stock, created_at, updated_at)
         VALUES ('MUG', 'Mug', 1250, 'EUR', 10, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')",
    )
    .execute(&writer)
    .await
    .unwrap();
    writer.close().await;
    store
}

#[tokio::test]
async fn sqlite_escapes_are_refused_by_sqlite_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let attached = dir.path().join("attached.db");
    let attach = format!("ATTACH DATABASE '{}' AS elsewhere", attached.display());
    let cases: Vec<(&str, &str)> = vec![
        (&attach, "sql-denied"),
        ("PRAGMA table_info(orders)", "sql-denied"),
        ("SELECT * FROM pragma_table_info('orders')", "sql-denied"),
        ("PRAGMA writable_schema = 1", "sql-denied"),
        ("SELECT response_body FROM idempotency_keys", "sql-denied"),
        ("SELECT * FROM orders", "sql-denied"),
        ("SELECT sql FROM sqlite_master", "sql-denied"),
        ("SELECT count(*) FROM open_orders JOIN products", "sql-denied"),
        // A `WITH` query borrowing the granted view's name to read the table behind it.
        ("WITH open_orders AS (SELECT * FROM orders) SELECT count(*) FROM open_orders", "sql-denied"),
        ("SELECT count(*) FROM main.orders", "sql-denied"),
        ("BEGIN", "sql-denied"),
        ("CREATE TEMP TABLE channel (secret text)", "sql-denied"),
        ("CREATE TEMP VIEW orders_again AS SELECT * FROM orders", "sql-denied"),
        ("INSERT INTO products (sku) VALUES ('X')", "sql-denied"),
        ("SELECT 1; SELECT 2", "sql-error"),
        ("SELECT load_extension('/tmp/evil')", "sql-error"),
        ("SELECT length(randomblob(100000000))", "sql-error"),
    ];
    for (statement, expected) in &cases {
        let (code, message) = attempt(&store, statement).await;
        assert_eq!(code, *expected, "{statement}: {message}");
    }
    let (_, message) = attempt(&store, "SELECT length(randomblob(100000000))").await;
    assert!(message.contains("LimitExceeded"), "a value past the byte cap is never built: {message}");
    let (code, message) = attempt(&store, "SELECT count(*) FROM open_orders WHERE user_id = $1").await;
    assert_eq!(code, "sql-ok", "{message}");
    // Nothing a call did is there for the next: no transaction, no temp table.
    let (code, _) = attempt(&store, "SELECT * FROM temp.channel").await;
    assert_ne!(code, "sql-ok");
    assert!(!attached.exists(), "ATTACH created a file");
    service_intact(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_sqlite_statements_stop_at_their_deadline_and_the_other_slots_still_answer() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let endless = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r";
    let toml =
        format!("[limits]\ndeadline_ms = 10000\n[grants.sql]\ntimeout_ms = 300\n[config]\nstatement = {endless:?}\n");
    let config = config(&toml);
    let runtime = Arc::new(runtime_on(&store, Slot::Pricing, &config).await);
    let probe = Arc::new(load(&runtime, "fixtures/forbidden", Slot::Pricing, config).await);
    let started = Instant::now();
    // More runaway statements at once than the slot has turns.
    let runaways: Vec<_> = (0..4)
        .map(|_| {
            let (runtime, probe) = (runtime.clone(), probe.clone());
            tokio::spawn(async move { runtime.price(&probe, &CallContext::new("runaway"), &order(1)).await })
        })
        .collect();
    // Meanwhile another slot reads through its own grant.
    let shipped = crate::helpers::shipped_config("order-validation", Slot::Validation);
    let mut settings = shipped.config.clone();
    settings.insert("max_open_orders".into(), "5".into());
    let validation_runtime = runtime_on(&store, Slot::Validation, &shipped).await;
    let validation =
        load(&validation_runtime, "order-validation", Slot::Validation, shipped).await.with_settings(settings);
    let calm = Instant::now();
    let answer = validation_runtime.validate(&validation, &CallContext::new("calm"), &order(3)).await.unwrap();
    assert!(answer.value.is_empty());
    let counted = answer.uses.iter().find(|used| used.capability == "sql.query").unwrap();
    assert_eq!(counted.outcome, host::runtime::UseOutcome::Ok, "{counted:?}");
    assert!(calm.elapsed() < Duration::from_millis(300), "{:?}", calm.elapsed());
    for runaway in runaways {
        let report = runaway.await.unwrap().unwrap().value.unwrap_err();
        assert_eq!(report[1].message, "Error::Timeout");
    }
    // Two turns, two rounds of 300 ms: the statements really stopped.
    assert!(started.elapsed() < Duration::from_millis(2000), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_component_login_with_powers_is_refused() {
    let database = TestDatabase::create().await;
    let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let logins = host::runtime::capabilities::ComponentLogins { prefix: prefix.clone(), password: None };
    let cases = [
        ("CREATEDB", "may create roles or databases"),
        ("SUPERUSER", "is a superuser"),
        ("IN ROLE pg_read_all_data", "member of another role"),
    ];
    for (power, reason) in cases {
        sqlx::query(&format!("CREATE ROLE {prefix}_validation LOGIN {power}")).execute(&database.pool).await.unwrap();
        let error = host::runtime::capabilities::sql::set_up_logins(&database.pool, &logins).await.unwrap_err();
        assert!(error.to_string().contains(reason), "{power}: {error}");
        sqlx::query(&format!("DROP ROLE {prefix}_validation")).execute(&database.pool).await.unwrap();
    }
    // Created by the service itself, they are plain.
    host::runtime::capabilities::sql::set_up_logins(&database.pool, &logins).await.unwrap();
    for slot in ["validation", "pricing", "fulfillment"] {
        sqlx::query(&format!("DROP ROLE {prefix}_{slot}")).execute(&database.pool).await.unwrap();
    }
}

/// A login's relations while its grant is applied again, by two processes
/// at once (a new version installed everywhere): every query of the version
/// serving meanwhile is answered, never denied, and no installation fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_applied_again_by_two_processes_never_denies_a_query_meanwhile() {
    use host::runtime::bindings::sql::Value;
    use host::runtime::capabilities::SqlQuery;
    let database = TestDatabase::create().await;
    let store = store(database.url()).await;
    let config = config("[grants.sql]\nrelations = [\"open_orders\"]\ntimeout_ms = 2000\n");
    let grant = config.grants.sql.clone().expect("a grant");
    let sql = store.components_sql();
    sql.apply_grant(Slot::Validation, Some(&grant)).await.expect("the first grant applies");
    let installers: Vec<_> = (0..2)
        .map(|_| {
            let (sql, grant) = (sql.clone(), grant.clone());
            tokio::spawn(async move {
                for _ in 0..30 {
                    sql.apply_grant(Slot::Validation, Some(&grant)).await.expect("installing again succeeds");
                }
            })
        })
        .collect();
    let (mut answered, mut refused) = (0, Vec::new());
    while installers.iter().any(|installer| !installer.is_finished()) {
        let query = SqlQuery {
            slot: Slot::Validation,
            statement: "SELECT count(*) FROM open_orders WHERE user_id = $1",
            params: &[Value::Integer(7)],
            grant: &grant,
            deadline: Instant::now() + Duration::from_secs(2),
        };
        match sql.query(query).await {
            Ok(_) => answered += 1,
            Err(error) => refused.push(format!("{error:?}")),
        }
    }
    for installer in installers {
        installer.await.expect("no installation failed");
    }
    assert!(
        refused.is_empty(),
        "{} of {} queries refused meanwhile: {:?}",
        refused.len(),
        answered + refused.len(),
        &refused[..refused.len().min(3)]
    );
    assert!(answered > 10, "the queries ran while the grant was applied ({answered})");
}
