//! Serving the REST routers with bounds at the edge, which axum's own
//! `serve` does not set: a cap on open connections (past it, new ones wait
//! in the listen backlog until one closes), a time limit on reading a
//! request's headers that also closes a keep-alive connection left idle (a
//! slowloris holds nothing for long), and for HTTP/2 a cap on concurrent
//! streams per connection and keep-alive pings that find dead peers.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The bounds on every connection of one listener.
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how
    /// long a keep-alive connection may wait idle for its next request.
    pub header_read_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub http2_max_streams: u32,
    /// How often an HTTP/2 connection is pinged (and a ping unanswered for
    /// as long closes it).
    pub http2_keepalive: Duration,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            http2_max_streams: 100,
            http2_keepalive: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown`, then
/// lets the connections finish what they are answering.
pub async fn serve(listener: TcpListener, router: Router, limits: EdgeLimits, shutdown: impl Future<Output = ()>) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = GracefulShutdown::new();
    let builder = connection_builder(limits);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = accept_within_cap(&listener, &permits) => accepted,
            () = &mut shutdown => break,
        };
        let Some((stream, permit)) = accepted else { continue };
        let service = TowerToHyperService::new(router.clone());
        let connection =
            connections.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned());
        tokio::spawn(async move {
            // A connection reset by its client is the client's business.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    connections.shutdown().await;
}

/// The next connection, once there is room for one; `None` when accepting
/// failed (out of file descriptors, a connection reset while queued).
async fn accept_within_cap(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> Option<(tokio::net::TcpStream, tokio::sync::OwnedSemaphorePermit)> {
    let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
    match listener.accept().await {
        Ok((stream, _)) => {
            // Small answers leave at once, not after the client's delayed acknowledgement.
            let _ = stream.set_nodelay(true);
            Some((stream, permit))
        }
        Err(error) => {
            tracing::warn!(%error, "cannot accept a connection");
            // Out of descriptors, say: give connections in flight a moment to close.
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

fn connection_builder(limits: EdgeLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_streams)
        .keep_alive_interval(limits.http2_keepalive)
        .keep_alive_timeout(limits.http2_keepalive)
        .enable_connect_protocol();
    builder
}
