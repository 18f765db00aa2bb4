//! Fulfillment under faults, on PostgreSQL and Redis: two workers sharing a
//! thousand orders, a worker killed between claim and ack, a worker stopped
//! with jobs in hand, and Redis losing its data. No order is lost, and none
//! is fulfilled twice.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{Backend, Options, PrivatePostgres, PrivateRedis, TestApp, fast_fulfillment};
use crate::on_both_backends;
use crate::processes::{
    ApiProcess, KeyedLoad, assert_each_order_placed_and_decided_once, keyed_client, signal, worker_process,
    worker_process_to,
};
use host::config::{FulfillmentSettings, SwapSettings};
use host::fulfillment::relay::{Relay, Sink};
use host::fulfillment::{DelayRange, Worker, Workers};
use host::runtime::Slot;
use host::startup::Background;
use sqlx::Connection;

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

/// Waits until `count` jobs wait in the Redis queue.
async fn wait_until_queued(app: &TestApp, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while list_len(app, "fulfillment_queue").await < count {
        assert!(Instant::now() < deadline, "{count} jobs were not queued in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let mut doomed =
        worker_process(&app, &[("WORKERS", "1"), ("FULFILLMENT_DELAY_MS", "30000"), ("VISIBILITY_TIMEOUT_MS", "2000")]);
    app.wait_for_status(id, "processing", Duration::from_secs(60)).await;
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    assert_eq!(list_len(&app, "fulfillment_queue:processing").await, 1, "the claim outlives its worker");
    // Another worker's reaper gives the job back after the visibility timeout,
    // and it resumes the order once the dead worker's lease on it ran out.
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

/// The service on a Redis of the test's own, with three orders for one product waiting.
async fn three_orders_on_a_private_redis() -> (PrivateRedis, TestApp, i64) {
    let redis = PrivateRedis::start();
    let options = Options { redis_url: Some(redis.url()), ..Options::default() };
    let app = TestApp::spawn_with(Backend::Postgres, options).await;
    let mug = app.product("MUG", 1250, 100).await;
    for user in 0..3 {
        app.place_for(user, &[(mug, 1)], json!({})).await;
    }
    (redis, app, mug)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_survive_redis_going_down_and_losing_its_data() {
    let (mut redis, app, mug) = three_orders_on_a_private_redis().await;
    wait_until_queued(&app, 3).await;
    // Redis dies with three jobs queued; orders keep coming in.
    redis.stop();
    let started = Instant::now();
    for user in 3..6 {
        app.place_for(user, &[(mug, 1)], json!({})).await;
    }
    assert!(started.elapsed() < Duration::from_secs(10), "orders are taken while Redis is down");
    redis.restart();
    // Workers start; the relay publishes what waited in the outbox, and the
    // recovery pass publishes again the orders whose jobs Redis lost.
    let settings = FulfillmentSettings { recover_every_ms: 1000, ..fast_fulfillment(2) };
    let background = Background::start(app.service.clone(), &settings, &SwapSettings::default());
    wait_for_count(&app, "fulfilled", 6, Duration::from_secs(60)).await;
    background.stop(Duration::from_secs(5)).await;
    assert_fulfilled_exactly_once(&app, 6).await;
}

/// How many fulfillment jobs were written for each order: (order id, count).
async fn jobs_written(app: &TestApp) -> Vec<(i64, i64)> {
    sqlx::query_as(
        "SELECT o.id, (SELECT count(*) FROM outbox b WHERE b.order_id = o.id AND b.topic = 'fulfillment') \
         FROM orders o ORDER BY o.id",
    )
    .fetch_all(&app.database().pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_asks_the_queue_and_republishes_only_what_it_lost() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let mug = app.product("MUG", 1250, 100).await;
    for user in 0..20 {
        app.place_for(user, &[(mug, 1)], json!({})).await;
    }
    wait_until_queued(&app, 20).await;
    // No worker runs: the backlog only ages. Recovery looks every 200 ms.
    let settings = FulfillmentSettings { recover_every_ms: 200, ..fast_fulfillment(1) };
    let stop = tokio_util::sync::CancellationToken::new();
    let upkeep = tokio::spawn(host::fulfillment::upkeep::run(app.service.fulfillment.clone(), settings, stop.clone()));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(jobs_written(&app).await.iter().all(|(_, jobs)| *jobs == 1), "a waiting job is not lost");
    assert_eq!(list_len(&app, "fulfillment_queue").await, 20);
    // Five jobs vanish from Redis (a flush, a failover to a stale replica).
    let mut redis = app.redis().await;
    let queue = format!("{}fulfillment_queue", app.namespace);
    let lost: Vec<String> = redis::cmd("RPOP").arg(&queue).arg(5).query_async(&mut redis).await.unwrap();
    wait_until_queued(&app, 20).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.cancel();
    upkeep.await.unwrap();
    // Exactly the lost ones, once each, with the job ids their orders hold.
    let written = jobs_written(&app).await;
    assert_eq!(written.iter().filter(|(_, jobs)| *jobs == 2).count(), 5, "{written:?}");
    assert!(written.iter().all(|(_, jobs)| *jobs <= 2), "{written:?}");
    let queued: Vec<String> = redis::cmd("LRANGE").arg(&queue).arg(0).arg(-1).query_async(&mut redis).await.unwrap();
    assert!(lost.iter().all(|job| queued.contains(job)), "the same payloads, job ids included");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_held_by_a_frozen_worker_are_decided_after_redis_loses_its_claims() {
    let (mut redis, app, _) = three_orders_on_a_private_redis().await;
    // A worker takes all three and is frozen with them in hand.
    let mut frozen =
        worker_process(&app, &[("WORKERS", "3"), ("FULFILLMENT_DELAY_MS", "60000"), ("VISIBILITY_TIMEOUT_MS", "2000")]);
    wait_for_count(&app, "processing", 3, Duration::from_secs(60)).await;
    assert!(Command::new("kill").args(["-STOP", &frozen.id().to_string()]).status().unwrap().success());
    // Redis restarts empty: the processing list and the claims are gone; then the worker dies.
    redis.stop();
    redis.restart();
    frozen.kill().unwrap();
    frozen.wait().unwrap();
    // Another worker's recovery finds the three `processing` orders that no
    // claim covers and queues their own jobs again; they are resumed and decided.
    let settings = FulfillmentSettings { recover_every_ms: 500, ..fast_fulfillment(2) };
    let background = Background::start(app.service.clone(), &settings, &SwapSettings::default());
    wait_for_count(&app, "fulfilled", 3, Duration::from_secs(60)).await;
    background.stop(Duration::from_secs(5)).await;
    assert_fulfilled_exactly_once(&app, 3).await;
    let written = jobs_written(&app).await;
    assert!(written.iter().all(|(_, jobs)| *jobs == 2), "one job lost and published again per order: {written:?}");
}

/// The fulfillment slot's production calls in this process.
fn policy_calls(app: &TestApp) -> u64 {
    app.service.rules.slots().get(Slot::Fulfillment).unwrap().stats.snapshot().calls
}

on_both_backends!(a_slow_worker_keeps_its_order_past_the_visibility_timeout, |app| {
    let mug = app.product("MUG", 1250, 10).await;
    let id = app.place(&[(mug, 1)], json!({})).await;
    // Each job takes 3 s, three visibility timeouts; two workers and the reaper watch.
    let slow = Some(DelayRange { min_ms: 3_000, max_ms: 3_000 });
    let settings =
        FulfillmentSettings { visibility_timeout_ms: 1_000, simulated_delay_ms: slow, ..fast_fulfillment(2) };
    let background = Background::start(app.service.clone(), &settings, &SwapSettings::default());
    let order = app.wait_for_status(id, "fulfilled", Duration::from_secs(30)).await;
    // The other worker would have taken the job at the first reap; it never did.
    tokio::time::sleep(Duration::from_secs(2)).await;
    background.stop(Duration::from_secs(5)).await;
    assert_eq!(policy_calls(&app), 1, "the policy ran once: the holder renewed its lease");
    let moves: Vec<&Value> = order["history"].as_array().unwrap().iter().map(|entry| &entry["to"]).collect();
    assert_eq!(moves, ["pending", "processing", "fulfilled"], "taken once, decided once: {order}");
    assert_eq!(order["components"].as_array().unwrap().iter().filter(|c| c["slot"] == "fulfillment").count(), 1);
    let depth = app.service.fulfillment.depth().await.unwrap();
    assert_eq!((depth.processing, depth.dead), (0, 0), "{depth:?}");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_loses_its_order_and_applies_nothing_when_it_wakes() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let mug = app.product("MUG", 1250, 10).await;
    let id = app.place(&[(mug, 1)], json!({})).await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let settings = [("WORKERS", "1"), ("FULFILLMENT_DELAY_MS", "2000"), ("VISIBILITY_TIMEOUT_MS", "1000")];
    let mut frozen = worker_process_to(&app, &settings, Stdio::from(log.reopen().unwrap()));
    app.wait_for_status(id, "processing", Duration::from_secs(60)).await;
    assert!(Command::new("kill").args(["-STOP", &frozen.id().to_string()]).status().unwrap().success());
    // Another worker takes the job once its claim expires and the order once its lease ran out;
    // its policy is slow too, so the frozen one wakes while it runs.
    let slow = Some(DelayRange { min_ms: 3_000, max_ms: 3_000 });
    let settings =
        FulfillmentSettings { visibility_timeout_ms: 1_000, simulated_delay_ms: slow, ..fast_fulfillment(1) };
    let background = Background::start(app.service.clone(), &settings, &SwapSettings::default());
    let holder = || async {
        let token: Option<String> = sqlx::query_scalar("SELECT claim_token FROM orders WHERE id = $1")
            .bind(id)
            .fetch_one(&app.database().pool)
            .await
            .unwrap();
        token
    };
    let frozen_holder = holder().await;
    assert!(frozen_holder.is_some(), "the frozen worker's delivery holds the order");
    let deadline = Instant::now() + Duration::from_secs(20);
    while holder().await == frozen_holder {
        assert!(Instant::now() < deadline, "no other worker took the order over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count_in(&app, "processing").await, 1, "taken over, still deciding");
    assert!(Command::new("kill").args(["-CONT", &frozen.id().to_string()]).status().unwrap().success());
    let order = app.wait_for_status(id, "fulfilled", Duration::from_secs(30)).await;
    background.stop(Duration::from_secs(5)).await;
    frozen.kill().unwrap();
    frozen.wait().unwrap();
    assert_fulfilled_exactly_once(&app, 1).await;
    assert_eq!(order["components"].as_array().unwrap().iter().filter(|c| c["slot"] == "fulfillment").count(), 1);
    // The woken worker knew it had lost the order: it decided nothing and erased no one's claim.
    let lines = std::fs::read_to_string(log.path()).unwrap();
    assert!(lines.contains("lease was lost"), "{lines}");
    assert!(!lines.contains("order fulfillment decided"), "{lines}");
    assert_eq!(list_len(&app, "fulfillment_queue:processing").await, 0);
    assert_eq!(app.service.fulfillment.depth().await.unwrap().dead, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_in_several_processes_keep_each_orders_events_in_order() {
    let mut redis = PrivateRedis::start();
    let options = Options { redis_url: Some(redis.url()), ..Options::default() };
    let app = Arc::new(TestApp::spawn_with(Backend::Postgres, options).await);
    let mug = app.product("MUG", 100, 100_000).await;
    // Redis is down while 200 orders are placed and then cancelled: a backlog
    // in which each order's two events sit far apart.
    redis.stop();
    let placed: Vec<i64> = futures::stream::iter(0..200)
        .map(|user| {
            let app = app.clone();
            async move { app.place_for(user, &[(mug, 1)], json!({})).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for id in &placed {
        let cancelled = app.patch(&format!("/api/v1/orders/{id}/status"), &json!({"status": "cancelled"})).await;
        assert_eq!(cancelled.status(), 200);
    }
    redis.restart();
    // Three more relays, as three more processes run them, race the app's own over the backlog.
    let stop = tokio_util::sync::CancellationToken::new();
    let client = redis::Client::open(redis.url()).unwrap();
    let stream = format!("{}order_events", app.namespace);
    for _ in 0..3 {
        let connection = redis::aio::ConnectionManager::new(client.clone()).await.unwrap();
        let queue = host::fulfillment::queue::redis_queue::QueueKeys::new(&app.namespace).queue;
        let sink = Sink::Redis { connection, queue, stream: stream.clone(), max_len: 100_000 };
        tokio::spawn(Relay::new(app.service.store.clone(), sink).run(stop.clone()));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&app.database().pool)
            .await
            .unwrap();
        if waiting == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{waiting} messages still wait in the outbox");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    // Every order's events reached the stream in the order they were written.
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let entries: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(&stream).arg("-").arg("+").query_async(&mut connection).await.unwrap();
    let mut last_version: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
    let mut seen = 0;
    for entry in entries.ids {
        let event: Value = serde_json::from_str(&entry.get::<String>("event").unwrap()).unwrap();
        let (order, version) = (event["order_id"].as_i64().unwrap(), event["version"].as_i64().unwrap());
        let previous = last_version.insert(order, version).unwrap_or(0);
        assert!(version > previous, "order {order}: version {version} after {previous}");
        seen += 1;
    }
    assert!(seen >= 400, "{seen} events for 200 orders");
    assert_eq!(last_version.len(), 200);
    assert!(last_version.values().all(|version| *version == 2), "every order ended cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_under_one_load_loses_no_order_and_decides_none_twice() {
    let (postgres, mut redis) = (PrivatePostgres::start(), PrivateRedis::start());
    let options = Options {
        database_url: Some(postgres.url()),
        redis_url: Some(redis.url()),
        fulfillment: Some(FulfillmentSettings {
            visibility_timeout_ms: 2_000,
            recover_every_ms: 1_000,
            ..fast_fulfillment(1)
        }),
        ..Options::default()
    };
    let app = TestApp::spawn_with(Backend::Postgres, options).await;
    let mug = app.product("MUG", 100, 1_000_000).await;
    let fast = [("WORKERS", "2"), ("VISIBILITY_TIMEOUT_MS", "2000"), ("RECOVER_EVERY_MS", "1000")];
    let (mut doomed, mut frozen) = (worker_process(&app, &fast), worker_process(&app, &fast));
    // Four clients place keyed orders through an API process for 9 s, retrying
    // with its key each request that got no final answer.
    let mut api = ApiProcess::start(&app).await;
    let clients: Vec<_> =
        (0..4).map(|client| tokio::spawn(keyed_client(api.url(), mug, client, Duration::from_secs(9)))).collect();
    let at = |ms| tokio::time::sleep(Duration::from_millis(ms));
    at(1_000).await;
    doomed.kill().unwrap(); // a worker dies with jobs in hand
    doomed.wait().unwrap();
    let mut replacement = worker_process(&app, &fast);
    at(500).await;
    api.kill_and_restart(&app).await; // the API dies mid-request
    at(500).await;
    signal(&frozen, "STOP"); // another worker freezes with its jobs
    at(1_000).await;
    let held = app.service.fulfillment.depth().await.unwrap();
    redis.stop(); // Redis dies and comes back empty
    at(1_000).await;
    redis.restart();
    at(1_000).await;
    tokio::task::block_in_place(|| postgres.restart()); // the database restarts
    at(1_000).await;
    signal(&frozen, "CONT"); // the frozen worker wakes, long past its leases
    let load = KeyedLoad::merge(futures::future::join_all(clients).await.into_iter().map(Result::unwrap));
    // Every answered order is decided exactly once, and no other order exists.
    assert_each_order_placed_and_decided_once(&app, &load, mug, 1_000_000).await;
    for worker in [&mut frozen, &mut replacement] {
        worker.kill().unwrap();
        worker.wait().unwrap();
    }
    let mut connection = sqlx::PgConnection::connect(&postgres.url()).await.unwrap();
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE topic = 'fulfillment'")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    // Redis lost its jobs once, so no order needed its job published again more than once,
    // however many processes ran the recovery pass at the same time.
    let most: i64 = sqlx::query_scalar(
        "SELECT COALESCE(max(jobs), 0) FROM (SELECT count(*) AS jobs FROM outbox \
         WHERE topic = 'fulfillment' GROUP BY order_id) AS per_order",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert!(most <= 2, "an order's job was published {most} times");
    let (extra, held) = (jobs - load.placed.len() as i64, held.queued + held.processing + held.delayed);
    println!(
        "{} orders through a killed worker, a frozen one, the API killed, Redis restarted empty and PostgreSQL \
         restarted: {} requests unanswered, {} answered 409 in progress, {} answered 503 (all retried with their \
         keys); Redis held {held} jobs when it died, {extra} were published again",
        load.placed.len(),
        load.unanswered,
        load.in_progress,
        load.refused
    );
}
