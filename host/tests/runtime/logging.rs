//! Component log lines reach `tracing` as JSON, tagged with slot, digest and
//! correlation id.

use std::io::Write;
use std::sync::{Arc, Mutex};

use host::runtime::capabilities::TracingLogs;
use host::runtime::fakes::Fakes;
use host::runtime::{CallContext, Capabilities, Slot};

use crate::helpers::{load, order, runtime, shipped_config};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn component_logs_are_json_lines_tagged_with_the_call() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let capabilities = Capabilities { logs: Arc::new(TracingLogs), ..Fakes::default().capabilities() };
    let runtime = runtime(capabilities);
    let policy = load(
        &runtime,
        "fulfillment-standard",
        Slot::Fulfillment,
        shipped_config("fulfillment-standard", Slot::Fulfillment),
    )
    .await;
    let order = order(3);
    let quote = component_testkit::quote_with_total(100, "EUR");
    runtime.decide(&policy, &CallContext::new("corr-123"), &order, &quote).await.unwrap();

    let output = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let line: serde_json::Value = output
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|line| line["target"] == "component")
        .unwrap_or_else(|| panic!("no component line in {output}"));
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["fields"]["message"], "ship from main");
    assert_eq!(line["fields"]["slot"], "fulfillment");
    assert_eq!(line["fields"]["correlation_id"], "corr-123");
    assert_eq!(line["fields"]["digest"].as_str().unwrap(), &*policy.digest);
    assert_eq!(line["fields"]["component"], "fulfillment-standard");
}
