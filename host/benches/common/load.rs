//! Closed-loop load generators for the benchmarks: keep-alive HTTP/1.1
//! connections, or gRPC channels (one HTTP/2 connection each), each sending
//! requests back to back.
#![allow(dead_code)] // Each benchmark uses its own part of this file.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use host::grpc::proto::order_service_client::OrderServiceClient;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use super::percentile;

/// What one load run saw.
pub struct Outcome {
    pub requests: u64,
    pub failures: u64,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl Outcome {
    /// Gathers what `tasks` (each returning its latencies and its failure
    /// count) saw in a run that began at `started`.
    pub async fn gather(started: Instant, tasks: Vec<tokio::task::JoinHandle<(Vec<Duration>, u64)>>) -> Self {
        let mut outcome = Outcome { requests: 0, failures: 0, latencies: Vec::new(), elapsed: Duration::ZERO };
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

    pub fn percentile(&self, fraction: f64) -> Duration {
        percentile(&self.latencies, fraction)
    }

    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn row(&self, name: &str) -> String {
        format!(
            "| {name} | {:.0} | {:.2} ms | {:.2} ms | {} |",
            self.rate(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.failures
        )
    }
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
                let request = make(counter.fetch_add(1, Ordering::Relaxed));
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

/// `connections` gRPC channels, each one HTTP/2 connection sending the call
/// `call(client, n)` makes, back to back, for `duration`.
pub async fn grpc_load<F, Fut>(address: SocketAddr, connections: usize, duration: Duration, call: F) -> Outcome
where
    F: Fn(OrderServiceClient<Channel>, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = bool> + Send,
{
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (call, counter) = (call.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let endpoint = Endpoint::from_shared(format!("http://{address}")).unwrap().tcp_nodelay(true);
            let client = OrderServiceClient::new(endpoint.connect().await.expect("connect"));
            let (mut latencies, mut failures) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let sent = Instant::now();
                let ok = call(client.clone(), counter.fetch_add(1, Ordering::Relaxed)).await;
                latencies.push(sent.elapsed());
                failures += u64::from(!ok);
            }
            (latencies, failures)
        }));
    }
    Outcome::gather(started, tasks).await
}
