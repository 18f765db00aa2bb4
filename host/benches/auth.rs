//! What bearer tokens cost. First, one verification per algorithm (HS256,
//! RS256, ES256), in full and remembered. Then the API with tokens against
//! the same API without, in the same run, on the same service: one
//! application (PostgreSQL + Redis, default components, no workers) served
//! on two listeners, one verifying a token reused across requests (as
//! behind a gateway) and one with tokens off. `POST /api/v1/orders` and
//! `GET /api/v1/orders/{id}`, alternating with and without, `BENCH_ROUNDS`
//! rounds of `BENCH_SECONDS` each; the medians are compared.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use host::auth::keys::KeySet;
use host::auth::{Authenticator, Credentials, Expectations, Keys, Scopes, TokenIssuer, TokenRequest};

mod common;
use common::load::{Outcome, http_load};
use common::{ApiUnderLoad, load_catalogue, picks, setting};

const SECRET: &[u8] = b"the benchmark's secret, thirty-two bytes or more";

fn token(issuer: &TokenIssuer) -> String {
    let request = TokenRequest {
        subject: "42".into(),
        scopes: Scopes::all(),
        lifetime: Duration::from_secs(3600),
        client_id: None,
    };
    issuer.issue(&request).unwrap()
}

fn expectations() -> Expectations {
    Expectations { issuer: "orderly".into(), audience: "orderly".into(), leeway: Duration::from_secs(30) }
}

/// An authenticator for one algorithm and a token it accepts.
fn signed_with(algorithm: Algorithm) -> (Authenticator, String) {
    let jwks = || Keys::Fixed(Arc::new(KeySet::from_jwks(include_bytes!("../tests/keys/jwks.json")).unwrap()));
    let with_kid = |kid: &str| {
        let mut header = Header::new(algorithm);
        header.kid = Some(kid.into());
        header
    };
    let (keys, issuer) = match algorithm {
        Algorithm::HS256 => (
            Keys::Fixed(Arc::new(KeySet::shared_secret(SECRET).unwrap())),
            TokenIssuer::hs256(SECRET, "orderly", "orderly").unwrap(),
        ),
        Algorithm::RS256 => {
            let key = EncodingKey::from_rsa_pem(include_bytes!("../tests/keys/rsa-1.pem")).unwrap();
            (jwks(), TokenIssuer::with_key(key, with_kid("rsa-1"), "orderly", "orderly").unwrap())
        }
        _ => {
            let key = EncodingKey::from_ec_pem(include_bytes!("../tests/keys/ec-1.pem")).unwrap();
            (jwks(), TokenIssuer::with_key(key, with_kid("ec-1"), "orderly", "orderly").unwrap())
        }
    };
    (Authenticator::new(keys, expectations()), token(&issuer))
}

/// Median time of one `authenticate` over `rounds` batches of `batch`.
fn per_verification(authenticator: &Authenticator, token: &str, batch: u32, rounds: usize) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut batches: Vec<Duration> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            runtime.block_on(async {
                for _ in 0..batch {
                    std::hint::black_box(authenticator.authenticate(token).await.unwrap());
                }
            });
            started.elapsed() / batch
        })
        .collect();
    batches.sort_unstable();
    batches[batches.len() / 2]
}

fn print_verifications(batch: u32) {
    println!("| one verification | in full (first time) | remembered (the same token again) |");
    println!("| --- | --- | --- |");
    for algorithm in [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256] {
        let (authenticator, token) = signed_with(algorithm);
        let full = per_verification(&authenticator.clone().without_cache(), &token, batch, 7);
        let remembered = per_verification(&authenticator, &token, batch * 10, 7);
        println!("| {algorithm:?} | {:.1} µs | {:.2} µs |", micros(full), micros(remembered));
    }
    println!();
}

fn micros(time: Duration) -> f64 {
    time.as_secs_f64() * 1e6
}

