//! The gRPC API against the REST API, in the same run, on the same service
//! (PostgreSQL + Redis, default components, no fulfillment workers): placing
//! 3-line orders (`CreateOrder` against `POST /api/v1/orders`) and reading
//! them (`GetOrder` against `GET /api/v1/orders/{id}`), with the same orders,
//! the same number of connections and the same duration. The phases
//! alternate REST, gRPC, REST, gRPC, and the tables are vacuumed between
//! them, so neither front end inherits the other's dead row versions.
//!
//! `BENCH_SECONDS` and `BENCH_CONNECTIONS` change the duration and the load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use prost::Message;
use serde_json::json;

use host::domain::OrderDetail;
use host::grpc::convert;
use host::grpc::proto::{CreateOrderRequest, GetOrderRequest, LineRequest};

mod common;
use common::load::{grpc_load, http_load};
use common::{ApiUnderLoad, load_catalogue, picks, setting};

const CREATE: &str = "/orderly.v1.OrderService/CreateOrder";
const GET: &str = "/orderly.v1.OrderService/GetOrder";

/// The `n`th order's three lines: (product, quantity).
fn lines(products: &[i64], n: u64) -> [(i64, u32); 3] {
    let [a, b, c] = picks(n);
    [(products[a], 1), (products[b], 2), (products[c], 1)]
}

fn main() {
    let seconds: u64 = setting("BENCH_SECONDS", 15, 1);
    let connections: usize = setting("BENCH_CONNECTIONS", 32, 4);
    let duration = Duration::from_secs(seconds);
    let running = ApiUnderLoad::start();
    let (server, client, database) = (&running.server, &running.client, &running.database);
    let (address, grpc_address, service) = (running.address, running.grpc_address, running.app.clone());
    let products: Arc<Vec<i64>> =
        Arc::new(server.block_on(load_catalogue(&service.store, "RPC")).iter().map(|product| product.id).collect());

    let post = {
        let products = products.clone();
        Arc::new(move |n: u64| {
            // Users spread wide: the default validation limits orders per user per minute.
            let items: Vec<_> = lines(&products, n)
                .iter()
                .map(|(id, quantity)| json!({"product_id": id, "quantity": quantity}))
                .collect();
            let body = json!({"user_id": n % 1_000_000, "items": items});
            Request::post("/api/v1/orders")
                .header("host", "bench")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap()
        })
    };
    let create: Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync> = {
        let products = products.clone();
        Arc::new(move |n: u64| {
            let items = lines(&products, n)
                .iter()
                .map(|&(product_id, quantity)| LineRequest { product_id, quantity })
                .collect();
            // Other users than the REST phase's, so both place the same orders
            // without meeting the per-user rate rule.
            CreateOrderRequest { user_id: Some(1_000_000 + n % 1_000_000), items, ..Default::default() }.encode_to_vec()
        })
    };
    // Warm up both front ends, then start from vacuumed tables.
    client.block_on(http_load(address, connections, Duration::from_secs(2), post.clone()));
    client.block_on(grpc_load(grpc_address, connections, Duration::from_secs(2), CREATE, create.clone()));
    database.vacuum(client);

    println!("POST /api/v1/orders, then CreateOrder, {seconds} s each at {connections} connections ...");
    let posted = running.measure(|| client.block_on(http_load(address, connections, duration, post)));
    database.vacuum(client);
    let created = running.measure(|| client.block_on(grpc_load(grpc_address, connections, duration, CREATE, create)));
    database.vacuum(client);

    let highest =
        server.block_on(service.store.list_orders(&host::store::OrderFilter { limit: 1, ..Default::default() }));
    let highest = highest.unwrap().first().map_or(1, |order| order.id);
    let get = Arc::new(move |n: u64| {
        let id = 1 + (n as i64 * 7919) % highest;
        Request::get(format!("/api/v1/orders/{id}")).header("host", "bench").body(Full::new(Bytes::new())).unwrap()
    });
    let read: Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync> =
        Arc::new(move |n: u64| GetOrderRequest { id: 1 + (n as i64 * 7919) % highest }.encode_to_vec());
    println!("GET /api/v1/orders/{{id}}, then GetOrder, {seconds} s each at {connections} connections ...");
    let got = running.measure(|| client.block_on(http_load(address, connections, duration, get)));
    let read = running.measure(|| client.block_on(grpc_load(grpc_address, connections, duration, GET, read)));

    println!();
    println!("| scenario | requests/s | p50 | p99 | server CPU per request | failures |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!("{}", posted.row("REST POST /api/v1/orders (3 lines)"));
    println!("{}", created.row("gRPC CreateOrder (3 lines)"));
    println!("{}", got.row("REST GET /api/v1/orders/{id}"));
    println!("{}", read.row("gRPC GetOrder"));
    println!();
    println!(
        "gRPC / REST: create {:.2}x, get {:.2}x (target: gRPC not slower, >= 1.0x)",
        created.rate() / posted.rate(),
        read.rate() / got.rate()
    );
    print_read_breakdown(&running, highest);
    running.finish();
}

/// What one read costs in the service beyond the transport, per step, on
/// one order: REST answers the cached JSON; GetOrder also decodes it,
/// converts it to the message and encodes that.
fn print_read_breakdown(running: &ApiUnderLoad, id: i64) {
    const ROUNDS: u32 = 20_000;
    let orders = running.app.orders.clone();
    let json = running.server.block_on(orders.order_json(id, host::auth::OrderAccess::AnyUser)).unwrap();
    let per_call = |step: &mut dyn FnMut()| {
        let started = Instant::now();
        for _ in 0..ROUNDS {
            step();
        }
        started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS)
    };
    let cached = per_call(&mut || {
        std::hint::black_box(running.server.block_on(orders.order_json(id, host::auth::OrderAccess::AnyUser)).unwrap());
    });
    let decode = per_call(&mut || {
        std::hint::black_box(serde_json::from_str::<OrderDetail>(&json).unwrap());
    });
    let detail: OrderDetail = serde_json::from_str(&json).unwrap();
    let convert = per_call(&mut || {
        std::hint::black_box(convert::order(detail.clone()));
    });
    let clone = per_call(&mut || {
        std::hint::black_box(detail.clone());
    });
    let message = convert::order(detail.clone());
    let encode = per_call(&mut || {
        std::hint::black_box(message.encode_to_vec());
    });
    println!();
    println!("One read of order {id} ({} bytes of JSON, {} of protobuf), per call:", json.len(), message.encoded_len());
    println!("| step | µs |");
    println!("| --- | --- |");
    println!("| the cached JSON (Redis round trip; all REST does) | {cached:.2} |");
    println!("| decode the JSON into an order | {decode:.2} |");
    println!("| convert it into the message | {:.2} |", (convert - clone).max(0.0));
    println!("| encode the message | {encode:.2} |");
}
