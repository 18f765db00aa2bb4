//! `orderly:platform/logging`: component log lines into the host's log stream,
//! tagged with slot, component digest and correlation id.

use crate::domain::text::truncate;
use crate::runtime::bindings::logging::{Field, Host, Level};
use crate::runtime::call::{CallInfo, CallState};

/// Most log lines one call may write; the rest are dropped.
const MAX_LINES_PER_CALL: u32 = 64;
/// Longest message kept; longer ones are truncated.
const MAX_MESSAGE_BYTES: usize = 2048;
/// Most fields kept per line.
const MAX_FIELDS: usize = 16;

/// Where component log lines go.
pub trait LogSink: Send + Sync {
    /// Writes one line on behalf of the call described by `call`.
    fn log(&self, call: &CallInfo, level: Level, message: &str, fields: &[Field]);
}

/// Sends component log lines to `tracing` (JSON on stdout in production).
pub struct TracingLogs;

impl LogSink for TracingLogs {
    fn log(&self, call: &CallInfo, level: Level, message: &str, fields: &[Field]) {
        // Render fields only for lines that will be written: a debug line from
        // a component must cost next to nothing when debug logging is off.
        let render = || -> serde_json::Value {
            let fields = fields.iter().map(|field| (field.key.clone(), field.value.clone().into()));
            serde_json::Value::Object(fields.collect())
        };
        // `tracing` needs the level at compile time, hence one arm per level.
        macro_rules! emit {
            ($level:expr) => {
                if tracing::enabled!(target: "component", $level) {
                    tracing::event!(
                        target: "component",
                        $level,
                        slot = call.slot.name(),
                        component = %call.component,
                        digest = %call.digest,
                        correlation_id = %call.correlation_id,
                        fields = %render(),
                        "{message}"
                    )
                }
            };
        }
        match level {
            Level::Trace => emit!(tracing::Level::TRACE),
            Level::Debug => emit!(tracing::Level::DEBUG),
            Level::Info => emit!(tracing::Level::INFO),
            Level::Warn => emit!(tracing::Level::WARN),
            Level::Error => emit!(tracing::Level::ERROR),
        }
    }
}

impl Host for CallState {
    fn log(&mut self, level: Level, message: String, mut fields: Vec<Field>) -> wasmtime::Result<()> {
        self.log_lines += 1;
        if self.log_lines > MAX_LINES_PER_CALL {
            return Ok(());
        }
        fields.truncate(MAX_FIELDS);
        for field in &mut fields {
            field.key = truncate(&field.key, 64).to_string();
            field.value = truncate(&field.value, 256).to_string();
        }
        let message = truncate(&message, MAX_MESSAGE_BYTES);
        self.capabilities.logs.log(&self.info, level, message, &fields);
        Ok(())
    }
}
