//! Hot swap on PostgreSQL + Redis with the default components: the time from
//! dropping a new `.wasm` into the components folder (written beside and
//! renamed) to its serving, for each slot, and `POST /api/v1/orders`
//! throughput while `pricing` is swapped every second, against the steady
//! state measured in the same run.
//!
//! `BENCH_SECONDS` (default 10) per load phase, `BENCH_CONNECTIONS` (16),
//! `BENCH_DROPS` (5) drops per slot.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use host::app::App;
use host::config::FulfillmentSettings;
use host::domain::input::NewProduct;
use host::runtime::Slot;
use host::startup::Application;

mod common;
use common::load::{http_load, post_order, print_throughput_during_swaps};
use common::{BenchDatabase, install_components, percentile, rebuilt, setting};

/// Writes `wasm` beside `<slot>.wasm` and renames it over; returns its sha256.
fn drop_in(dir: &Path, slot: Slot, wasm: &[u8]) -> String {
    let staged = dir.join(format!(".{slot}.wasm.new"));
    std::fs::write(&staged, wasm).unwrap();
    std::fs::rename(&staged, dir.join(format!("{slot}.wasm"))).unwrap();
    host::runtime::digest(wasm)
}

async fn serving(service: &App, slot: Slot, sha256: &str) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if service.rules.slots().get(slot).is_some_and(|active| *active.digest == *sha256) {
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "{slot} never swapped");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn main() {
    let seconds: u64 = setting("BENCH_SECONDS", 10, 1);
    let connections: usize = setting("BENCH_CONNECTIONS", 16, 4);
    let drops: u64 = setting("BENCH_DROPS", 5, 1);
    let server = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let database = BenchDatabase::create(&client);
    let dir = tempfile::tempdir().unwrap();
    let components = dir.path().join("components");
    install_components(&components);
    for (slot, crate_dir) in
        [("validation", "order-validation"), ("pricing", "pricing"), ("fulfillment", "fulfillment-standard")]
    {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../components").join(crate_dir).join("fixtures");
        let target = components.join(format!("{slot}.fixtures"));
        std::fs::create_dir_all(&target).unwrap();
        for entry in std::fs::read_dir(fixtures).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
    }
    let idle = FulfillmentSettings { workers: 0, ..FulfillmentSettings::default() };
    let app = server.block_on(Application::build(database.serve_settings(&components, idle))).expect("starts");
    let address = app.local_addr();
    let service = app.app();
    server.spawn(app.run_until(std::future::pending()));
    // Let the folder watcher register before the first drop.
    std::thread::sleep(Duration::from_secs(1));

    // Drop to serving, per slot: debounce + read + compile + fixtures + swap.
    let mut tag = 0;
    let mut drop_rows = Vec::new();
    for slot in Slot::ALL {
        let original = std::fs::read(components.join(format!("{slot}.wasm"))).unwrap();
        let mut times = Vec::new();
        for _ in 0..drops {
            tag += 1;
            let candidate = rebuilt(&original, tag);
            let dropped = Instant::now();
            let sha256 = drop_in(&components, slot, &candidate);
            let live = server.block_on(serving(&service, slot, &sha256));
            times.push(live - dropped);
        }
        times.sort_unstable();
        drop_rows.push((slot, percentile(&times, 0.5), times[0], times[times.len() - 1]));
    }

    let products: Vec<i64> = server.block_on(async {
        let mut ids = Vec::new();
        for n in 0..100 {
            let product = NewProduct {
                sku: format!("SWAP-{n}"),
                name: format!("Swap product {n}"),
                price: 500 + n * 10,
                currency: "EUR".into(),
                stock: 1_000_000_000_000,
                active: true,
            };
            ids.push(service.store.create_product(&product).await.unwrap().id);
        }
        ids
    });
    let post = Arc::new(move |n: u64| {
        let pick = |offset: u64| products[((n * 7 + offset) % products.len() as u64) as usize];
        let body = json!({"user_id": n % 1_000_000, "items": [
            {"product_id": pick(0), "quantity": 1}, {"product_id": pick(31), "quantity": 2}, {"product_id": pick(67), "quantity": 1}]});
        post_order(&body)
    });
    let duration = Duration::from_secs(seconds);
    // Warm up (connections, caches, and orders in the tables so the planner's
    // statistics are those of a live service), then vacuum: both phases start
    // on tables in the same shape.
    client.block_on(http_load(address, connections, Duration::from_secs(3), post.clone()));
    database.vacuum(&client);
    println!("POST /api/v1/orders for {seconds} s at {connections} connections, steady ...");
    let steady = client.block_on(http_load(address, connections, duration, post.clone()));
    database.vacuum(&client);
    println!("... and again while pricing is swapped every second ...");
    let original = std::fs::read(components.join("pricing.wasm")).unwrap();
    let swapper = {
        let components = components.clone();
        let service = service.clone();
        server.spawn(async move {
            let mut swaps = 0;
            let started = Instant::now();
            while started.elapsed() + Duration::from_secs(1) < duration {
                tokio::time::sleep(Duration::from_millis(500)).await;
                tag += 1;
                let sha256 = drop_in(&components, Slot::Pricing, &rebuilt(&original, tag));
                serving(&service, Slot::Pricing, &sha256).await;
                swaps += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            swaps
        })
    };
    let swapping = client.block_on(http_load(address, connections, duration, post));
    let swaps = server.block_on(swapper).unwrap();

    println!();
    println!("| slot | drop to serving, median | fastest | slowest |");
    println!("| --- | --- | --- | --- |");
    for (slot, median, fastest, slowest) in &drop_rows {
        let ms = |time: &Duration| time.as_secs_f64() * 1e3;
        println!("| {slot} | {:.0} ms | {:.0} ms | {:.0} ms |", ms(median), ms(fastest), ms(slowest));
    }
    println!("(each includes the folder watcher's 250 ms debounce)");
    println!();
    print_throughput_during_swaps(&steady, &swapping, &format!("{swaps} pricing swaps"));
    drop(server);
    database.drop_now(&client);
}
