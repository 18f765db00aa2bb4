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
async fn a_corrupt_promo_value_refuses_the_order_instead_of_mispricing() {
    let host = host().await;
    host.kv_set("promo:BROKEN", "ten percent");
    let order = OrderBuilder::new(1).item(1, 100, 1).attribute("promo_code", "broken").build();
    let violations = host.price(&order).await.unwrap().value.unwrap_err();
    assert_eq!(violations[0].code, "unusable-promo-code");
    // The operator learns which code holds what.
    let logged = host.logs();
    assert!(logged.iter().any(|line| line.message.contains("unusable value")), "{logged:?}");
}

#[tokio::test]
async fn no_promo_code_a_customer_can_send_makes_it_trap() {
    let host = host().await;
    host.kv_set("promo:SAVE10", "1000");
    let hostile = [
        "x".repeat(600),
        "SAVE10\u{0}".into(),
        "../../etc".into(),
        "promo:SAVE10".into(),
        "\u{1F600}".repeat(40),
        " ".into(),
        "save10".into(),
    ];
    for code in hostile {
        let order = OrderBuilder::new(1).item(1, 100, 1).attribute("promo_code", &code).build();
        let answer = host.price(&order).await;
        assert!(answer.is_ok(), "promo code {code:?} made the component fail: {answer:?}");
    }
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
