//! Logging: one JSON object per line on stdout, filtered by `RUST_LOG`
//! (default `info`).
//!
//! Each line carries `timestamp`, `level`, `service`, `target`, `message`,
//! the event's fields, and the fields of every span it happened in, flattened
//! to the top level. The request middleware opens a span with the
//! `correlation_id`, so every line written while serving a request (component
//! log lines included) carries it without anyone passing it along.

use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The `service` field of every line.
pub const SERVICE: &str = "orderly";

/// The header (HTTP) or metadata key (gRPC) carrying the correlation id, both ways.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// Longest correlation id accepted from a client.
pub const MAX_CORRELATION_ID: usize = 128;

/// The client's correlation id if it is 1 to 128 visible ASCII characters; otherwise none.
pub fn sanitize(raw: &[u8]) -> Option<&str> {
    let acceptable =
        !raw.is_empty() && raw.len() <= MAX_CORRELATION_ID && raw.iter().all(|byte| byte.is_ascii_graphic());
    acceptable.then(|| std::str::from_utf8(raw).ok()).flatten()
}

/// The correlation id of a request: the client's when sane, a new UUID otherwise.
pub fn correlation_id(given: Option<&[u8]>) -> std::sync::Arc<str> {
    match given.and_then(sanitize) {
        Some(given) => given.into(),
        None => uuid::Uuid::new_v4().to_string().into(),
    }
}

/// Installs the JSON subscriber for the process, writing to stdout.
pub fn init() {
    init_with(std::io::stdout, "info");
}

/// Installs the JSON subscriber, writing to `writer` (tests capture lines
/// this way), filtered by `RUST_LOG` or else `default_filter` (such as
/// `info,component=debug`). Does nothing if a subscriber is already installed.
pub fn init_with<W>(writer: W, default_filter: &str)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::registry().with(filter).with(JsonLines { writer }).try_init();
}

/// The layer that writes JSON lines.
pub struct JsonLines<W> {
    writer: W,
}

/// A span's fields, kept in its extensions until an event needs them.
struct SpanFields(Map<String, Value>);

struct Collect<'a>(&'a mut Map<String, Value>);

impl Collect<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for Collect<'_> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        // Structured values rendered with `%` (component log fields) stay structured.
        let value = match field.name() != "message" && text.starts_with('{') {
            true => serde_json::from_str(&text).unwrap_or(Value::String(text)),
            false => Value::String(text),
        };
        self.put(field, value);
    }
}

impl<S, W> tracing_subscriber::Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut Collect(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(SpanFields(fields)) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut Collect(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true).into());
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("service".into(), SERVICE.into());
        line.insert("target".into(), metadata.target().into());
        // Placed here so it reads early in the line; its value is filled in below.
        line.insert("message".into(), Value::Null);
        // Outer spans first, so inner spans and then the event win on a clash.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    line.extend(fields.iter().map(|(key, value)| (key.clone(), value.clone())));
                }
            }
        }
        let mut fields = Map::new();
        event.record(&mut Collect(&mut fields));
        let message = fields.remove("message").unwrap_or(Value::String(String::new()));
        line.extend(fields);
        line.insert("message".into(), message);
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        // A log line that cannot be written is dropped: logging must never fail a request.
        let _ = self.writer.make_writer().write_all(text.as_bytes());
    }
}
