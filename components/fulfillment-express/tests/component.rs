//! The built express policy, through the real host linker.

use component_testkit::{Decision, OrderBuilder, Slot, TestHost, quote_with_total};

#[tokio::test]
async fn golden_fixtures() {
    let host = TestHost::load_crate(env!("CARGO_MANIFEST_DIR"), Slot::Fulfillment).await;
    let outcomes = host.assert_golden(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures")).await;
    assert_eq!(outcomes.len(), 3);
}

#[tokio::test]
async fn decides_differently_from_the_standard_policy() {
    let express = TestHost::load_crate(env!("CARGO_MANIFEST_DIR"), Slot::Fulfillment).await;
    let standard_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fulfillment-standard");
    let standard = TestHost::load_crate(standard_dir, Slot::Fulfillment).await;
    let order = OrderBuilder::new(1).id(8).item(1, 200_000, 1).attribute("region", "us").build();
    let quote = quote_with_total(200_000, "EUR");
    let from_express = express.decide(&order, &quote).await.unwrap().value;
    let from_standard = standard.decide(&order, &quote).await.unwrap().value;
    assert!(matches!(from_standard, Decision::Hold(_)), "standard holds 2000.00 EUR: {from_standard:?}");
    let Decision::Ship(shipment) = from_express else { panic!("express ships it: {from_express:?}") };
    assert_eq!((shipment.warehouse.as_str(), shipment.estimated_days), ("nyc", 1));
}
