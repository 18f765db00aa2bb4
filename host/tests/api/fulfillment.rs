//! Fulfillment end to end: orders placed over HTTP are taken by the workers,
//! decided by the `fulfillment` component and moved on, on both backends;
//! the queue keeps the seeds' wire format; events reach SSE clients.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{Backend, Options, TestApp, fast_fulfillment, problem, wasm};
use crate::on_both_backends;
use host::fulfillment::{Worker, Workers};
use host::grpc::proto::{OrderStatus as GrpcStatus, UpdateOrderStatusRequest};
use host::runtime::Slot;

fn with_workers(workers: usize) -> Options {
    Options { fulfillment: Some(fast_fulfillment(workers)), ..Options::default() }
}

fn transitions(order: &Value) -> Vec<(Value, Value)> {
    order["history"].as_array().unwrap().iter().map(|entry| (entry["from"].clone(), entry["to"].clone())).collect()
}

on_both_backends!(an_order_is_fulfilled_as_the_standard_policy_decides, options = with_workers(1), |app| {
    let mug = app.product("MUG", 1250, 10).await;
    let id = app.place(&[(mug, 2)], json!({})).await;
    let order = app.wait_for_status(id, "fulfilled", Duration::from_secs(15)).await;
    assert_eq!(
        order["shipment"],
        json!({"carrier": "postal", "service": "standard", "warehouse": "main", "estimated_days": 3})
    );
    assert_eq!(
        transitions(&order),
        vec![
            (Value::Null, json!("pending")),
            (json!("pending"), json!("processing")),
            (json!("processing"), json!("fulfilled")),
        ]
    );
    let decided = order["components"].as_array().unwrap().iter().find(|record| record["slot"] == "fulfillment");
    let decided = decided.expect("the fulfillment call is recorded on the order");
    assert_eq!(decided["component"], "fulfillment-standard");
    assert_eq!(decided["digest"].as_str().unwrap().len(), 64);
    // The job ran under the request's correlation id.
    let created_by = order["history"][0]["correlation_id"].clone();
    assert_eq!(order["history"][2]["correlation_id"], created_by);
    let lines = crate::helpers::logs_of(created_by.as_str().unwrap());
    let decided = lines.iter().find(|line| line["message"] == "order fulfillment decided").expect("the worker's line");
    assert_eq!((decided["order_id"].as_i64(), decided["status"].as_str()), (Some(id), Some("fulfilled")));
    assert!(
        lines.iter().any(|line| line["target"] == "component" && line["slot"] == "fulfillment"),
        "the policy's own log line carries the order's correlation id: {lines:?}"
    );
    assert_eq!(app.stock(mug).await, 8, "a fulfilled order keeps its stock taken");
    // What the worker cached is exactly what the database holds.
    let stored = serde_json::to_value(app.service.store.order(id).await.unwrap()).unwrap();
    assert_eq!(order, stored);
});

on_both_backends!(an_order_above_the_review_threshold_is_held, options = with_workers(1), |app| {
    let piano = app.product("PIANO", 60_000, 5).await;
    let id = app.place(&[(piano, 2)], json!({})).await;
    let order = app.wait_for_status(id, "on_hold", Duration::from_secs(15)).await;
    assert!(order["status_reason"].as_str().unwrap().contains("review"), "{order}");
    assert_eq!(order["shipment"], Value::Null);
    // Fulfillment's own moves are not made by hand: no order is decided without its policy.
    let path = format!("/api/v1/orders/{id}/status");
    let refused = problem(app.patch(&path, &json!({"status": "fulfilled"})).await, 409).await;
    assert_eq!(
        (refused["current_status"].as_str(), refused["allowed"].clone()),
        (Some("on_hold"), json!(["processing", "cancelled"]))
    );
    // An operator reviews it, swaps in the express policy (a higher threshold)
    // and releases the hold: the order gets a job and is decided again.
    let express = app.service.rules.runtime().load_file(Slot::Fulfillment, &wasm("fulfillment-express")).await.unwrap();
    app.service.rules.slots().install(express);
    let released = app.patch(&path, &json!({"status": "processing", "reason": "reviewed"})).await;
    assert_eq!(released.status(), 200);
    let order = app.wait_for_status(id, "fulfilled", Duration::from_secs(15)).await;
    assert_eq!(order["shipment"]["service"], "express", "{order}");
    assert_eq!(
        transitions(&order)[1..],
        [
            (json!("pending"), json!("processing")),
            (json!("processing"), json!("on_hold")),
            (json!("on_hold"), json!("processing")),
            (json!("processing"), json!("fulfilled")),
        ]
    );
    let jobs = app.service.store.outbox_of(id).await.unwrap().into_iter().filter(|m| m.topic == "fulfillment").count();
    assert_eq!(jobs, 2, "the order's first job and the one its release queued");
});

