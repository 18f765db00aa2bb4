//! The sandbox as a client meets it: a component that never answers is
//! stopped at its deadline, a request that runs too long is stopped at the
//! server's time limit, and input no customer should be able to weaponise
//! neither traps the default rules nor rolls back a good version.

use std::time::{Duration, Instant};

use host::rules::swap::{Proposal, Source};
use host::runtime::Slot;
use serde_json::{Value, json};

use crate::helpers::{Options, component_dir, problem, wasm};
use crate::on_both_backends;

/// The sleeping fixture in the pricing slot, allowed to sleep `deadline_ms`.
fn sleeping_pricing(deadline_ms: u64, request_timeout_ms: Option<u64>) -> Options {
    Options {
        components: vec![(Slot::Pricing, "fixtures/sleep")],
        configs: vec![(Slot::Pricing, format!("[limits]\ndeadline_ms = {deadline_ms}\n"))],
        request_timeout_ms,
        ..Options::default()
    }
}

on_both_backends!(
    a_component_that_never_answers_is_a_503_at_its_deadline,
    options = sleeping_pricing(200, None),
    |app| {
        let mug = app.product("MUG", 1250, 5).await;
        let started = Instant::now();
        let response = app.order(&[(mug, 1)]).await;
        assert_eq!(response.headers()["retry-after"], "1", "a 503 says when to retry");
        let body = problem(response, 503).await;
        let elapsed = started.elapsed();
        assert_eq!(body["type"], "urn:orderly:problem:rule-unavailable");
        assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1500), "stopped after {elapsed:?}");
        assert_eq!(app.stock(mug).await, 5);
        assert_eq!(app.order_count().await, 0);
        // Counted against the version that did it.
        let statuses = app.service.rules.slot_statuses().await.unwrap();
        let pricing = &statuses[1];
        let stats = &pricing.active.as_ref().unwrap().stats;
        assert_eq!((stats.calls, stats.errors), (1, 1), "{pricing:?}");
    }
);

on_both_backends!(
    a_request_past_the_server_time_limit_is_stopped_and_stores_nothing,
    options = sleeping_pricing(10_000, Some(300)),
    |app| {
        let mug = app.product("MUG", 1250, 5).await;
        let order = json!({"user_id": 7, "items": [{"product_id": mug, "quantity": 1}]});
        let send =
            || app.client.post(app.url("/api/v1/orders")).header("idempotency-key", "slow-order-1").json(&order).send();
        let started = Instant::now();
        let response = send().await.unwrap();
        assert_eq!(response.headers()["retry-after"], "1", "a 503 says when to retry");
        let body = problem(response, 503).await;
        let elapsed = started.elapsed();
        assert_eq!(body["type"], "urn:orderly:problem:request-timeout", "{body}");
        assert!(body["detail"].as_str().unwrap().contains("300 ms"), "{body}");
        assert!(elapsed < Duration::from_millis(2000), "answered after {elapsed:?}");
        assert_eq!(app.stock(mug).await, 5, "nothing was stored");
        assert_eq!(app.order_count().await, 0);

        // The key was freed: once pricing answers again, the retry places the order.
        let pricing = std::fs::read(wasm("pricing")).unwrap();
        let toml = std::fs::read_to_string(component_dir("pricing").join("pricing.toml")).unwrap();
        let swapped = app.service.rules.propose(Slot::Pricing, pricing, Some(toml), Source::Upload.into()).await;
        assert!(matches!(swapped, Ok(Proposal::Activated(_))), "{swapped:?}");
        let retry = send().await.unwrap();
        assert_eq!(retry.status(), 201);
        assert!(retry.headers().get("idempotent-replayed").is_none());
        assert_eq!(app.stock(mug).await, 4);
        // Event streams are long-lived and not cut at the limit.
        let mut stream = app.client.get(app.url("/api/v1/events")).send().await.unwrap();
        assert_eq!(stream.status(), 200);
        let opened = Instant::now();
        let until = tokio::time::Instant::now() + Duration::from_millis(600);
        while let Ok(chunk) = tokio::time::timeout_at(until, stream.chunk()).await {
            let chunk = chunk.expect("the stream keeps working");
            assert!(chunk.is_some(), "the stream ended after {:?}", opened.elapsed());
        }
    }
);

on_both_backends!(hostile_input_neither_traps_the_rules_nor_rolls_back_a_good_version, |app| {
    let mug = app.product("MUG", 1250, 500).await;
    // A freshly deployed good version, on probation.
    let pricing = std::fs::read(wasm("pricing")).unwrap();
    let toml = std::fs::read_to_string(component_dir("pricing").join("pricing.toml")).unwrap();
    let toml = toml.replace("version = \"0.1.0\"", "version = \"0.1.1\"");
    let swapped = app.service.rules.propose(Slot::Pricing, pricing, Some(toml), Source::Upload.into()).await;
    assert!(matches!(swapped, Ok(Proposal::Activated(_))), "{swapped:?}");

    let hostile = ["x".repeat(600), "SAVE 10".into(), "%00".into(), "\u{1F600}".repeat(20), "a:b:c".into()];
    for (user, code) in hostile.iter().cycle().take(30).enumerate() {
        let body =
            json!({"user_id": user, "items": [{"product_id": mug, "quantity": 1}], "attributes": {"promo_code": code}});
        let answer = app.post("/api/v1/orders", &body).await;
        let body = problem(answer, 422).await;
        assert_eq!(body["violations"][0]["code"], "invalid-promo-code", "{code:?}: {body}");
    }
    let statuses = app.service.rules.slot_statuses().await.unwrap();
    let active: &Value = &serde_json::to_value(&statuses[1]).unwrap()["active"];
    assert_eq!(active["version"], "0.1.1", "the good version still serves: {active}");
    assert_eq!(active["errors"], 0, "{active}");
    let history = app.service.rules.slot_history(Slot::Pricing).await.unwrap();
    assert!(
        history.events.iter().all(|event| event.kind != host::rules::swap::EventKind::AutoRolledBack),
        "{:?}",
        history.events
    );
    assert_eq!(app.stock(mug).await, 500);
});

on_both_backends!(
    a_version_that_never_answers_is_rolled_back_by_itself,
    options = Options {
        swap: Some(host::config::SwapSettings { rollback_window_calls: 4, ..Default::default() }),
        ..Options::default()
    },
    |app| {
        let mug = app.product("MUG", 1250, 50).await;
        let sleeper = std::fs::read(wasm("fixtures/sleep")).unwrap();
        let toml = "[component]\nname = \"sleeper\"\nversion = \"6.6.6\"\n[limits]\ndeadline_ms = 50\n";
        let swapped = app.service.rules.propose(Slot::Pricing, sleeper, Some(toml.into()), Source::Upload.into()).await;
        assert!(matches!(swapped, Ok(Proposal::Activated(_))), "{swapped:?}");
        // Each call is stopped at its deadline and counted: three of the
        // first four send the slot back to the version before.
        for _ in 0..3 {
            problem(app.order(&[(mug, 1)]).await, 503).await;
        }
        // Through the registry (the counts, then the change, then this process loads it).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let active =
                serde_json::to_value(&app.service.rules.slot_statuses().await.unwrap()[1]).unwrap()["active"].clone();
            if active["component"] == "pricing" && active["loaded_at"].is_string() {
                assert_eq!(active["source"], "rollback", "{active}");
                break;
            }
            assert!(Instant::now() < deadline, "still serving {active}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(app.order(&[(mug, 1)]).await.status(), 201);
        assert_eq!(app.stock(mug).await, 49, "only the last order was stored");
    }
);
