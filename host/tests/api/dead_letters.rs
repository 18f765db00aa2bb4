//! Jobs that keep failing: a trapping policy and a poison message are
//! retried, dead-lettered and shown to the operator, while the worker keeps
//! serving; a requeued dead letter completes once the policy is fixed. And a
//! cancel racing the workers ends with exactly one outcome.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, Options, TestApp, admin_token, fast_fulfillment, problem, token, wasm};
use crate::on_both_backends;
use host::runtime::Slot;

fn with_trapping_policy() -> Options {
    Options {
        fulfillment: Some(fast_fulfillment(1)),
        components: vec![(Slot::Fulfillment, "fixtures/trap-policy")],
        ..Options::default()
    }
}

async fn admin_get(app: &TestApp, path: &str) -> Value {
    let response = app.client.get(app.url(path)).bearer_auth(admin_token()).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// Waits until the dead letters include one that `matches`; returns it.
async fn dead_letter(app: &TestApp, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let letters = admin_get(app, "/api/v1/admin/dead-letters").await;
        if let Some(letter) = letters.as_array().unwrap().iter().find(|letter| matches(letter)) {
            return letter.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no such dead letter in {letters}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

on_both_backends!(a_trapping_policy_is_retried_dead_lettered_and_requeued, options = with_trapping_policy(), |app| {
    let mug = app.product("MUG", 1250, 10).await;
    let doomed = app.place(&[(mug, 1)], json!({"trap": "yes"})).await;
    let fine = app.place_for(8, &[(mug, 1)], json!({})).await;
    // The worker keeps serving other orders while one keeps failing.
    let shipped = app.wait_for_status(fine, "fulfilled", Duration::from_secs(20)).await;
    assert_eq!(shipped["shipment"]["carrier"], "fixture");
    let held = app.wait_for_status(doomed, "on_hold", Duration::from_secs(20)).await;
    assert!(held["status_reason"].as_str().unwrap().contains("given up"), "{held}");
    let letter = dead_letter(&app, |letter| letter["order_id"] == doomed).await;
    assert_eq!(letter["attempts"], 3, "retried up to MAX_ATTEMPTS");
    assert!(letter["error"].as_str().unwrap().contains("trap"), "{letter}");
    let queue = admin_get(&app, "/api/v1/admin/queue").await;
    assert_eq!(queue["dead"], 1);
    assert_eq!(queue["backend"], if app.backend == Backend::Postgres { "redis" } else { "database" });

    // The policy is fixed; the operator requeues the dead letter.
    let standard =
        app.service.rules.runtime().load_file(Slot::Fulfillment, &wasm("fulfillment-standard")).await.unwrap();
    app.service.rules.slots().install(standard);
    let id = letter["id"].as_str().unwrap();
    let requeue =
        app.client.post(app.url(&format!("/api/v1/admin/dead-letters/{id}/requeue"))).bearer_auth(admin_token());
    let requeued = requeue.send().await.unwrap();
    assert_eq!(requeued.status(), 200);
    let order = app.wait_for_status(doomed, "fulfilled", Duration::from_secs(20)).await;
    let path: Vec<&str> =
        order["history"].as_array().unwrap().iter().map(|entry| entry["to"].as_str().unwrap()).collect();
    assert_eq!(path, ["pending", "processing", "on_hold", "processing", "fulfilled"]);
    let letters = admin_get(&app, "/api/v1/admin/dead-letters").await;
    assert!(letters.as_array().unwrap().iter().all(|letter| letter["order_id"] != doomed), "{letters}");
    let again =
        app.client.post(app.url(&format!("/api/v1/admin/dead-letters/{id}/requeue"))).bearer_auth(admin_token());
    problem(again.send().await.unwrap(), 404).await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_and_the_worker_keeps_serving() {
    let app = TestApp::spawn_with(Backend::Postgres, with_trapping_policy()).await;
    let mut redis = app.redis().await;
    let queue = format!("{}fulfillment_queue", app.namespace);
    let _: () = redis::cmd("LPUSH").arg(&queue).arg("this is not a job").query_async(&mut redis).await.unwrap();
    let letter = dead_letter(&app, |letter| letter["payload"] == "this is not a job").await;
    assert_eq!(letter["attempts"], 3);
    assert_eq!(letter["order_id"], Value::Null);
    assert!(letter["error"].as_str().unwrap().contains("not a fulfillment job"), "{letter}");
    let mug = app.product("MUG", 1250, 10).await;
    let order = app.place(&[(mug, 1)], json!({})).await;
    app.wait_for_status(order, "fulfilled", Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_the_admin_scope() {
    let app = TestApp::spawn_with(Backend::Embedded, with_trapping_policy()).await;
    let none = reqwest::Client::new().get(app.url("/api/v1/admin/queue")).send().await.unwrap();
    assert_eq!(none.headers()["www-authenticate"], "Bearer realm=\"orderly\"");
    problem(none, 401).await;
    let guess = app.client.get(app.url("/api/v1/admin/dead-letters")).bearer_auth("guess").send().await.unwrap();
    assert!(guess.headers()["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
    problem(guess, 401).await;
    let back_office = token("clerk", "orders:all catalog:write");
    let clerk = app.client.get(app.url("/api/v1/admin/queue")).bearer_auth(back_office).send().await.unwrap();
    let body = problem(clerk, 403).await;
    assert_eq!(body["required_scope"], "admin", "{body}");
    let right = app.client.get(app.url("/api/v1/admin/queue")).bearer_auth(admin_token()).send().await.unwrap();
    assert_eq!(right.status(), 200);
}

fn racing_workers() -> Options {
    let mut fulfillment = fast_fulfillment(2);
    fulfillment.simulated_delay_ms = Some("0-10".parse().unwrap());
    Options { fulfillment: Some(fulfillment), ..Options::default() }
}

on_both_backends!(a_cancel_racing_the_workers_has_exactly_one_outcome, options = racing_workers(), |app| {
    let mug = app.product("MUG", 1250, 50).await;
    let mut orders = Vec::new();
    for user in 0..20 {
        let id = app.place_for(user, &[(mug, 1)], json!({})).await;
        // Cancelled at once: before, while or after a worker takes it.
        let cancel = app.patch(&format!("/api/v1/orders/{id}/status"), &json!({"status": "cancelled"})).await;
        assert_eq!(cancel.status(), 200, "a cancel is legal in every state a worker can leave the order in");
        orders.push(id);
    }
    // Let the workers meet every job (each skips its cancelled order).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in orders {
        let order: Value = app.get(&format!("/api/v1/orders/{id}")).await.json().await.unwrap();
        assert_eq!(order["status"], "cancelled", "{order}");
        let history = order["history"].as_array().unwrap();
        let cancels = history.iter().filter(|entry| entry["to"] == "cancelled").count();
        assert_eq!(cancels, 1, "one outcome: {order}");
        assert_eq!(history.last().unwrap()["to"], "cancelled", "nothing happens after the cancel: {order}");
    }
    assert_eq!(app.stock(mug).await, 50, "every cancelled unit is back, once");
});
