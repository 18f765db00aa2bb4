//! Closed-loop load generators for the benchmarks: keep-alive HTTP/1.1
//! connections, or gRPC channels (one HTTP/2 connection each), each sending
//! requests back to back.
#![allow(dead_code)] // Each benchmark uses its own part of this file.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{bench_token, percentile};

/// The `authorization` header every request sends, unless it sends its own.
fn authorization() -> hyper::header::HeaderValue {
    static VALUE: std::sync::OnceLock<hyper::header::HeaderValue> = std::sync::OnceLock::new();
    VALUE.get_or_init(|| format!("Bearer {}", bench_token()).parse().expect("a header value")).clone()
}

/// What one load run saw.
pub struct Outcome {
    pub requests: u64,
    pub failures: u64,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    /// CPU time the server's own threads spent during the run, when measured.
    pub server_cpu: Option<Duration>,
}

impl Outcome {
    /// Gathers what `tasks` (each returning its latencies and its failure
    /// count) saw in a run that began at `started`.
    pub async fn gather(started: Instant, tasks: Vec<tokio::task::JoinHandle<(Vec<Duration>, u64)>>) -> Self {
        let mut outcome =
            Outcome { requests: 0, failures: 0, latencies: Vec::new(), elapsed: Duration::ZERO, server_cpu: None };
        for task in tasks {
            let (latencies, failures) = task.await.unwrap();
            outcome.requests += latencies.len() as u64;
            outcome.failures += failures;
            outcome.latencies.extend(latencies);
        }
        outcome.elapsed = started.elapsed();
        outcome.latencies.sort_unstable();
        outcome
    }

    /// One outcome of several runs: their requests, failures and time added up.
    pub fn merged(runs: Vec<Outcome>) -> Self {
        let mut all =
            Outcome { requests: 0, failures: 0, latencies: Vec::new(), elapsed: Duration::ZERO, server_cpu: None };
        for run in runs {
            all.requests += run.requests;
            all.failures += run.failures;
            all.latencies.extend(run.latencies);
            all.elapsed += run.elapsed;
        }
        all.latencies.sort_unstable();
        all
    }

    pub fn percentile(&self, fraction: f64) -> Duration {
        percentile(&self.latencies, fraction)
    }

    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU time per request, in microseconds, when measured.
    pub fn server_us_per_request(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.requests > 0).then(|| cpu.as_secs_f64() * 1e6 / self.requests as f64)
    }

    pub fn row(&self, name: &str) -> String {
        let server = self.server_us_per_request().map_or("–".to_owned(), |us| format!("{us:.1} µs"));
        format!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {server} | {} |",
            self.rate(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.failures
        )
    }
}

/// `POST /api/v1/orders` with `body`.
pub fn post_order(body: &serde_json::Value) -> Request<Full<Bytes>> {
    Request::post("/api/v1/orders")
        .header("host", "bench")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Prints `POST /api/v1/orders` steady against during swaps (`swaps` names
/// them), and the ratio of the two rates.
pub fn print_throughput_during_swaps(steady: &Outcome, swapping: &Outcome, swaps: &str) {
    println!("| scenario | requests/s | p50 | p99 | server CPU/request | non-2xx |");
    println!("| --- | --- | --- | --- | --- | --- |");
    println!("{}", steady.row("POST /api/v1/orders, steady"));
    println!("{}", swapping.row(&format!("POST /api/v1/orders, {swaps}")));
    println!();
    println!("throughput during swaps = {:.0} % of steady state", 100.0 * swapping.rate() / steady.rate());
}

/// `connections` keep-alive HTTP/1.1 connections, each sending the request
/// `make(n)` builds, back to back, for `duration`.
pub async fn http_load(
    address: SocketAddr,
    connections: usize,
    duration: Duration,
    make: Arc<dyn Fn(u64) -> Request<Full<Bytes>> + Send + Sync>,
) -> Outcome {
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let make = make.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(address).await.expect("connect");
            stream.set_nodelay(true).unwrap();
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(connection);
            let (mut latencies, mut failures) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let mut request = make(counter.fetch_add(1, Ordering::Relaxed));
                request.headers_mut().entry(hyper::header::AUTHORIZATION).or_insert_with(authorization);
                let sent = Instant::now();
                sender.ready().await.expect("connection usable");
                let response = sender.send_request(request).await.expect("response");
                let ok = response.status().is_success();
                response.into_body().collect().await.expect("body");
                latencies.push(sent.elapsed());
                failures += u64::from(!ok);
            }
            (latencies, failures)
        }));
    }
    Outcome::gather(started, tasks).await
}

/// `connections` HTTP/2 connections, each calling the gRPC method `path`
/// with the message `make(n)` encodes, back to back, for `duration`. A bare
/// HTTP/2 client (the message framed by hand) rather than a generated one,
/// so the load generator costs about what the HTTP/1.1 one does and the
/// comparison measures the server.
pub async fn grpc_load(
    address: SocketAddr,
    connections: usize,
    duration: Duration,
    path: &'static str,
    make: Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>,
) -> Outcome {
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let uri: hyper::Uri = format!("http://{address}{path}").parse().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (make, counter, uri) = (make.clone(), counter.clone(), uri.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(address).await.expect("connect");
            stream.set_nodelay(true).unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
            tokio::spawn(connection);
            let (mut latencies, mut failures) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let request = Request::post(uri.clone())
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .header(hyper::header::AUTHORIZATION, authorization())
                    .body(Full::new(framed(&make(counter.fetch_add(1, Ordering::Relaxed)))))
                    .unwrap();
                let sent = Instant::now();
                sender.ready().await.expect("connection usable");
                let response = sender.send_request(request).await.expect("response");
                // A refusal's grpc-status is in the headers (trailers-only) or the trailers.
                let in_headers = response.headers().get("grpc-status").cloned();
                let body = response.into_body().collect().await.expect("body");
                let status =
                    in_headers.or_else(|| body.trailers().and_then(|trailers| trailers.get("grpc-status").cloned()));
                latencies.push(sent.elapsed());
                failures += u64::from(status.as_ref().map(|status| status.as_bytes()) != Some(b"0"));
            }
            (latencies, failures)
        }));
    }
    Outcome::gather(started, tasks).await
}

/// A gRPC message on the wire: uncompressed, its length, then its bytes.
fn framed(message: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    Bytes::from(frame)
}
