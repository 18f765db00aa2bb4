//! The slot registry and the default components through the real runtime.

use std::sync::Arc;

use host::runtime::bindings::types::Decision;
use host::runtime::{CallContext, Slot, SlotRegistry};

use crate::helpers::{load, order, runtime_with_fakes, shipped_config, wasm};

#[tokio::test]
async fn load_dir_fills_each_slot_present_with_its_toml() {
    let (runtime, _fakes) = runtime_with_fakes();
    let dir = tempdir();
    std::fs::copy(wasm("pricing"), dir.join("pricing.wasm")).unwrap();
    std::fs::write(dir.join("pricing.toml"), "[component]\nname = \"my-pricing\"\nversion = \"2.0.0\"\n").unwrap();
    std::fs::copy(wasm("fulfillment-express"), dir.join("fulfillment.wasm")).unwrap();
    let registry = SlotRegistry::new();
    let filled = runtime.load_dir(&dir, &registry).await.unwrap();
    assert_eq!(filled, [Slot::Pricing, Slot::Fulfillment]);
    assert!(registry.get(Slot::Validation).is_none());
    let pricing = registry.get(Slot::Pricing).unwrap();
    assert_eq!((&*pricing.name, &*pricing.version), ("my-pricing", "2.0.0"));
    assert_eq!(pricing.digest.len(), 64);
    let fulfillment = registry.get(Slot::Fulfillment).unwrap();
    assert_eq!((&*fulfillment.name, &*fulfillment.version), ("fulfillment", "unversioned"));
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_call_in_flight_keeps_its_version_across_an_install() {
    let (runtime, _fakes) = runtime_with_fakes();
    let registry = SlotRegistry::new();
    let standard = load(
        &runtime,
        "fulfillment-standard",
        Slot::Fulfillment,
        shipped_config("fulfillment-standard", Slot::Fulfillment),
    )
    .await;
    let express = load(
        &runtime,
        "fulfillment-express",
        Slot::Fulfillment,
        shipped_config("fulfillment-express", Slot::Fulfillment),
    )
    .await;
    assert!(registry.install(standard).is_none());
    let held: Arc<_> = registry.get(Slot::Fulfillment).unwrap();
    let replaced = registry.install(express).unwrap();
    assert_eq!(&*replaced.name, "fulfillment-standard");
    assert_eq!(&*registry.get(Slot::Fulfillment).unwrap().name, "fulfillment-express");

    let order = order(5);
    let quote = priced(&runtime, &order).await;
    let context = CallContext::new("swap");
    let old = runtime.decide(&held, &context, &order, &quote).await.unwrap().value;
    let new = runtime.decide(&registry.get(Slot::Fulfillment).unwrap(), &context, &order, &quote).await.unwrap().value;
    let (Decision::Ship(old), Decision::Ship(new)) = (old, new) else { panic!("both policies ship this order") };
    assert_eq!((old.warehouse.as_str(), old.service.as_str()), ("main", "standard"));
    assert_eq!((new.service.as_str(), new.estimated_days), ("express", 1));
}

#[tokio::test]
async fn the_default_components_validate_price_and_decide() {
    let (runtime, fakes) = runtime_with_fakes();
    let validation =
        load(&runtime, "order-validation", Slot::Validation, shipped_config("order-validation", Slot::Validation))
            .await;
    let context = CallContext::new("defaults");
    let order = order(9);
    assert!(runtime.validate(&validation, &context, &order).await.unwrap().value.is_empty());
    // The rate counter went through the kv capability under the slot's prefix.
    let keys: Vec<_> = fakes.kv.snapshot().into_keys().collect();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].starts_with("kv:validation:orders-per-minute:9:"), "{keys:?}");

    let quote = priced(&runtime, &order).await;
    // 2*12.50 + 9.90 + 3*45.00 = 169.90; 6 units: no tier; 8 % tax = 13.59; free shipping.
    assert_eq!((quote.subtotal, quote.discount, quote.tax, quote.shipping, quote.total), (16_990, 0, 1359, 0, 18_349));
    let standard = load(
        &runtime,
        "fulfillment-standard",
        Slot::Fulfillment,
        shipped_config("fulfillment-standard", Slot::Fulfillment),
    )
    .await;
    let decision = runtime.decide(&standard, &context, &order, &quote).await.unwrap().value;
    assert!(matches!(decision, Decision::Ship(ref s) if s.warehouse == "main"), "{decision:?}");
}

async fn priced(
    runtime: &host::runtime::Runtime,
    order: &host::runtime::bindings::types::Order,
) -> host::runtime::bindings::types::Quote {
    let pricing = load(runtime, "pricing", Slot::Pricing, shipped_config("pricing", Slot::Pricing)).await;
    runtime.price(&pricing, &CallContext::new("price"), order).await.unwrap().value.unwrap()
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("slots-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
