//! The built validation component, through the real host linker.

use component_testkit::{Level, OrderBuilder, Slot, TestHost, Value};

async fn host() -> TestHost {
    TestHost::load_crate(env!("CARGO_MANIFEST_DIR"), Slot::Validation).await
}

#[tokio::test]
async fn golden_fixtures() {
    let outcomes = host().await.assert_golden(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures")).await;
    assert!(outcomes.len() >= 7);
}

#[tokio::test]
async fn the_rate_limit_counts_per_user_in_kv() {
    let mut host = host().await;
    host.set_settings([("orders_per_minute", "2")]);
    let order = OrderBuilder::new(11).item(1, 100, 1).build();
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(host.validate(&order).await.unwrap().value.into_iter().map(|v| v.code).collect::<Vec<_>>());
    }
    assert_eq!(codes, [vec![], vec![], vec!["rate-limited".to_string()]]);
    // Another user has a counter of their own.
    let other = OrderBuilder::new(12).item(1, 100, 1).build();
    assert!(host.validate(&other).await.unwrap().value.is_empty());
    let counters = host.kv_entries();
    assert_eq!(counters.len(), 2);
    assert!(counters.iter().any(|(key, value)| key.starts_with("orders-per-minute:11:") && value == "3"));
}

#[tokio::test]
async fn an_unreadable_open_order_count_lets_the_order_through_with_a_warning() {
    let mut host = host().await;
    host.set_settings([("max_open_orders", "1")]);
    let order = OrderBuilder::new(3).item(1, 100, 1).build();
    // No canned rows: the fake answers `invalid`, as a missing table would.
    assert!(host.validate(&order).await.unwrap().value.is_empty());
    let logs = host.logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].level, Level::Warn);
    assert_eq!(logs[0].message, "open-order limit skipped: counter unavailable");

    host.sql_answer("count(*) from open_orders", &["count"], vec![vec![Value::Integer(1)]]);
    let violations = host.validate(&order).await.unwrap().value;
    assert_eq!(violations[0].code, "too-many-open-orders");
    let seen = host.sql_seen();
    assert_eq!(seen.last().unwrap().params, [Value::Integer(3)]);
}
