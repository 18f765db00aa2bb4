//! Correlation ids for gRPC calls, as for HTTP requests: taken from the
//! `x-correlation-id` metadata when it is sane, generated otherwise, echoed
//! in the response metadata, carried by every log line written while the
//! call is served, and by the orders, jobs and events it creates.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use tonic::codegen::http::{HeaderValue, Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::telemetry::{CORRELATION_HEADER, correlation_id};

/// The call's correlation id, in the request's extensions.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub Arc<str>);

/// Assigns correlation ids (see the module's description).
#[derive(Debug, Clone, Copy, Default)]
pub struct CorrelationLayer;

impl<S> Layer<S> for CorrelationLayer {
    type Service = Correlated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Correlated { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Correlated<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for Correlated<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id = correlation_id(request.headers().get(CORRELATION_HEADER).map(HeaderValue::as_bytes));
        request.extensions_mut().insert(CorrelationId(id.clone()));
        let method = request.uri().path().to_owned();
        let span = tracing::info_span!("request", correlation_id = %id);
        let started = Instant::now();
        let answered = self.inner.call(request).instrument(span.clone());
        Box::pin(async move {
            let mut response = answered.await?;
            let latency_us = started.elapsed().as_micros() as u64;
            span.in_scope(|| tracing::info!(target: "grpc", method, latency_us, "call answered"));
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(CORRELATION_HEADER, value);
            }
            Ok(response)
        })
    }
}
