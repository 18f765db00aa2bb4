//! `Idempotency-Key` on `POST /orders`.

use host::store::Claim;
use serde_json::{Value, json};

use crate::helpers::{TestApp, problem};
use crate::on_both_backends;

async fn keyed(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.client.post(app.url("/api/v1/orders")).header("idempotency-key", key).json(body).send().await.unwrap()
}

on_both_backends!(a_repeat_replays_the_first_answer, |app| {
    let id = app.product("IDEM", 100, 10).await;
    let body = json!({"user_id": 7, "items": [{"product_id": id, "quantity": 2}]});
    let first = keyed(&app, "order-attempt-1", &body).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_location = first.headers()["location"].clone();
    let first: Value = first.json().await.unwrap();

    // The same request, spelled differently.
    let respelled = json!({"items": [{"quantity": 2, "product_id": id}], "user_id": 7});
    let second = keyed(&app, "order-attempt-1", &respelled).await;
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.headers()["location"], first_location);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second, first, "the very same answer");
    assert_eq!(app.stock(id).await, 8, "stock taken once");
    assert_eq!(app.order_count().await, 1);
});

on_both_backends!(the_key_with_another_body_is_refused, |app| {
    let id = app.product("IDEM-2", 100, 10).await;
    keyed(&app, "k-2", &json!({"user_id": 7, "product_id": id, "quantity": 1})).await;
    let other = keyed(&app, "k-2", &json!({"user_id": 7, "product_id": id, "quantity": 2})).await;
    let body = problem(other, 422).await;
    assert_eq!(body["type"], "urn:orderly:problem:idempotency-key-reused");
    assert_eq!(app.order_count().await, 1);
    let bad_key = app
        .client
        .post(app.url("/api/v1/orders"))
        .header("idempotency-key", "has space")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    problem(bad_key, 400).await;
});

on_both_backends!(concurrent_requests_with_one_key_make_one_order, |app| {
    let id = app.product("IDEM-3", 100, 50).await;
    let body = json!({"user_id": 7, "items": [{"product_id": id, "quantity": 1}]});
    let attempts = (0..10).map(|_| keyed(&app, "same-key", &body));
    let responses = futures::future::join_all(attempts).await;
    let mut ids = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 201);
        ids.push(response.json::<Value>().await.unwrap()["id"].as_i64().unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every answer names the same order");
    assert_eq!(app.order_count().await, 1);
    assert_eq!(app.stock(id).await, 49);
});

on_both_backends!(a_failed_request_frees_its_key, |app| {
    let id = app.product("IDEM-4", 100, 1).await;
    let body = json!({"user_id": 7, "items": [{"product_id": id, "quantity": 3}]});
    problem(keyed(&app, "retry-me", &body).await, 409).await;
    app.patch(&format!("/api/v1/products/{id}"), &json!({"stock": 5})).await;
    assert_eq!(keyed(&app, "retry-me", &body).await.status(), 201, "the retry after restocking succeeds");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_expire() {
    let options = crate::helpers::Options { idempotency_ttl_secs: Some(1), ..Default::default() };
    let app = TestApp::spawn_with(crate::helpers::Backend::Embedded, options).await;
    let id = app.product("IDEM-5", 100, 10).await;
    assert_eq!(keyed(&app, "short-lived", &json!({"user_id": 7, "product_id": id, "quantity": 1})).await.status(), 201);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let reused = keyed(&app, "short-lived", &json!({"user_id": 7, "product_id": id, "quantity": 2})).await;
    assert_eq!(reused.status(), 201, "an expired key is a new key");
    assert_eq!(app.order_count().await, 2);
}

on_both_backends!(a_late_release_leaves_a_newer_claim_of_the_key_alone, |app| {
    let store = &app.service.store;
    let (ttl, never) = (chrono::Duration::hours(1), chrono::Duration::hours(1));
    let claim = |abandon_after| store.claim_idempotency_key("late", "same-request", ttl, abandon_after);
    let Claim::Fresh { since: first } = claim(never).await.unwrap() else { panic!("a new key is fresh") };
    // The first request hangs; its retry, past the abandon time, takes the key over.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let Claim::Fresh { since: second } = claim(chrono::Duration::zero()).await.unwrap() else {
        panic!("an abandoned claim is taken over")
    };
    assert_ne!(first, second);
    // The first request's release arrives late: the retry's claim stays.
    store.release_idempotency_key("late", first).await.unwrap();
    assert_eq!(claim(never).await.unwrap(), Claim::InProgress);
    // The retry's own release frees the key.
    store.release_idempotency_key("late", second).await.unwrap();
    assert!(matches!(claim(never).await.unwrap(), Claim::Fresh { .. }));
});
