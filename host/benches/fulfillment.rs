//! Fulfillment throughput on PostgreSQL + Redis with the default components:
//! orders per second from `pending` to `fulfilled` for 1 and 4 workers
//! (relay -> Redis queue -> worker -> `fulfillment` component -> guarded
//! transitions -> ack), the lag from placing an order to its fulfillment
//! under a steady load, and, as the baseline in the same run, the same two
//! guarded transitions issued directly through the store (no queue, no
//! component) by as many tasks.
//!
//! Then a Redis outage under that load, on a Redis of the benchmark's own:
//! killed 2 s in and restarted empty 5 s later; it reports the jobs Redis
//! held when it died, the extra jobs published again, and how long after
//! Redis came back every order was fulfilled.
//!
//! `BENCH_ORDERS` (default 3000) orders per run; `BENCH_RATE` (default 100/s)
//! and `BENCH_SECONDS` (default 10) for the lag and outage runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use host::app::App;
use host::config::FulfillmentSettings;
use host::domain::{ComponentRecord, OrderStatus};
use host::fulfillment::{Worker, Workers};
use host::startup::Application;
use host::store::{Guard, NewOrder, PricedLine, Step};

mod common;
use common::{BenchDatabase, install_components, percentile, setting};
#[path = "../tests/common/redis_server.rs"]
mod redis_server;
use redis_server::PrivateRedis;

const CATALOGUE: i64 = 100;

/// A 3-line order on the catalogue, priced as the default rules would (no tax, no shipping).
fn new_order(n: u64, first_product: i64) -> NewOrder {
    let lines: Vec<PricedLine> = (0..3)
        .map(|line| {
            let product = first_product + ((n * 7 + line * 31) as i64 % CATALOGUE);
            PricedLine {
                product_id: product,
                sku: format!("BENCH-{product}"),
                name: format!("Bench product {product}"),
                unit_price: 500,
                quantity: 1 + line as i32,
                line_total: 500 * (1 + line as i64),
            }
        })
        .collect();
    let total = lines.iter().map(|line| line.line_total).sum();
    NewOrder {
        user_id: n as i64,
        currency: "EUR".into(),
        lines,
        subtotal: total,
        discount: 0,
        tax: 0,
        shipping: 0,
        total,
        notes: vec![],
        attributes: Default::default(),
        components: vec![],
        correlation_id: format!("bench-{n}"),
        idempotency_key: None,
    }
}

