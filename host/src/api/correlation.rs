//! The request middleware: a correlation id for every request (taken from
//! `X-Correlation-ID` when it is sane, generated otherwise), echoed on the
//! response, carried by every log line written while serving it, and one log
//! line per request once it is answered.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::problem::{CORRELATION_ID, ErrorCause};
use crate::telemetry::{CORRELATION_HEADER, correlation_id};

/// The header carrying the correlation id, both ways.
pub static HEADER: HeaderName = HeaderName::from_static(CORRELATION_HEADER);

/// Assigns the correlation id, logs the request, echoes the id.
pub async fn middleware(request: Request, next: Next) -> Response {
    let id: Arc<str> = correlation_id(request.headers().get(&HEADER).map(HeaderValue::as_bytes));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!("request", correlation_id = %id);
    let started = Instant::now();
    let mut response = CORRELATION_ID.scope(id.clone(), next.run(request).instrument(span.clone())).await;
    let status = response.status().as_u16();
    let latency_us = started.elapsed().as_micros() as u64;
    let cause = response.extensions_mut().remove::<ErrorCause>();
    span.in_scope(|| match cause {
        Some(ErrorCause(cause)) => {
            tracing::error!(target: "http", %method, path, status, latency_us, error = cause, "request failed")
        }
        None if status >= 500 => tracing::error!(target: "http", %method, path, status, latency_us, "request failed"),
        None => tracing::info!(target: "http", %method, path, status, latency_us, "request served"),
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER.clone(), value);
    }
    response
}

#[cfg(test)]
mod tests {
    use crate::telemetry::sanitize;

    #[test]
    fn sane_ids_pass_and_others_are_replaced() {
        assert_eq!(sanitize(b"req-42_abc"), Some("req-42_abc"));
        assert_eq!(sanitize(b""), None);
        assert_eq!(sanitize(b"has space"), None);
        assert_eq!(sanitize("caf\u{e9}".as_bytes()), None);
        assert_eq!(sanitize(b"line\nbreak"), None);
        assert_eq!(sanitize(&[b'a'; 129]), None);
        assert!(sanitize(&[b'a'; 128]).is_some());
    }
}
