//! HTTP load against the service on PostgreSQL + Redis, with the default
//! components: `POST /api/v1/orders` (3-line orders) and
//! `GET /api/v1/orders/{id}`, each for 20 s at 32 connections, next to the
//! baseline measured in the same run: the same order transaction issued
//! directly through sqlx (no HTTP, no components) by 32 tasks. The baseline
//! runs first, on a catalogue of its own, and the tables are vacuumed between
//! phases, so neither side inherits the other's dead row versions.
//!
//! Needs PostgreSQL and Redis (`DATABASE_TEST_URL`, `REDIS_TEST_URL`, the
//! same defaults as the tests); creates and drops a database of its own.
//! `BENCH_SECONDS` and `BENCH_CONNECTIONS` change the duration and the load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use serde_json::{Value, json};

use host::domain::Product;
use host::store::{NewOrder, PricedLine, Store};

mod common;
use common::load::{Outcome, http_load};
use common::{ApiUnderLoad, load_catalogue, picks, setting};

/// The same create transaction as the service runs, from `tasks` tasks, on
/// the same spread of products.
async fn sqlx_baseline(
    store: Store,
    order: NewOrder,
    catalogue: Arc<Vec<Product>>,
    tasks: usize,
    duration: Duration,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + duration;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let (store, mut order, catalogue) = (store.clone(), order.clone(), catalogue.clone());
        handles.push(tokio::spawn(async move {
            let (mut latencies, mut failures) = (Vec::new(), 0u64);
            let mut n = 0;
            while Instant::now() < deadline {
                order.user_id = (task * 1_000_000 + n) as i64;
                // Numbered like the HTTP requests (one sequence across tasks),
                // so the tasks spread over the catalogue as the connections do.
                for (line, pick) in order.lines.iter_mut().zip(picks((n * tasks + task) as u64)) {
                    let product = &catalogue[pick];
                    line.product_id = product.id;
                    line.sku.clone_from(&product.sku);
                    line.name.clone_from(&product.name);
                }
                n += 1;
                let sent = Instant::now();
                failures += u64::from(store.create_order(&order).await.is_err());
                latencies.push(sent.elapsed());
            }
            (latencies, failures)
        }));
    }
    Outcome::gather(started, handles).await
}

fn main() {
    let seconds: u64 = setting("BENCH_SECONDS", 20, 1);
    let connections: usize = setting("BENCH_CONNECTIONS", 32, 4);
    let duration = Duration::from_secs(seconds);
    // The API alone (fulfillment workers have a benchmark of their own), on
    // a runtime of its own; the load generator runs on another.
    let running = ApiUnderLoad::start();
    let (server, client, database) = (&running.server, &running.client, &running.database);
    let (address, service) = (running.address, running.app.clone());

    // Two catalogues of 1,000 products with stock for any run length, one
    // for the service and one for the baseline, so neither phase works on
    // rows the other has churned; each order takes three products, spread so
    // orders do not all queue on the same rows.
    let catalogue = server.block_on(load_catalogue(&service.store, "HTTP"));
    let baseline_catalogue = server.block_on(load_catalogue(&service.store, "BASE"));
    let products: Vec<i64> = catalogue.iter().map(|product| product.id).collect();

    let post = {
        let products = products.clone();
        Arc::new(move |n: u64| {
            // Users spread wide: the default validation limits orders per user per minute.
            let [a, b, c] = picks(n);
            let body = json!({"user_id": n % 1_000_000, "items": [
                {"product_id": products[a], "quantity": 1},
                {"product_id": products[b], "quantity": 2},
                {"product_id": products[c], "quantity": 1},
            ]});
            Request::post("/api/v1/orders")
                .header("host", "bench")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap()
        })
    };
    // Warm up (connections, caches, and orders in the tables so the planner's
    // statistics are those of a live service), then vacuum.
    client.block_on(http_load(address, connections, Duration::from_secs(3), post.clone()));
    database.vacuum(client);

    // The baseline first: what the service stores for one order, straight
    // through sqlx, on the baseline's catalogue.
    let template = client.block_on(async {
        let body = json!({"user_id": 1, "items": [
            {"product_id": products[0], "quantity": 1},
            {"product_id": products[333], "quantity": 2},
            {"product_id": products[667], "quantity": 1},
        ]});
        let created: Value = common::bench_client()
            .post(format!("http://{address}/api/v1/orders"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created["id"].as_i64().expect("the template order is created")
    });
    let template = server.block_on(service.store.order(template)).expect("an order to copy");
    let baseline_order = NewOrder {
        user_id: 0,
        currency: template.currency.clone(),
        lines: template
            .items
            .iter()
            .map(|line| PricedLine {
                product_id: line.product_id,
                sku: line.sku.clone(),
                name: line.name.clone(),
                unit_price: line.unit_price,
                quantity: line.quantity,
                line_total: line.line_total,
            })
            .collect(),
        subtotal: template.subtotal,
        discount: template.discount,
        tax: template.tax,
        shipping: template.shipping,
        total: template.total,
        notes: template.notes.clone(),
        attributes: template.attributes.clone(),
        components: template.components.clone(),
        correlation_id: "bench".into(),
        idempotency_key: None,
    };
    println!("the same transaction through sqlx for {seconds} s at {connections} tasks ...");
    let store = service.store.clone();
    let baseline = running.measure(|| {
        server.block_on(sqlx_baseline(store, baseline_order, Arc::new(baseline_catalogue), connections, duration))
    });
    database.vacuum(client);

    println!("POST /api/v1/orders for {seconds} s at {connections} connections ...");
    let posted = running.measure(|| client.block_on(http_load(address, connections, duration, post)));

    let highest: i64 = client.block_on(async {
        let page: Value =
            reqwest::get(format!("http://{address}/api/v1/orders?limit=1")).await.unwrap().json().await.unwrap();
        page["items"][0]["id"].as_i64().unwrap_or(1)
    });
    let get = Arc::new(move |n: u64| {
        let id = 1 + (n as i64 * 7919) % highest;
        Request::get(format!("/api/v1/orders/{id}")).header("host", "bench").body(Full::new(Bytes::new())).unwrap()
    });
    println!("GET /api/v1/orders/{{id}} for {seconds} s at {connections} connections ...");
    let got = running.measure(|| client.block_on(http_load(address, connections, duration, get)));

    println!();
    println!("| scenario | requests/s | p50 | p99 | server CPU per request | non-2xx / errors |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!("{}", posted.row("POST /api/v1/orders (3 lines)"));
    println!("{}", baseline.row("baseline: same transaction via sqlx"));
    println!("{}", got.row("GET /api/v1/orders/{id}"));
    println!();
    println!(
        "POST throughput = {:.0} % of the sqlx baseline (target >= 70 %, p99 < 50 ms); GET {:.0}/s (target >= 15000, p99 < 10 ms)",
        100.0 * posted.rate() / baseline.rate(),
        got.rate()
    );

    running.finish();
}