on_both_backends!(fulfillment_moves_are_refused_by_hand, |app| {
    let mug = app.product("MUG", 1250, 5).await;
    let id = app.place(&[(mug, 1)], json!({})).await;
    let path = format!("/api/v1/orders/{id}/status");
    // No worker runs here: a pending order taken by hand would be `processing` with no job behind it.
    let taken = problem(app.patch(&path, &json!({"status": "processing"})).await, 409).await;
    assert_eq!((taken["current_status"].as_str(), taken["allowed"].clone()), (Some("pending"), json!(["cancelled"])));
    let skipped = problem(app.patch(&path, &json!({"status": "fulfilled"})).await, 409).await;
    assert_eq!(skipped["current_status"], "pending");
    let order: Value = app.get(&format!("/api/v1/orders/{id}")).await.json().await.unwrap();
    assert_eq!((order["status"].as_str(), order["history"].as_array().unwrap().len()), (Some("pending"), 1));
    // Over gRPC too.
    let request = UpdateOrderStatusRequest { id, status: GrpcStatus::Processing as i32, reason: None };
    let refused = app.grpc().await.update_order_status(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    // Cancelling stays the customer's.
    assert_eq!(app.patch(&path, &json!({"status": "cancelled"})).await.status(), 200);
});

/// Reads server-sent events from `response` until `done` says so (or 15 s pass).
pub(crate) async fn read_events(
    response: reqwest::Response,
    done: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done(&events) {
        let chunk = tokio::time::timeout_at(deadline, stream.next()).await.expect("events in time");
        buffer.push_str(std::str::from_utf8(&chunk.expect("the stream stays open").unwrap()).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut name, mut data) = (String::new(), String::new());
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim());
                }
            }
            if !name.is_empty() {
                events.push((name, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

on_both_backends!(status_changes_stream_to_event_clients, |app| {
    let mug = app.product("MUG", 1250, 10).await;
    let all = app.client.get(app.url("/api/v1/events")).send().await.unwrap();
    assert_eq!(all.headers()["content-type"], "text/event-stream");
    let id = app.place(&[(mug, 1)], json!({})).await;
    let one = app.client.get(app.url(&format!("/api/v1/orders/{id}/events"))).send().await.unwrap();
    assert_eq!(one.status(), 200);
    // A worker starts once both streams follow the order: it takes and decides it, then it is shipped by hand.
    let fulfillment = &app.service.fulfillment;
    let workers = Workers::start(Worker::new(fulfillment.clone(), fulfillment.queue().clone(), fast_fulfillment(1)), 1);
    app.wait_for_status(id, "fulfilled", Duration::from_secs(15)).await;
    workers.drain(Duration::from_secs(5)).await;
    let moved = app.patch(&format!("/api/v1/orders/{id}/status"), &json!({"status": "shipped"})).await;
    assert_eq!(moved.status(), 200);
    let events = read_events(one, |events| events.len() >= 4).await;
    assert_eq!(events[0], ("OrderState".to_owned(), json!({"order_id": id, "status": "pending", "version": 1})));
    let changes: Vec<(&str, &Value, &Value)> =
        events[1..].iter().map(|(name, event)| (name.as_str(), &event["from"], &event["to"])).collect();
    assert_eq!(
        changes,
        vec![
            ("OrderStatusChanged", &json!("pending"), &json!("processing")),
            ("OrderStatusChanged", &json!("processing"), &json!("fulfilled")),
            ("OrderStatusChanged", &json!("fulfilled"), &json!("shipped")),
        ]
    );
    assert!(events[1..].iter().all(|(_, event)| event["order_id"] == id));
    let versions: Vec<i64> = events[1..].iter().map(|(_, event)| event["version"].as_i64().unwrap()).collect();
    assert_eq!(versions, [2, 3, 4]);
    let everything = read_events(all, |events| events.len() >= 4).await;
    assert_eq!(everything[0].0, "OrderCreated");
    assert_eq!(everything[0].1["order_id"], id);

    let missing = app.get("/api/v1/orders/999999/events").await;
    crate::helpers::problem(missing, 404).await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_events_reach_redis_in_the_seed_format() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let (mug, tea) = (app.product("MUG", 1250, 10).await, app.product("TEA", 990, 10).await);
    let response = app
        .client
        .post(app.url("/api/v1/orders"))
        .header("x-correlation-id", "wire-format-1")
        .json(&json!({"user_id": 7, "items": [{"product_id": mug, "quantity": 2}, {"product_id": tea, "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let mut redis = app.redis().await;
    let queue = format!("{}fulfillment_queue", app.namespace);
    let mut jobs: Vec<String> = Vec::new();
    for _ in 0..100 {
        jobs = redis::cmd("LRANGE").arg(&queue).arg(0).arg(-1).query_async(&mut redis).await.unwrap();
        if !jobs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(jobs.len(), 1, "one job, relayed from the outbox");
    let job: Value = serde_json::from_str(&jobs[0]).unwrap();
    assert_eq!(job["order_id"], id);
    assert_eq!(job["product_id"], mug, "the first line, as in the seeds' single-line format");
    assert_eq!(job["quantity"], 2);
    assert_eq!(job["correlation_id"], "wire-format-1");
    assert!(chrono::DateTime::parse_from_rfc3339(job["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(job["job_id"].as_str().unwrap().len(), 36);
    assert_eq!(job["items"], json!([{"product_id": mug, "quantity": 2}, {"product_id": tea, "quantity": 1}]));

    let stream = format!("{}order_events", app.namespace);
    let entries: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg(&stream).arg("-").arg("+").query_async(&mut redis).await.unwrap();
    let event: Value = serde_json::from_str(&entries.last().expect("the OrderCreated event").1[0].1).unwrap();
    assert_eq!((event["type"].as_str(), event["order_id"].as_i64()), (Some("OrderCreated"), Some(id)));
    assert_eq!(event["correlation_id"], "wire-format-1");
}
