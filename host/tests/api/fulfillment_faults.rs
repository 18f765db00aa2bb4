//! Fulfillment under faults, on PostgreSQL and Redis: two workers sharing a
//! thousand orders, a worker killed between claim and ack, a worker stopped
//! with jobs in hand, and Redis losing its data. No order is lost, and none
//! is fulfilled twice.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::helpers::{Backend, Options, TestApp, fast_fulfillment};
use host::config::{FulfillmentSettings, SwapSettings};
use host::fulfillment::{Worker, Workers};
use host::startup::Background;

/// `host worker` on `app`'s database, Redis and components, with `settings` as
/// environment variables.
fn worker_process(app: &TestApp, settings: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
    command
        .arg("worker")
        .env("DATABASE_URL", app.database().url())
        .env("REDIS_URL", app.redis_url.as_deref().unwrap())
        .env("REDIS_NAMESPACE", &app.namespace)
        .env("COMPONENTS_DIR", &app.components_dir)
        .env("CLAIM_WAIT_MS", "200")
        .env("RUST_LOG", "warn")
        .stdout(if std::env::var_os("TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() });
    for (name, value) in settings {
        command.env(name, value);
    }
    command.spawn().expect("host worker starts")
}

/// How many times each order entered `status`: (order id, count), for every order in the database.
async fn entries_into(app: &TestApp, status: &str) -> Vec<(i64, i64)> {
    sqlx::query_as(
        "SELECT o.id, (SELECT count(*) FROM order_status_history h WHERE h.order_id = o.id AND h.to_status = $1) \
         FROM orders o ORDER BY o.id",
    )
    .bind(status)
    .fetch_all(&app.database().pool)
    .await
    .unwrap()
}

async fn count_in(app: &TestApp, status: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = $1")
        .bind(status)
        .fetch_one(&app.database().pool)
        .await
        .unwrap()
}

/// Waits until `count` orders are `status`.
async fn wait_for_count(app: &TestApp, status: &str, count: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = count_in(app, status).await;
        if now == count {
            return;
        }
        assert!(Instant::now() < deadline, "{now} orders {status}, expected {count}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts every order went `pending -> processing` once and reached `fulfilled` once.
async fn assert_fulfilled_exactly_once(app: &TestApp, orders: usize) {
    let fulfilled = entries_into(app, "fulfilled").await;
    assert_eq!(fulfilled.len(), orders);
    assert!(fulfilled.iter().all(|(_, count)| *count == 1), "fulfilled more or less than once: {fulfilled:?}");
    let processing = entries_into(app, "processing").await;
    assert!(processing.iter().all(|(_, count)| *count == 1), "taken more or less than once: {processing:?}");
}

async fn list_len(app: &TestApp, key: &str) -> i64 {
    let mut redis = app.redis().await;
    redis::cmd("LLEN").arg(format!("{}{key}", app.namespace)).query_async(&mut redis).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_fulfil_a_thousand_orders_exactly_once() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let products = [app.product("A", 100, 100_000).await, app.product("B", 250, 100_000).await];
    let app = Arc::new(app);
    let placed: Vec<i64> = futures::stream::iter(0..1000)
        .map(|n| {
            let app = app.clone();
            async move { app.place_for(n as i64, &[(products[n % 2], 1 + (n % 3) as u32)], json!({})).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(placed.len(), 1000);
    // Two independent workers (as two processes would be), two tasks each.
    let settings = FulfillmentSettings { workers: 2, ..fast_fulfillment(2) };
    let first = Workers::start(
        Worker::new(app.service.fulfillment.clone(), app.service.fulfillment.queue().clone(), settings.clone()),
        2,
    );
    let second = Workers::start(
        Worker::new(app.service.fulfillment.clone(), app.service.fulfillment.queue().clone(), settings),
        2,
    );
    wait_for_count(&app, "fulfilled", 1000, Duration::from_secs(180)).await;
    assert_eq!(first.drain(Duration::from_secs(5)).await + second.drain(Duration::from_secs(5)).await, 0);
    assert_fulfilled_exactly_once(&app, 1000).await;
    assert_eq!(list_len(&app, "fulfillment_queue").await, 0, "nothing left behind");
    assert_eq!(list_len(&app, "fulfillment_queue:processing").await, 0, "every job acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_claim_and_ack_loses_nothing() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let mug = app.product("MUG", 1250, 10).await;
    let id = app.place(&[(mug, 1)], json!({})).await;
    // The first worker takes the job, then dies in the middle of it.
    let mut doomed = worker_process(&app, &[("WORKERS", "1"), ("FULFILLMENT_DELAY_MS", "30000")]);
    app.wait_for_status(id, "processing", Duration::from_secs(60)).await;
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    assert_eq!(list_len(&app, "fulfillment_queue:processing").await, 1, "the claim outlives its worker");
    // Another worker's reaper gives the job back after the visibility timeout, and it resumes the order.
    let mut rescuer = worker_process(&app, &[("WORKERS", "1"), ("VISIBILITY_TIMEOUT_MS", "1000")]);
    let order = app.wait_for_status(id, "fulfilled", Duration::from_secs(60)).await;
    rescuer.kill().unwrap();
    rescuer.wait().unwrap();
    assert_eq!(order["shipment"]["warehouse"], "main");
    assert_fulfilled_exactly_once(&app, 1).await;
    assert_eq!(list_len(&app, "fulfillment_queue:processing").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_jobs_in_hand_finish_and_loses_none() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let mug = app.product("MUG", 1250, 100).await;
    let mut orders = Vec::new();
    for user in 0..4 {
        orders.push(app.place_for(user, &[(mug, 1)], json!({})).await);
    }
    let mut worker =
        worker_process(&app, &[("WORKERS", "2"), ("FULFILLMENT_DELAY_MS", "1500"), ("SHUTDOWN_GRACE_SECS", "10")]);
    wait_for_count(&app, "processing", 2, Duration::from_secs(60)).await;
    let signalled = Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    assert!(signalled.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = worker.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the worker did not stop after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "a clean exit: {status:?}");
    // The two jobs in hand were finished, the other two never taken.
    assert_eq!(count_in(&app, "fulfilled").await, 2);
    assert_eq!(count_in(&app, "pending").await, 2);
    assert_eq!(list_len(&app, "fulfillment_queue").await, 2);
    assert_eq!(list_len(&app, "fulfillment_queue:processing").await, 0);
    // The next worker picks up the rest.
    let rest = Workers::start(
        Worker::new(app.service.fulfillment.clone(), app.service.fulfillment.queue().clone(), fast_fulfillment(1)),
        1,
    );
    wait_for_count(&app, "fulfilled", 4, Duration::from_secs(30)).await;
    rest.drain(Duration::from_secs(5)).await;
    assert_fulfilled_exactly_once(&app, 4).await;
}

/// A Redis server of the test's own, on a free port, without persistence.
struct PrivateRedis {
    port: u16,
    process: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = Self { port, process: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let process = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().unwrap();
            process.wait().unwrap();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_survive_redis_going_down_and_losing_its_data() {
    let mut redis = PrivateRedis::start();
    let options = Options { redis_url: Some(redis.url()), ..Options::default() };
    let app = TestApp::spawn_with(Backend::Postgres, options).await;
    let mug = app.product("MUG", 1250, 100).await;
    for user in 0..3 {
        app.place_for(user, &[(mug, 1)], json!({})).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while list_len(&app, "fulfillment_queue").await < 3 {
        assert!(Instant::now() < deadline, "the relay published the jobs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Redis dies with three jobs queued; orders keep coming in.
    redis.stop();
    let started = Instant::now();
    for user in 3..6 {
        app.place_for(user, &[(mug, 1)], json!({})).await;
    }
    assert!(started.elapsed() < Duration::from_secs(10), "orders are taken while Redis is down");
    redis.restart();
    // Workers start; the relay publishes what waited in the outbox, and the
    // reconciler publishes again the orders whose jobs Redis lost.
    let settings = FulfillmentSettings { reconcile_after_ms: 1000, ..fast_fulfillment(2) };
    let background = Background::start(app.service.clone(), &settings, &SwapSettings::default());
    wait_for_count(&app, "fulfilled", 6, Duration::from_secs(60)).await;
    background.stop(Duration::from_secs(5)).await;
    assert_fulfilled_exactly_once(&app, 6).await;
}
