//! Faults of the platform, told apart from faults of the work: a database
//! that turned read-only (a failover) or dropped its connections (a restart),
//! and an embedded file another process holds locked, answer 503 with
//! `Retry-After` and cost a fulfillment job no attempt; and a keyed order
//! whose client went away mid-request is still placed, once, and its retry
//! gets the first answer. A PostgreSQL server restarted twice under a
//! steady load of keyed orders loses none and decides none twice, and so
//! does the API process killed (twice) in the middle of placing them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{Backend, Options, PrivatePostgres, TestApp, fast_fulfillment, postgres_url, problem};
use crate::on_both_backends;
use crate::processes::{ApiProcess, KeyedLoad, assert_each_order_placed_and_decided_once, keyed_client};
use host::config::FulfillmentSettings;
use host::fulfillment::DelayRange;

/// Runs `sql` on the PostgreSQL server's admin database.
async fn admin(sql: &str) {
    let mut admin = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
    sqlx::query(sql).execute(&mut admin).await.unwrap();
}

/// Makes `app`'s database read-only for new sessions (as a standby after a
/// failover is) or writable again, and ends every session on it, as a
/// restart does (the server answers `57P01 admin_shutdown`).
async fn fail_over(app: &TestApp, read_only: bool) {
    let name = app.database().name();
    let setting = if read_only { "on" } else { "off" };
    admin(&format!("ALTER DATABASE {name} SET default_transaction_read_only = {setting}")).await;
    admin(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")).await;
}

fn order_of(product: i64) -> Value {
    json!({"user_id": 7, "items": [{"product_id": product, "quantity": 1}]})
}

/// Asserts `response` is the 503 of a platform fault, with its `Retry-After`.
async fn unavailable(response: reqwest::Response) {
    let retry_after = response.headers().get("retry-after").map(|value| value.to_str().unwrap().to_owned());
    let body = problem(response, 503).await;
    assert_eq!(body["type"], "urn:orderly:problem:service-unavailable", "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_is_unavailable_and_costs_no_attempt() {
    // One attempt allowed: a fault charged to the job would dead-letter it at once.
    let fulfillment = fast_fulfillment(1);
    let slow = Some(DelayRange { min_ms: 1_500, max_ms: 1_500 });
    let fulfillment = FulfillmentSettings { max_attempts: 1, simulated_delay_ms: slow, ..fulfillment };
    let app = TestApp::spawn_with(Backend::Postgres, Options { fulfillment: Some(fulfillment), ..Options::default() });
    let app = app.await;
    let mug = app.product("MUG", 1250, 10).await;
    let id = app.place(&[(mug, 1)], json!({})).await;
    app.wait_for_status(id, "processing", Duration::from_secs(10)).await;
    // The worker holds the job (its policy is "slow"); the database fails over.
    fail_over(&app, true).await;
    for _ in 0..3 {
        unavailable(app.post("/api/v1/orders", &order_of(mug)).await).await;
    }
    let change = app.patch(&format!("/api/v1/orders/{id}/status"), &json!({"status": "cancelled"})).await;
    unavailable(change).await;
    // The worker's decision met the read-only database: given back, not failed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let depth = app.service.fulfillment.depth().await.unwrap();
    assert_eq!(depth.dead, 0, "no job was charged for the failover: {depth:?}");
    fail_over(&app, false).await;
    let order = app.wait_for_status(id, "fulfilled", Duration::from_secs(20)).await;
    let moves: Vec<&Value> = order["history"].as_array().unwrap().iter().map(|entry| &entry["to"]).collect();
    assert_eq!(moves, ["pending", "processing", "fulfilled"], "decided once: {order}");
    assert_eq!(app.post("/api/v1/orders", &order_of(mug)).await.status(), 201);
    assert_eq!((app.order_count().await, app.stock(mug).await), (2, 8), "nothing stored by the refused requests");
}

/// Holds the database's write lock against the service: on PostgreSQL the
/// product's row, on SQLite the whole file (as another process writing
/// would), until [`WriteLock::release`].
enum WriteLock {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(rusqlite::Connection),
}

impl WriteLock {
    async fn take(app: &TestApp, product: i64) -> Self {
        match app.backend {
            Backend::Postgres => {
                let mut tx = app.database().pool.begin().await.unwrap();
                sqlx::query("SELECT 1 FROM products WHERE id = $1 FOR UPDATE")
                    .bind(product)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                WriteLock::Postgres(tx)
            }
            Backend::Embedded => {
                let file = rusqlite::Connection::open(app.sqlite_file()).unwrap();
                file.execute_batch("BEGIN IMMEDIATE").unwrap();
                WriteLock::Sqlite(file)
            }
        }
    }

    async fn release(self) {
        match self {
            WriteLock::Postgres(tx) => tx.rollback().await.unwrap(),
            WriteLock::Sqlite(file) => file.execute_batch("ROLLBACK").unwrap(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_file_locked_past_the_busy_timeout_is_unavailable() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let mug = app.product("MUG", 1250, 10).await;
    let lock = WriteLock::take(&app, mug).await;
    // SQLite waits out its 5 s busy timeout, then answers SQLITE_BUSY.
    unavailable(app.post("/api/v1/orders", &order_of(mug)).await).await;
    lock.release().await;
    assert_eq!(app.post("/api/v1/orders", &order_of(mug)).await.status(), 201);
    assert_eq!((app.order_count().await, app.stock(mug).await), (1, 9));
}

on_both_backends!(a_keyed_order_is_placed_even_when_its_client_goes_away, |app| {
    let mug = app.product("MUG", 1250, 10).await;
    let lock = WriteLock::take(&app, mug).await;
    // The client sends a keyed order, which waits on the lock, and gives up
    // (its connection closes) before an answer comes.
    let (client, url) = (app.client.clone(), app.url("/api/v1/orders"));
    let sent = client.post(&url).header("idempotency-key", "walked-away").json(&order_of(mug)).send();
    assert!(tokio::time::timeout(Duration::from_millis(500), sent).await.is_err(), "no answer while locked");
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.release().await;
    // The placing went on without its client: the order is stored once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.order_count().await == 0 {
        assert!(Instant::now() < deadline, "the order was dropped with its connection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The client's retry with the same key gets that order.
    let retry = app.client.post(&url).header("idempotency-key", "walked-away").json(&order_of(mug)).send().await;
    let retry = retry.unwrap();
    assert_eq!((retry.status().as_u16(), retry.headers().get("idempotent-replayed").is_some()), (201, true));
    let order: Value = retry.json().await.unwrap();
    assert_eq!(order["items"][0]["quantity"], 1);
    assert_eq!((app.order_count().await, app.stock(mug).await), (1, 9), "placed once, stock taken once");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_survive_postgres_restarting_under_load() {
    let postgres = PrivatePostgres::start();
    let options =
        Options { database_url: Some(postgres.url()), fulfillment: Some(fast_fulfillment(2)), ..Options::default() };
    let app = TestApp::spawn_with(Backend::Postgres, options).await;
    let mug = app.product("MUG", 100, 1_000_000).await;
    // Four clients place orders for 6 s; the server restarts twice meanwhile.
    let clients: Vec<_> =
        (0..4).map(|client| tokio::spawn(keyed_client(app.url(""), mug, client, Duration::from_secs(6)))).collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // `pg_ctl` waits for the restart; the runtime's other threads keep serving.
    tokio::task::block_in_place(|| postgres.restart());
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    tokio::task::block_in_place(|| postgres.restart());
    let load = KeyedLoad::merge(futures::future::join_all(clients).await.into_iter().map(Result::unwrap));
    println!("{} orders placed across two restarts; {} answers were 503 and retried", load.placed.len(), load.refused);
    assert!(load.placed.len() > 20, "the load ran: {} orders", load.placed.len());
    assert_each_order_placed_and_decided_once(&app, &load, mug, 1_000_000).await;
    assert_eq!(app.service.fulfillment.depth().await.unwrap().dead, 0, "no job charged for the restarts");
}

/// Keys claimed by requests that have not finished placing their order.
async fn keys_in_progress(app: &TestApp) -> i64 {
    let mut connection = sqlx::PgConnection::connect(&app.database_url).await.unwrap();
    let query = "SELECT count(*) FROM idempotency_keys WHERE state = 'in_progress'";
    sqlx::query_scalar(query).fetch_one(&mut connection).await.unwrap()
}

/// Freezes `api` at a moment it holds keys it has not finished placing
/// orders for; returns how many.
async fn freeze_mid_placing(api: &ApiProcess, app: &TestApp) -> i64 {
    for _ in 0..200 {
        api.signal("STOP");
        let held = keys_in_progress(app).await;
        if held > 0 {
            return held;
        }
        api.signal("CONT");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the API never held a key in progress");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_orders_survive_the_api_process_killed_mid_request() {
    let options = Options { fulfillment: Some(fast_fulfillment(2)), ..Options::default() };
    let app = TestApp::spawn_with(Backend::Postgres, options).await;
    let mug = app.product("MUG", 100, 1_000_000).await;
    let mut api = ApiProcess::start(&app).await;
    let clients: Vec<_> =
        (0..4).map(|client| tokio::spawn(keyed_client(api.url(), mug, client, Duration::from_secs(5)))).collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // Killed while placing orders: their keys are claimed, their transactions open.
    let held = freeze_mid_placing(&api, &app).await;
    api.kill_and_restart(&app).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    api.kill_and_restart(&app).await; // and again, at whatever moment
    let load = KeyedLoad::merge(futures::future::join_all(clients).await.into_iter().map(Result::unwrap));
    println!(
        "{} orders placed through two kills of the API ({held} keys held at the first): {} requests unanswered, \
         {} answered 409 in progress, {} answered 503, all retried with their keys",
        load.placed.len(),
        load.unanswered,
        load.in_progress,
        load.refused
    );
    assert!(load.unanswered > 0, "the kills cut requests off");
    assert!(load.in_progress > 0, "the keys the dead process held were answered 409 until free");
    // The keys the dead process held were taken over once its time limit had passed, and placed once.
    assert_each_order_placed_and_decided_once(&app, &load, mug, 1_000_000).await;
    assert_eq!(keys_in_progress(&app).await, 0, "no key left held");
}
