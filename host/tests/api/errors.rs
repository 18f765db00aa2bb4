//! Every error is a problem answer with the correlation id; bad input is
//! never a 500 and never writes anything.

use host::runtime::{Slot, SlotConfig};
use serde_json::{Value, json};

use crate::helpers::{Backend, Options, TestApp, problem, wasm};
use crate::on_both_backends;

on_both_backends!(unreadable_requests, |app| {
    let post = |body: &'static str, content_type: &'static str| {
        app.client.post(app.url("/api/v1/orders")).header("content-type", content_type).body(body).send()
    };
    let malformed = problem(post("{\"user_id\": 7", "application/json").await.unwrap(), 400).await;
    assert!(malformed["detail"].as_str().unwrap().contains("JSON"));
    problem(post("{\"user_id\": 7}", "text/plain").await.unwrap(), 415).await;
    let wrong_type =
        problem(post("{\"user_id\": \"seven\", \"items\": []}", "application/json").await.unwrap(), 422).await;
    assert!(wrong_type["detail"].as_str().unwrap().contains("user_id"));
    problem(post("[1, 2]", "application/json").await.unwrap(), 422).await;
    let negative = json!({"user_id": 7, "items": [{"product_id": 1, "quantity": -1}]});
    problem(app.post("/api/v1/orders", &negative).await, 422).await;
    problem(app.get("/api/v1/orders/not-a-number").await, 400).await;
    problem(app.get("/api/v1/nowhere").await, 404).await;
    let wrong_method = app.client.delete(app.url("/api/v1/orders")).send().await.unwrap();
    problem(wrong_method, 405).await;
    assert_eq!(app.order_count().await, 0);
});

on_both_backends!(rule_violations_are_listed, |app| {
    let id = app.product("RULES", 100, 10_000).await;
    let other = app.product("RULES-2", 100, 10).await;
    let response = app
        .post(
            "/api/v1/orders",
            &json!({"user_id": 7, "currency": "eur", "items": [
                {"product_id": id, "quantity": 0},
                {"product_id": other, "quantity": 1},
                {"product_id": id, "quantity": 1001},
            ]}),
        )
        .await;
    let body = problem(response, 422).await;
    let codes: Vec<&str> = body["violations"].as_array().unwrap().iter().map(|v| v["code"].as_str().unwrap()).collect();
    for expected in ["quantity-out-of-range", "duplicate-product", "invalid-currency"] {
        assert!(codes.contains(&expected), "{expected} in {codes:?}");
    }
    let empty = problem(app.post("/api/v1/orders", &json!({"user_id": 7, "items": []})).await, 422).await;
    assert_eq!(empty["violations"][0]["field"], "items");
    let usd = problem(
        app.post(
            "/api/v1/orders",
            &json!({"user_id": 7, "currency": "USD", "items": [{"product_id": id, "quantity": 1}]}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(usd["violations"][0]["code"], "currency-mismatch");
    assert_eq!(app.stock(id).await, 10_000, "nothing was taken");
    assert_eq!(app.order_count().await, 0);
});

on_both_backends!(unknown_things_and_missing_stock, |app| {
    let id = app.product("SCARCE", 100, 2).await;
    let unknown = problem(app.order(&[(id, 1), (987_654, 1)]).await, 404).await;
    assert!(unknown["detail"].as_str().unwrap().contains("987654"));
    let scarce = problem(app.order(&[(id, 3)]).await, 409).await;
    assert_eq!(
        (scarce["product_id"].as_i64(), scarce["requested"].as_i64(), scarce["available"].as_i64()),
        (Some(id), Some(3), Some(2))
    );
    app.patch(&format!("/api/v1/products/{id}"), &json!({"active": false})).await;
    problem(app.order(&[(id, 1)]).await, 409).await;
    problem(app.get("/api/v1/orders/31337").await, 404).await;
    assert_eq!(app.stock(id).await, 2);
    assert_eq!(app.order_count().await, 0);
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_cap_is_413() {
    let app =
        TestApp::spawn_with(Backend::Embedded, Options { max_body_bytes: Some(1024), ..Options::default() }).await;
    let attributes: serde_json::Map<String, Value> =
        (0..100).map(|n| (format!("key-{n}"), json!("x".repeat(20)))).collect();
    let body = json!({"user_id": 7, "product_id": 1, "quantity": 1, "attributes": attributes});
    problem(app.post("/api/v1/orders", &body).await, 413).await;
}

/// A component that traps: 503, nothing stored, no internals in the answer,
/// and the next order (after the slot is repaired) goes through.
async fn failing_component(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app.product("TRAPPED", 100, 5).await;
    let healthy = app.service.rules.slots().get(Slot::Pricing).unwrap();
    let trap = app
        .service
        .rules
        .runtime()
        .load(Slot::Pricing, std::fs::read(wasm("fixtures/trap")).unwrap(), SlotConfig::default())
        .await
        .unwrap();
    app.service.rules.slots().install(trap);
    let body = problem(app.order(&[(id, 1)]).await, 503).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("pricing") && !detail.contains("trap") && !detail.contains("wasm"), "{detail}");
    assert_eq!(app.stock(id).await, 5);
    assert_eq!(app.order_count().await, 0);

    app.service.rules.slots().install((*healthy).clone());
    assert_eq!(app.order(&[(id, 1)]).await.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_component_is_503_embedded() {
    failing_component(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_component_is_503_postgres() {
    failing_component(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_slot_is_503() {
    let app =
        TestApp::spawn_with(Backend::Embedded, Options { without: Some(Slot::Validation), ..Options::default() }).await;
    let id = app.product("NO-RULES", 100, 5).await;
    problem(app.order(&[(id, 1)]).await, 503).await;
    assert_eq!(app.stock(id).await, 5);
}
