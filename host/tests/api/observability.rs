//! Correlation ids: accepted or generated, echoed, and carried by problem
//! bodies, log lines (the host's and the components') and the outbox.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, logs_of, problem};
use crate::on_both_backends;

on_both_backends!(a_correlation_id_travels_everywhere, |app| {
    let id = app.product("TRACE", 100, 10).await;
    let correlation_id = format!("trace-{}", uuid::Uuid::new_v4().simple());
    let body = json!({"user_id": 7, "items": [{"product_id": id, "quantity": 1}]});
    let response = app
        .client
        .post(app.url("/api/v1/orders"))
        .header("x-correlation-id", &correlation_id)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-correlation-id"], correlation_id.as_str());
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["history"][0]["correlation_id"], correlation_id.as_str());

    let lines = logs_of(&correlation_id);
    let served = lines.iter().find(|line| line["message"] == "request served").expect("a request line");
    for field in ["timestamp", "level", "service", "message"] {
        assert!(served.get(field).is_some(), "{field} in {served}");
    }
    assert_eq!(served["service"], "orderly");
    assert_eq!(served["status"], 201);
    assert!(
        lines.iter().any(|line| line["target"] == "component" && line["slot"] == "pricing"),
        "the pricing component's own log line carries the id: {lines:?}"
    );

    let outbox = outbox_payloads(&app, order["id"].as_i64().unwrap()).await;
    assert!(!outbox.is_empty());
    for payload in &outbox {
        assert_eq!(payload["correlation_id"], correlation_id.as_str(), "{payload}");
    }
    let job = outbox.iter().find(|payload| payload.get("job_id").is_some()).expect("a fulfillment job");
    assert_eq!(
        (job["order_id"].clone(), job["product_id"].as_i64(), job["quantity"].as_i64()),
        (order["id"].clone(), Some(id), Some(1))
    );

    let refused = app
        .client
        .get(app.url("/api/v1/orders/999999"))
        .header("x-correlation-id", &correlation_id)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(refused, 404).await["correlation_id"], correlation_id.as_str());
});

async fn outbox_payloads(app: &TestApp, order_id: i64) -> Vec<Value> {
    let messages = app.service.store.outbox_of(order_id).await.unwrap();
    messages.iter().map(|message| serde_json::from_str(&message.payload).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_correlation_ids_are_replaced() {
    let app = TestApp::spawn(Backend::Embedded).await;
    for bad in ["x".repeat(129), "two words".to_owned(), String::new()] {
        let response = app.client.get(app.url("/health")).header("x-correlation-id", &bad).send().await.unwrap();
        let echoed = response.headers()["x-correlation-id"].to_str().unwrap().to_owned();
        assert_ne!(echoed, bad);
        assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "a generated id: {echoed}");
    }
}
