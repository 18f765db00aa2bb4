//! The cost of one call per slot with the default components on a 3-line
//! order: a fresh store from the pool, instantiation from the pre-instantiated
//! component, the call, and the host's output checks. Next to it, the same
//! pricing logic called natively, measured in the same run.
//!
//! `just bench` runs it; the summary at the end prints medians and ratios.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use component_testkit::{OrderBuilder, component_wasm};
use criterion::{Criterion, criterion_group};
use host::runtime::capabilities::TracingLogs;
use host::runtime::fakes::Fakes;
use host::runtime::{CallContext, Capabilities, EngineSettings, LoadedComponent, Runtime, Slot, SlotConfig};

use common::median_ns;

fn manifest(dir: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../components").join(dir).canonicalize().unwrap()
}

fn load(rt: &tokio::runtime::Runtime, runtime: &Runtime, dir: &str, slot: Slot) -> LoadedComponent {
    let dir = manifest(dir);
    let mut config = SlotConfig::read_or_default(&dir.join(format!("{slot}.toml"))).unwrap();
    // Measure the rules, not a rate limiter that would start refusing after
    // the first minute's worth of benchmark iterations.
    config.config.remove("orders_per_minute");
    let wasm = std::fs::read(component_wasm(&dir)).unwrap();
    rt.block_on(runtime.load(slot, wasm, config)).unwrap()
}

/// The settings the shipped `pricing.toml` gives the component.
fn native_settings() -> pricing::rules::Settings {
    pricing::rules::Settings { tax_rate_bp: 800, ..pricing::rules::Settings::default() }
}

fn slot_calls(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // In-memory kv and canned SQL/HTTP; logs go to `tracing` as in production
    // (no subscriber here, so a line costs what a filtered-out line costs).
    let capabilities = Capabilities { logs: Arc::new(TracingLogs), ..Fakes::default().capabilities() };
    let runtime = Runtime::new(&EngineSettings::default(), capabilities).unwrap();
    let validation = load(&rt, &runtime, "order-validation", Slot::Validation);
    let pricing_component = load(&rt, &runtime, "pricing", Slot::Pricing);
    let fulfillment = load(&rt, &runtime, "fulfillment-standard", Slot::Fulfillment);
    let order = OrderBuilder::new(7).item(1, 1250, 2).item(2, 990, 1).item(3, 4500, 3).build();
    let context = CallContext::new("bench");
    let quote = rt.block_on(runtime.price(&pricing_component, &context, &order)).unwrap().value.unwrap();

    let mut group = c.benchmark_group("slot_call");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("validation", |b| {
        b.to_async(&rt).iter(|| async { runtime.validate(&validation, &context, &order).await.unwrap() })
    });
    group.bench_function("pricing", |b| {
        b.to_async(&rt).iter(|| async { runtime.price(&pricing_component, &context, &order).await.unwrap() })
    });
    group.bench_function("fulfillment", |b| {
        b.to_async(&rt).iter(|| async { runtime.decide(&fulfillment, &context, &order, &quote).await.unwrap() })
    });
    group.finish();

    // The same arithmetic compiled natively, on the component's own types.
    use pricing::bindings::orderly::rules::types as native;
    let native_order = native::Order {
        id: None,
        user_id: 7,
        currency: "EUR".into(),
        items: order
            .items
            .iter()
            .map(|item| native::LineItem {
                product_id: item.product_id,
                sku: item.sku.clone(),
                name: item.name.clone(),
                unit_price: item.unit_price,
                quantity: item.quantity,
            })
            .collect(),
        attributes: vec![],
    };
    let settings = native_settings();
    let mut group = c.benchmark_group("native");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("pricing", |b| {
        b.iter(|| pricing::rules::price(std::hint::black_box(&native_order), &settings, None).unwrap())
    });
    group.finish();
}

criterion_group!(benches, slot_calls);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let native = median_ns("native/pricing");
    println!("\nmedian per call (fresh pooled store + instantiate + call + output checks):");
    for slot in ["validation", "pricing", "fulfillment"] {
        if let Some(ns) = median_ns(&format!("slot_call/{slot}")) {
            let ratio = native.map(|n| format!("  ({:.0}x native pricing)", ns / n)).unwrap_or_default();
            println!("  {slot:<12} {:>8.2} µs{ratio}", ns / 1000.0);
        }
    }
    if let Some(ns) = native {
        println!("  {:<12} {:>8.3} µs  (same pricing rules compiled natively)", "native", ns / 1000.0);
    }
    if let Some(ns) = median_ns("slot_call/pricing") {
        let verdict = if ns <= 10_000.0 { "meets" } else { "misses" };
        println!("pricing call: {:.2} µs median, {verdict} the 10 µs target", ns / 1000.0);
    }
}