/// The median run of `runs` by rate.
fn median(mut runs: Vec<Outcome>) -> Outcome {
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    runs.swap_remove(runs.len() / 2)
}

fn main() {
    let seconds: u64 = setting("BENCH_SECONDS", 5, 1);
    let rounds: usize = setting("BENCH_ROUNDS", 3, 1);
    let connections: usize = setting("BENCH_CONNECTIONS", 32, 4);
    print_verifications(setting("BENCH_VERIFICATIONS", 200, 5));

    let running = ApiUnderLoad::start();
    let with_tokens = running.address;
    let without_tokens = running.serve_public(Credentials::new(None, None));
    let (server, client) = (&running.server, &running.client);
    let service = running.app.clone();
    let products: Arc<Vec<i64>> =
        Arc::new(server.block_on(load_catalogue(&service.store, "AUTH")).iter().map(|product| product.id).collect());
    let post = Arc::new(move |n: u64| {
        let [a, b, c] = picks(n);
        let items = json!([
            {"product_id": products[a], "quantity": 1},
            {"product_id": products[b], "quantity": 2},
            {"product_id": products[c], "quantity": 1},
        ]);
        // Users spread wide: the default validation limits orders per user per minute.
        let body = json!({"user_id": n % 1_000_000, "items": items});
        Request::post("/api/v1/orders")
            .header("host", "bench")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    });
    let duration = Duration::from_secs(seconds);
    // Warm both up: caches, connections, the token remembered.
    for address in [with_tokens, without_tokens] {
        client.block_on(http_load(address, connections, Duration::from_secs(1), post.clone()));
    }
    println!(
        "POST /api/v1/orders and GET /api/v1/orders/{{id}}, {rounds} rounds of {seconds} s each way at {connections} connections ..."
    );
    let (mut posted, mut posted_open) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Which goes first alternates, so a drift over the run weighs on both.
        let order = if round % 2 == 0 { [true, false] } else { [false, true] };
        for tokens in order {
            let address = if tokens { with_tokens } else { without_tokens };
            let outcome = running.measure(|| client.block_on(http_load(address, connections, duration, post.clone())));
            if tokens { posted.push(outcome) } else { posted_open.push(outcome) }
        }
        running.database.vacuum(client);
    }
    let highest =
        server.block_on(service.store.list_orders(&host::store::OrderFilter { limit: 1, ..Default::default() }));
    let highest = highest.unwrap().first().map_or(1, |order| order.id);
    let get = Arc::new(move |n: u64| {
        let id = 1 + (n as i64 * 7919) % highest;
        Request::get(format!("/api/v1/orders/{id}")).header("host", "bench").body(Full::new(Bytes::new())).unwrap()
    });
    let (mut got, mut got_open) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 { [true, false] } else { [false, true] };
        for tokens in order {
            let address = if tokens { with_tokens } else { without_tokens };
            let outcome = running.measure(|| client.block_on(http_load(address, connections, duration, get.clone())));
            if tokens { got.push(outcome) } else { got_open.push(outcome) }
        }
    }
    let (posted, posted_open, got, got_open) = (median(posted), median(posted_open), median(got), median(got_open));
    println!();
    println!("| scenario (median of {rounds}) | requests/s | p50 | p99 | server CPU per request | failures |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!("{}", posted_open.row("POST /api/v1/orders, tokens off"));
    println!("{}", posted.row("POST /api/v1/orders, a reused HS256 token"));
    println!("{}", got_open.row("GET /api/v1/orders/{id}, tokens off"));
    println!("{}", got.row("GET /api/v1/orders/{id}, a reused HS256 token"));
    println!();
    let cost = |with: &Outcome, without: &Outcome| 100.0 * (1.0 - with.rate() / without.rate());
    println!(
        "cost of tokens: POST {:.1} %, GET {:.1} % of throughput (target: GET under 5 %)",
        cost(&posted, &posted_open),
        cost(&got, &got_open)
    );
    running.finish();
}
