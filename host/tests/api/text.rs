//! Text the database could not store, or that no name or reason means to
//! carry: control characters (NUL first) are refused with a 422 naming the
//! field, over REST and gRPC, on both backends, and nothing is stored; a
//! component that answers such text is a misbehaving component, not a 500.

use std::time::Duration;

use host::grpc::proto::{CreateOrderRequest, LineRequest, OrderStatus, UpdateOrderStatusRequest};
use host::runtime::Slot;
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{Options, TestApp, fast_fulfillment, problem};
use crate::on_both_backends;

/// The fields a 422 problem names, with their codes.
async fn refused_fields(response: reqwest::Response) -> Vec<(String, String)> {
    let body = problem(response, 422).await;
    body["violations"]
        .as_array()
        .unwrap_or_else(|| panic!("no violations in {body}"))
        .iter()
        .map(|v| (v["field"].as_str().unwrap().to_owned(), v["code"].as_str().unwrap().to_owned()))
        .collect()
}

fn control(field: &str) -> (String, String) {
    (field.to_owned(), "control-character".to_owned())
}

async fn product_count(app: &TestApp) -> usize {
    let page: Value = app.get("/api/v1/products?limit=100").await.json().await.unwrap();
    page["items"].as_array().unwrap().len()
}

on_both_backends!(products_with_control_characters_are_refused, |app| {
    let before = product_count(&app).await;
    let nul_sku = app.post("/api/v1/products", &json!({"sku": "MUG\u{0}", "name": "Mug", "price": 1})).await;
    assert_eq!(refused_fields(nul_sku).await, [control("sku")]);
    let escape_name = app.post("/api/v1/products", &json!({"sku": "MUG", "name": "Mug\u{1b}[31m", "price": 1})).await;
    assert_eq!(refused_fields(escape_name).await, [control("name")]);
    let line_break = app.post("/api/v1/products", &json!({"sku": "MUG", "name": "Blue\nmug", "price": 1})).await;
    assert_eq!(refused_fields(line_break).await, [control("name")], "a name is one line");
    assert_eq!(product_count(&app).await, before, "nothing stored");

    let mug = app.product("MUG", 100, 1).await;
    let renamed = app.patch(&format!("/api/v1/products/{mug}"), &json!({"name": "\u{0}"})).await;
    assert_eq!(refused_fields(renamed).await, [control("name")]);
    let kept: Value = app.get(&format!("/api/v1/products/{mug}")).await.json().await.unwrap();
    assert_eq!(kept["name"], "MUG", "the refused change changed nothing: {kept}");

    // Any printable text, in any script, is stored and read back as sent.
    let named =
        app.post("/api/v1/products", &json!({"sku": "CAFÉ-東京", "name": "Café ☕ \u{200b}", "price": 1})).await;
    assert_eq!(named.status(), 201);
    let named: Value = named.json().await.unwrap();
    let read: Value = app.get(&format!("/api/v1/products/{}", named["id"])).await.json().await.unwrap();
    assert_eq!((read["sku"].as_str(), read["name"].as_str()), (Some("CAFÉ-東京"), Some("Café ☕ \u{200b}")));
});

on_both_backends!(orders_with_control_characters_are_refused, |app| {
    let mug = app.product("MUG", 100, 5).await;
    let order = |attributes: Value, currency: &str| json!({"user_id": 7, "currency": currency, "items": [{"product_id": mug, "quantity": 1}], "attributes": attributes});
    let nul_value = app.post("/api/v1/orders", &order(json!({"gift": "wrap\u{0}"}), "EUR")).await;
    assert_eq!(refused_fields(nul_value).await, [control("attributes/gift")]);
    let bad_key = app.post("/api/v1/orders", &order(json!({"gi\u{7f}ft": "yes"}), "EUR")).await;
    assert_eq!(refused_fields(bad_key).await[0], control("attributes"));
    let bad_currency = app.post("/api/v1/orders", &order(json!({}), "EU\u{0}")).await;
    assert_eq!(refused_fields(bad_currency).await, [control("currency")]);
    assert_eq!((app.order_count().await, app.stock(mug).await), (0, 5), "nothing stored, no stock taken");

    // Free text keeps its tabs and line breaks.
    let note = "ring twice\r\nthen wait\there";
    let placed = app.post("/api/v1/orders", &order(json!({"note": note}), "EUR")).await;
    assert_eq!(placed.status(), 201);
    let placed: Value = placed.json().await.unwrap();
    let read: Value = app.get(&format!("/api/v1/orders/{}", placed["id"])).await.json().await.unwrap();
    assert_eq!(read["attributes"]["note"], note);
});