/// Places `count` orders from 16 tasks; returns their ids.
async fn place(service: &Arc<App>, first_product: i64, from: u64, count: u64) -> Vec<i64> {
    let mut tasks = Vec::new();
    for task in 0..16 {
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in (from + task..from + count).step_by(16) {
                ids.push(service.store.create_order(&new_order(n, first_product)).await.unwrap().id);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    ids
}

/// The baseline places its orders through the outbox too, so their jobs
/// reach the queue although the baseline fulfils the orders itself; left
/// there, the next phase's workers would first have to skip them all (they
/// are older). Lets workers skip them now and waits for an empty queue.
async fn skip_stale_jobs(service: &Arc<App>, stale: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while service.fulfillment.queue().depth().await.unwrap().queued < stale {
        assert!(Instant::now() < deadline, "the relay stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settings = FulfillmentSettings { workers: 4, claim_wait_ms: 100, ..FulfillmentSettings::default() };
    let running =
        Workers::start(Worker::new(service.fulfillment.clone(), service.fulfillment.queue().clone(), settings), 4);
    loop {
        let depth = service.fulfillment.queue().depth().await.unwrap();
        if depth.queued == 0 && depth.processing == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "stale jobs never cleared: {depth:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.drain(Duration::from_secs(10)).await;
}

async fn fulfilled_count(service: &App) -> i64 {
    service.store.count_orders(OrderStatus::Fulfilled).await.unwrap()
}

/// Waits until `target` orders are fulfilled; returns when that happened.
async fn wait_fulfilled(service: &App, target: i64) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(600);
    while fulfilled_count(service).await < target {
        assert!(Instant::now() < deadline, "the workers stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Instant::now()
}

/// The worker's two transitions, straight through the store, from `tasks` tasks.
async fn baseline(service: &Arc<App>, ids: Vec<i64>, tasks: usize) -> Duration {
    let started = Instant::now();
    let ids = Arc::new(ids);
    let mut handles = Vec::new();
    for task in 0..tasks {
        let (service, ids) = (service.clone(), ids.clone());
        handles.push(tokio::spawn(async move {
            let shipment = r#"{"carrier":"postal","service":"standard","warehouse":"main","estimated_days":3}"#;
            for id in ids.iter().skip(task).step_by(tasks) {
                let job = format!("baseline-{id}");
                // Leased as a worker leases it (the job id standing for the claim token).
                let until = chrono::Utc::now().timestamp_millis() + 30_000;
                let taken = Step { job: Some(&job), lease: Some((&job, until)), ..Step::to(OrderStatus::Processing) };
                let pending = Guard::From { status: OrderStatus::Pending, job: None, claim: None };
                service.store.transition(*id, pending, &[taken], "bench").await.unwrap();
                let record = ComponentRecord {
                    slot: "fulfillment".into(),
                    component: "baseline".into(),
                    version: "0".into(),
                    digest: "0".repeat(64),
                    duration_us: 0,
                    at: chrono::Utc::now(),
                };
                let step =
                    Step { shipment: Some(shipment), decision: Some(&record), ..Step::to(OrderStatus::Fulfilled) };
                let processing = Guard::From { status: OrderStatus::Processing, job: Some(&job), claim: Some(&job) };
                service.store.transition(*id, processing, &[step], "bench").await.unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    started.elapsed()
}

/// The benchmark's products; returns the first one's id.
async fn catalogue(service: &App) -> i64 {
    let mut first = None;
    for n in 0..CATALOGUE {
        let product = host::domain::input::NewProduct {
            sku: format!("BENCH-{n}"),
            name: format!("Bench product {n}"),
            price: 500,
            currency: "EUR".into(),
            stock: 1_000_000_000_000,
            active: true,
        };
        let id = service.store.create_product(&product).await.unwrap().id;
        first.get_or_insert(id);
    }
    first.unwrap()
}

/// Places `count` orders at `rate` per second, numbered from `from`; returns their ids.
async fn place_steadily(service: &Arc<App>, first_product: i64, from: u64, count: u64, rate: u64) -> Vec<i64> {
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut ids = Vec::new();
    for n in 0..count {
        every.tick().await;
        let service = service.clone();
        ids.push(tokio::spawn(async move { service.store.create_order(&new_order(from + n, first_product)).await }));
    }
    let mut placed = Vec::new();
    for id in ids {
        placed.push(id.await.unwrap().unwrap().id);
    }
    placed
}

/// What a Redis outage under load cost.
struct Outage {
    placed: usize,
    /// Jobs Redis held (queued, in hand, waiting for a retry) when it died.
    held: u64,
    /// Jobs published again beyond one per order.
    extra: i64,
    /// From Redis back to every order fulfilled.
    drained: Duration,
}

/// Orders placed at `rate`/s for `seconds` (at least 8) with 4 workers, on a
/// database and a Redis of this run's own; Redis is killed 2 s in and
/// restarted empty 5 s later.
fn redis_outage(rate: u64, seconds: u64) -> Outage {
    let server = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut redis = PrivateRedis::start();
    let mut database = BenchDatabase::create(&server);
    database.redis_url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    install_components(&dir.path().join("components"));
    let settings = FulfillmentSettings { workers: 4, claim_wait_ms: 100, ..FulfillmentSettings::default() };
    let app = server.block_on(Application::build(database.serve_settings(&dir.path().join("components"), settings)));
    let app = app.expect("the service starts");
    let service = app.app();
    server.spawn(app.run_until(std::future::pending()));
    let first_product = server.block_on(catalogue(&service));
    let load = {
        let service = service.clone();
        server.spawn(async move { place_steadily(&service, first_product, 0, rate * seconds.max(8), rate).await })
    };
    std::thread::sleep(Duration::from_secs(2));
    let depth = server.block_on(service.fulfillment.queue().depth()).unwrap_or_default();
    redis.stop();
    std::thread::sleep(Duration::from_secs(5));
    redis.restart();
    let back = Instant::now();
    let ids = server.block_on(load).unwrap();
    server.block_on(wait_fulfilled(&service, ids.len() as i64));
    let drained = back.elapsed();
    let jobs: i64 = server.block_on(async {
        let direct = sqlx::PgPool::connect(&database.url).await.unwrap();
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE topic = 'fulfillment'").fetch_one(&direct).await.unwrap()
    });
    drop(server);
    let cleanup = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    database.drop_now(&cleanup);
    let held = depth.queued + depth.processing + depth.delayed;
    Outage { placed: ids.len(), held, extra: jobs - ids.len() as i64, drained }
}

fn main() {
    let orders: u64 = setting("BENCH_ORDERS", 3000, 100);
    let rate: u64 = setting("BENCH_RATE", 100, 50);
    let seconds: u64 = setting("BENCH_SECONDS", 10, 1);
    let server = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let database = BenchDatabase::create(&server);
    let dir = tempfile::tempdir().unwrap();
    install_components(&dir.path().join("components"));
    // The service relays; the workers are started and stopped by the runs below.
    let idle = FulfillmentSettings { workers: 0, ..FulfillmentSettings::default() };
    let app = server.block_on(Application::build(database.serve_settings(&dir.path().join("components"), idle)));
    let app = app.expect("the service starts");
    let service = app.app();
    server.spawn(app.run_until(std::future::pending()));
    let first_product = server.block_on(catalogue(&service));

    database.vacuum(&server);
    let mut rows = Vec::new();
    let mut placed = 0;
    let mut fulfilled = 0;
    for workers in [1usize, 4] {
        // Each phase starts on vacuumed tables (no dead row versions left by
        // the one before). The backlog is queued before the workers start,
        // so they only drain.
        database.vacuum(&server);
        server.block_on(place(&service, first_product, placed, orders));
        placed += orders;
        server.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(60);
            while service.fulfillment.queue().depth().await.unwrap().queued < orders {
                assert!(Instant::now() < deadline, "the relay stalled");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let settings = FulfillmentSettings { workers, claim_wait_ms: 100, ..FulfillmentSettings::default() };
        let started = Instant::now();
        let running = server.block_on(async {
            Workers::start(
                Worker::new(service.fulfillment.clone(), service.fulfillment.queue().clone(), settings),
                workers,
            )
        });
        fulfilled += orders as i64;
        let finished = server.block_on(wait_fulfilled(&service, fulfilled));
        server.block_on(running.drain(Duration::from_secs(10)));
        let elapsed = finished - started;
        let baseline_ids = server.block_on(place(&service, first_product, placed, orders));
        placed += orders;
        let direct = server.block_on(baseline(&service, baseline_ids, workers));
        fulfilled += orders as i64;
        server.block_on(skip_stale_jobs(&service, orders));
        rows.push((workers, orders as f64 / elapsed.as_secs_f64(), orders as f64 / direct.as_secs_f64()));
    }

    // Lag: orders placed at a steady rate while 4 workers run.
    database.vacuum(&server);
    let settings = FulfillmentSettings { workers: 4, claim_wait_ms: 100, ..FulfillmentSettings::default() };
    let running = server.block_on(async {
        Workers::start(Worker::new(service.fulfillment.clone(), service.fulfillment.queue().clone(), settings), 4)
    });
    let lag_orders = rate * seconds;
    let ids = server.block_on(place_steadily(&service, first_product, placed, lag_orders, rate));
    fulfilled += lag_orders as i64;
    server.block_on(wait_fulfilled(&service, fulfilled));
    server.block_on(running.drain(Duration::from_secs(10)));
    // Per order: placed -> fulfilled, and its parts: placed -> published
    // (the outbox relay's `LPUSH`), published -> claimed (`processing`: the
    // queue and a free worker) and claimed -> fulfilled (policy call +
    // transition).
    let (mut lags, mut relayed, mut queued, mut decided) = server.block_on(async {
        let direct = sqlx::PgPool::connect(&database.url).await.unwrap();
        let (mut lags, mut relayed, mut queued, mut decided) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for id in ids {
            let order = service.store.order(id).await.unwrap();
            let reached = |status| order.history.iter().find(|entry| entry.to == status).unwrap().at;
            let (claimed, done) = (reached(OrderStatus::Processing), reached(OrderStatus::Fulfilled));
            let published: chrono::DateTime<chrono::Utc> =
                sqlx::query_scalar("SELECT published_at FROM outbox WHERE order_id = $1 AND topic = 'fulfillment'")
                    .bind(id)
                    .fetch_one(&direct)
                    .await
                    .unwrap();
            let span = |from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>| {
                (to - from).to_std().unwrap_or_default()
            };
            lags.push(span(order.created_at, done));
            relayed.push(span(order.created_at, published));
            queued.push(span(published, claimed));
            decided.push(span(claimed, done));
        }
        (lags, relayed, queued, decided)
    });
    for durations in [&mut lags, &mut relayed, &mut queued, &mut decided] {
        durations.sort_unstable();
    }

    println!();
    println!("| workers | orders/s pending -> fulfilled | baseline: same transitions via the store | ratio |");
    println!("| --- | --- | --- | --- |");
    for (workers, rate, direct) in &rows {
        println!("| {workers} | {rate:.0} | {direct:.0} | {:.0} % |", 100.0 * rate / direct);
    }
    println!();
    println!(
        "lag from placing to fulfilled at {rate}/s with 4 workers: p50 {:.1} ms, p99 {:.1} ms ({} orders)",
        percentile(&lags, 0.50).as_secs_f64() * 1e3,
        percentile(&lags, 0.99).as_secs_f64() * 1e3,
        lags.len()
    );
    let ms = |durations: &[Duration], at: f64| percentile(durations, at).as_secs_f64() * 1e3;
    for (part, durations) in [
        ("placed -> published (outbox relay)", &relayed),
        ("published -> processing (queue, worker)", &queued),
        ("processing -> fulfilled (policy, transition)", &decided),
    ] {
        println!("  {part:<46} p50 {:.1} ms, p99 {:.1} ms", ms(durations, 0.50), ms(durations, 0.99));
    }
    drop(server);
    let cleanup = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    database.drop_now(&cleanup);

    let outage = redis_outage(rate, seconds);
    println!();
    println!(
        "Redis killed for 5 s under {rate}/s with 4 workers ({} orders): it held {} jobs when it died; \
         {} jobs published again (target: at most the jobs it held); every order fulfilled {:.1} s after Redis came back",
        outage.placed,
        outage.held,
        outage.extra,
        outage.drained.as_secs_f64()
    );
}
