//! The built pricing component, through the real host linker.

use component_testkit::{OrderBuilder, Slot, TestHost};

async fn host() -> TestHost {
    TestHost::load_crate(env!("CARGO_MANIFEST_DIR"), Slot::Pricing).await
}

#[tokio::test]
async fn golden_fixtures() {
    let outcomes = host().await.assert_golden(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures")).await;
    assert!(outcomes.len() >= 5);
}

#[tokio::test]
async fn promo_codes_come_from_the_kv_capability() {
    let host = host().await;
    host.kv_set("promo:WELCOME", "1500");
    let order = OrderBuilder::new(1).item(1, 10_000, 1).attribute("promo_code", "welcome").build();
    let output = host.price(&order).await.unwrap();
    let quote = output.value.unwrap();
    assert_eq!(quote.discount, 1500);
    // 8 % tax (shipped pricing.toml) on 85.00, free shipping from 50.00.
    assert_eq!((quote.tax, quote.shipping, quote.total), (680, 0, 9180));
    assert_eq!(output.uses.len(), 1);
    assert_eq!((output.uses[0].capability, output.uses[0].target.as_str()), ("kv.get", "promo:WELCOME"));
}

#[tokio::test]
async fn a_corrupt_promo_value_fails_the_call_instead_of_mispricing() {
    let host = host().await;
    host.kv_set("promo:BROKEN", "ten percent");
    let order = OrderBuilder::new(1).item(1, 100, 1).attribute("promo_code", "broken").build();
    let error = host.price(&order).await.unwrap_err();
    assert_eq!(error.kind(), "trap");
    assert!(error.to_string().contains("not basis points"), "{error}");
}

#[tokio::test]
async fn settings_come_from_the_slot_config() {
    let mut host = host().await;
    host.set_settings([("tax_rate_bp", "2000"), ("shipping_flat", "700"), ("free_shipping_threshold", "100000")]);
    let quote = host.price(&OrderBuilder::new(1).item(1, 1000, 1).build()).await.unwrap().value.unwrap();
    assert_eq!((quote.tax, quote.shipping, quote.total), (200, 700, 1900));
    host.set_settings([("tax_rate_bp", "lots")]);
    let error = host.price(&OrderBuilder::new(1).item(1, 1000, 1).build()).await.unwrap_err();
    assert!(error.to_string().contains("tax_rate_bp"), "{error}");
}