on_both_backends!(status_reasons_with_control_characters_are_refused, |app| {
    let mug = app.product("MUG", 100, 5).await;
    let id = app.place(&[(mug, 1)], json!({})).await;
    let path = format!("/api/v1/orders/{id}/status");
    let refused = app.patch(&path, &json!({"status": "cancelled", "reason": "oops\u{0}"})).await;
    assert_eq!(refused_fields(refused).await, [control("reason")]);
    let order: Value = app.get(&format!("/api/v1/orders/{id}")).await.json().await.unwrap();
    assert_eq!((order["status"].as_str(), order["history"].as_array().unwrap().len()), (Some("pending"), 1));
    assert_eq!(app.stock(mug).await, 4, "not cancelled: the stock is still taken");

    let mut client = app.grpc().await;
    let over_grpc =
        UpdateOrderStatusRequest { id, status: OrderStatus::Cancelled.into(), reason: Some("\u{0}".into()) };
    let status = client.update_order_status(over_grpc).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "reason");

    let cancelled = app.patch(&path, &json!({"status": "cancelled", "reason": "asked twice:\nno longer wanted"})).await;
    assert_eq!(cancelled.status(), 200);
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["status_reason"], "asked twice:\nno longer wanted");
});

on_both_backends!(grpc_orders_with_control_characters_are_refused, |app| {
    let mug = app.product("MUG", 100, 5).await;
    let mut client = app.grpc().await;
    let request = CreateOrderRequest {
        user_id: Some(7),
        items: vec![LineRequest { product_id: mug, quantity: 1 }],
        attributes: [("gift".to_owned(), "wrap\u{0}".to_owned())].into(),
        ..Default::default()
    };
    let status = client.create_order(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.get_details_bad_request().unwrap().field_violations[0].field, "attributes/gift");
    assert_eq!((app.order_count().await, app.stock(mug).await), (0, 5));
});

fn with_pricing(component: &'static str) -> Options {
    Options { components: vec![(Slot::Pricing, component)], ..Options::default() }
}

on_both_backends!(
    a_quote_note_holding_nul_is_a_failed_component,
    options = with_pricing("fixtures/malformed"),
    |app| {
        let mug = app.product("MUG", 100, 5).await;
        // User 3's quote adds up but carries a note with a NUL byte.
        let response = app.post("/api/v1/orders", &json!({"user_id": 3, "product_id": mug, "quantity": 1})).await;
        let body = problem(response, 503).await;
        assert!(!body["detail"].as_str().unwrap().contains('\u{0}'), "{body}");
        assert_eq!((app.order_count().await, app.stock(mug).await), (0, 5), "nothing stored, no stock taken");
    }
);

fn with_nul_policy() -> Options {
    Options {
        fulfillment: Some(fast_fulfillment(1)),
        components: vec![(Slot::Fulfillment, "fixtures/trap-policy")],
        ..Options::default()
    }
}

on_both_backends!(a_hold_reason_holding_nul_is_the_policy_failing, options = with_nul_policy(), |app| {
    let mug = app.product("MUG", 100, 5).await;
    let doomed = app.place(&[(mug, 1)], json!({"nul": "yes"})).await;
    let fine = app.place_for(8, &[(mug, 1)], json!({})).await;
    app.wait_for_status(fine, "fulfilled", Duration::from_secs(20)).await;
    // Retried as the policy's own failure, then given up on: held with the
    // host's reason, never with the policy's unstorable one.
    let held = app.wait_for_status(doomed, "on_hold", Duration::from_secs(20)).await;
    let reason = held["status_reason"].as_str().unwrap();
    assert!(reason.contains("given up") && reason.contains("control character"), "{held}");
    assert!(!reason.contains('\u{0}'));
});
