//! The built standard fulfillment policy, through the real host linker.

use component_testkit::{Decision, OrderBuilder, Slot, TestHost, quote_with_total};

fn quote(total: u64) -> component_testkit::Quote {
    quote_with_total(total, "EUR")
}

#[tokio::test]
async fn golden_fixtures() {
    let host = TestHost::load_crate(env!("CARGO_MANIFEST_DIR"), Slot::Fulfillment).await;
    let outcomes = host.assert_golden(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures")).await;
    assert_eq!(outcomes.len(), 3);
}

#[tokio::test]
async fn the_review_threshold_is_configurable_and_each_decision_is_logged() {
    let mut host = TestHost::load_crate(env!("CARGO_MANIFEST_DIR"), Slot::Fulfillment).await;
    let order = OrderBuilder::new(1).id(5).item(1, 30_000, 1).build();
    assert!(matches!(host.decide(&order, &quote(30_000)).await.unwrap().value, Decision::Ship(_)));
    host.set_settings([("review_threshold", "20000")]);
    let decision = host.decide(&order, &quote(30_000)).await.unwrap().value;
    assert_eq!(decision, Decision::Hold("order total 30000 EUR is above the review threshold of 20000".into()));
    let messages: Vec<_> = host.logs().into_iter().map(|line| line.message).collect();
    assert_eq!(messages, ["ship from main", "hold: order total 30000 EUR is above the review threshold of 20000"]);
}
