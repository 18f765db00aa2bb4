//! The gRPC front end: `orderly.v1.OrderService` (proto in `proto/`), the
//! standard `grpc.health.v1` health service (SERVING while the process is
//! ready, as `GET /ready`) and server reflection, so `grpcurl` works without
//! the proto. It serves beside the REST API in the same process, on the
//! same application layer, and drains with it on SIGTERM.

pub mod auth;
mod capped;
pub mod convert;
pub mod correlation;
pub mod events;
pub mod orders;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::auth::Credentials;
use crate::health::Health;
use crate::orders::Orders;
use orders::OrderApi;
use proto::order_service_server::OrderServiceServer;

/// The generated messages, client and server of `orderly.v1`.
pub mod proto {
    tonic::include_proto!("orderly.v1");
}

/// The compiled proto, for reflection.
pub const DESCRIPTOR: &[u8] = tonic::include_file_descriptor_set!("orderly_descriptor");

/// How often health is re-checked for `grpc.health.v1`.
const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// What the gRPC front end holds.
#[derive(Clone)]
pub struct GrpcState {
    pub orders: Arc<Orders>,
    pub health: Arc<Health>,
    /// Who sends each call.
    pub credentials: Credentials,
    /// Cancelled when the process starts shutting down.
    pub stopping: CancellationToken,
}

/// Limits on every call.
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    /// Largest message accepted (answers may be larger: see [`max_answer_bytes`]).
    pub max_message_bytes: usize,
    /// How long a call may run (a client's shorter deadline wins).
    pub request_timeout: Duration,
    /// Connections, streams per connection and keep-alive pings.
    pub edge: crate::api::serve::EdgeLimits,
    /// How long a connection lives before it is asked to reconnect.
    pub max_connection_age: Duration,
}

/// The largest answer sent when requests are at most `max_request` bytes:
/// whatever an accepted request can become. A byte of a request becomes at
/// most about 40 bytes of its answer (a 29-byte line comes back with its
/// product's SKU and name, up to 1.1 KB in four-byte characters), so 64
/// times the request's cap leaves room for the pricing notes and an order's
/// history: an order that was stored is always answered, never refused
/// after the fact. (4 MiB with the default 64 KiB cap; only an order moved
/// by hand through thousands of holds and releases grows past it, and
/// reading it is then refused, changing nothing.)
pub fn max_answer_bytes(max_request: usize) -> usize {
    max_request.saturating_mul(64)
}

/// Serves on `listener` until `stopping` is cancelled, then lets calls in
/// flight finish (watch streams end at once).
pub async fn serve(listener: TcpListener, state: GrpcState, limits: GrpcLimits) -> Result<(), tonic::transport::Error> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let reporting = tokio::spawn(report_health(reporter, state.health.clone(), state.stopping.clone()));
    // Both reflection versions: grpcurl asks for v1, older clients for v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(DESCRIPTOR)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().expect("the compiled descriptor sets are valid");
    let reflection_v1alpha = reflection().build_v1alpha().expect("the compiled descriptor sets are valid");
    let orders =
        OrderServiceServer::new(OrderApi::new(state.orders.clone(), state.stopping.clone(), limits.request_timeout))
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(max_answer_bytes(limits.max_message_bytes));
    let stopping = state.stopping.clone();
    let edge = limits.edge;
    let served = Server::builder()
        .timeout(limits.request_timeout)
        .max_concurrent_streams(edge.http2_max_streams)
        .http2_keepalive_interval(Some(edge.http2_keepalive))
        .http2_keepalive_timeout(Some(edge.http2_keepalive))
        // A client resetting streams as fast as it opens them (CVE-2023-44487)
        // is cut off after this many, as hyper does by default; said here.
        .http2_max_pending_accept_reset_streams(Some(20))
        .max_connection_age(limits.max_connection_age)
        .max_connection_age_grace(MAX_CONNECTION_AGE_GRACE)
        .layer(correlation::CorrelationLayer)
        .layer(auth::AuthLayer { credentials: state.credentials.clone() })
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(orders)
        .serve_with_incoming_shutdown(within_cap(listener, edge.max_connections), stopping.cancelled_owned())
        .await;
    reporting.abort();
    served
}

/// How long a connection past its age may finish its calls.
const MAX_CONNECTION_AGE_GRACE: Duration = Duration::from_secs(60);

/// The accepted connections, at most `cap` open at once (past it, new ones
/// wait in the listen backlog until one closes), with Nagle's algorithm
/// off: a small answer would otherwise wait for the client's delayed
/// acknowledgement (~40 ms).
fn within_cap(listener: TcpListener, cap: usize) -> impl Stream<Item = std::io::Result<capped::Capped>> {
    let permits = Arc::new(tokio::sync::Semaphore::new(cap.max(1)));
    futures::stream::unfold((listener, permits), |(listener, permits)| async move {
        let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        let accepted = listener.accept().await.and_then(|(stream, _)| {
            stream.set_nodelay(true)?;
            Ok(capped::Capped { stream, _permit: permit })
        });
        Some((accepted, (listener, permits)))
    })
}

/// Keeps `grpc.health.v1` in line with the process's readiness: the whole
/// server ("") and `orderly.v1.OrderService` are SERVING while every check
/// passes, NOT_SERVING otherwise and from the moment shutdown begins.
async fn report_health(reporter: HealthReporter, health: Arc<Health>, stopping: CancellationToken) {
    let mut every = tokio::time::interval(HEALTH_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stopping.cancelled() => break,
        }
        let serving =
            if health.readiness().await.is_ready() { ServingStatus::Serving } else { ServingStatus::NotServing };
        set_status(&reporter, serving).await;
    }
    set_status(&reporter, ServingStatus::NotServing).await;
}

async fn set_status(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter.set_service_status(<OrderServiceServer<OrderApi> as NamedService>::NAME, status).await;
}
