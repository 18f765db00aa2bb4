//! Placing, reading, listing and moving orders.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Options, fast_fulfillment, problem};
use crate::on_both_backends;

fn with_workers(workers: usize) -> Options {
    Options { fulfillment: Some(fast_fulfillment(workers)), ..Options::default() }
}

on_both_backends!(a_three_line_order_is_validated_priced_and_stored, |app| {
    let (mug, tea, pot) =
        (app.product("MUG", 1250, 10).await, app.product("TEA", 990, 10).await, app.product("POT", 4500, 10).await);
    let response = app.order(&[(mug, 2), (tea, 1), (pot, 3)]).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/orders/{}", order["id"]));
    assert_eq!(order["status"], "pending");
    assert_eq!(order["currency"], "EUR");
    let totals: Vec<i64> =
        order["items"].as_array().unwrap().iter().map(|l| l["line_total"].as_i64().unwrap()).collect();
    assert_eq!(totals, [2500, 990, 13500]);
    assert_eq!(order["items"][0]["name"], "MUG", "the name is snapshotted");
    let field = |name: &str| order[name].as_i64().unwrap();
    assert_eq!(field("subtotal"), 16990);
    assert_eq!(field("total"), field("subtotal") - field("discount") + field("tax") + field("shipping"));
    assert_eq!(order["validated_by"], "order-validation@0.1.0");
    assert_eq!(order["priced_by"], "pricing@0.1.0");
    let slots: Vec<&str> =
        order["components"].as_array().unwrap().iter().map(|c| c["slot"].as_str().unwrap()).collect();
    assert_eq!(slots, ["validation", "pricing"]);
    assert_eq!(order["components"][1]["digest"].as_str().unwrap().len(), 64, "a sha256");
    assert_eq!(order["history"].as_array().unwrap().len(), 1);

    let fetched: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(fetched, order, "GET answers what POST answered");
    assert_eq!((app.stock(mug).await, app.stock(tea).await, app.stock(pot).await), (8, 9, 7));
});

on_both_backends!(the_single_line_shorthand_places_an_order, |app| {
    let id = app.product("ONE", 300, 5).await;
    let response = app.post("/api/v1/orders", &json!({"user_id": 3, "product_id": id, "quantity": 2})).await;
    assert_eq!(response.status(), 201);
    let order: Value = response.json().await.unwrap();
    assert_eq!((order["user_id"].as_i64(), order["items"][0]["quantity"].as_i64()), (Some(3), Some(2)));
});

on_both_backends!(listing_filters_and_pages, |app| {
    let id = app.product("LIST", 100, 100).await;
    let mut placed = Vec::new();
    for user in [1, 2, 1, 1] {
        let response = app.post("/api/v1/orders", &json!({"user_id": user, "product_id": id, "quantity": 1})).await;
        placed.push(response.json::<Value>().await.unwrap()["id"].as_i64().unwrap());
    }
    app.patch(&format!("/api/v1/orders/{}/status", placed[3]), &json!({"status": "cancelled"})).await;

    let mut seen = Vec::new();
    let mut path = "/api/v1/orders?user_id=1&limit=2".to_owned();
    loop {
        let page: Value = app.get(&path).await.json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            assert_eq!(item["user_id"], 1);
            assert_eq!(item["items"].as_array().unwrap().len(), 1, "lines are listed");
            seen.push(item["id"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/orders?user_id=1&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, [placed[3], placed[2], placed[0]], "newest first");

    let cancelled: Value = app.get("/api/v1/orders?status=cancelled").await.json().await.unwrap();
    let ids: Vec<i64> = cancelled["items"].as_array().unwrap().iter().map(|o| o["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [placed[3]]);
    let largest: Value = app.get("/api/v1/orders?limit=100").await.json().await.unwrap();
    assert_eq!(largest["items"].as_array().unwrap().len(), 4);
    // The document's bounds are the server's: above the maximum is refused, not capped.
    problem(app.get("/api/v1/orders?limit=101").await, 400).await;
    problem(app.get("/api/v1/orders?status=confirmed").await, 400).await;
    problem(app.get("/api/v1/orders?limit=-1").await, 400).await;
    problem(app.get("/api/v1/orders?user_id=abc").await, 400).await;
});

on_both_backends!(the_lifecycle_follows_the_state_machine, options = with_workers(1), |app| {
    let id = app.product("LIFE", 100, 10).await;
    let order: Value = app.order(&[(id, 1)]).await.json().await.unwrap();
    let path = format!("/api/v1/orders/{}/status", order["id"]);
    // A worker takes the order and its policy fulfils it; the rest is done by hand.
    app.wait_for_status(order["id"].as_i64().unwrap(), "fulfilled", Duration::from_secs(15)).await;
    for status in ["shipped", "delivered"] {
        let response = app.patch(&path, &json!({"status": status, "reason": format!("to {status}")})).await;
        assert_eq!(response.status(), 200, "-> {status}");
        assert_eq!(response.json::<Value>().await.unwrap()["status"], status);
    }
    let refused = problem(app.patch(&path, &json!({"status": "cancelled"})).await, 409).await;
    assert_eq!(refused["current_status"], "delivered");
    assert_eq!(refused["requested_status"], "cancelled");

    let detail: Value = app.get(&format!("/api/v1/orders/{}", order["id"])).await.json().await.unwrap();
    let history: Vec<(Value, Value)> =
        detail["history"].as_array().unwrap().iter().map(|h| (h["from"].clone(), h["to"].clone())).collect();
    assert_eq!(
        history,
        [
            (Value::Null, json!("pending")),
            (json!("pending"), json!("processing")),
            (json!("processing"), json!("fulfilled")),
            (json!("fulfilled"), json!("shipped")),
            (json!("shipped"), json!("delivered")),
        ]
    );
    assert_eq!(detail["version"], 5);
    assert_eq!(detail["history"][3]["reason"], "to shipped");
});

on_both_backends!(an_illegal_transition_names_the_current_state, |app| {
    let id = app.product("SKIP", 100, 10).await;
    let order: Value = app.order(&[(id, 1)]).await.json().await.unwrap();
    let path = format!("/api/v1/orders/{}/status", order["id"]);
    let refused = problem(app.patch(&path, &json!({"status": "shipped"})).await, 409).await;
    assert_eq!(refused["current_status"], "pending");
    assert_eq!(refused["allowed"], json!(["cancelled"]), "taking an order is fulfillment's move");
    assert!(refused["detail"].as_str().unwrap().contains("pending"));
    problem(app.patch(&path, &json!({"status": "teleported"})).await, 422).await;
    problem(app.patch("/api/v1/orders/424242/status", &json!({"status": "cancelled"})).await, 404).await;
});

on_both_backends!(cancelling_returns_the_stock_once_under_concurrency, |app| {
    let id = app.product("CANCEL", 100, 10).await;
    let order: Value = app.order(&[(id, 4)]).await.json().await.unwrap();
    assert_eq!(app.stock(id).await, 6);
    let path = format!("/api/v1/orders/{}/status", order["id"]);
    let cancel = json!({"status": "cancelled"});
    let attempts = (0..8).map(|_| app.patch(&path, &cancel));
    let statuses: Vec<u16> = futures::future::join_all(attempts).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "exactly one cancel wins: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 7, "{statuses:?}");
    assert_eq!(app.stock(id).await, 10, "the stock came back exactly once");
});
