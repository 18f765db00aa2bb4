//! The gRPC API through a generated tonic client, on both backends: every
//! RPC, every error code with its `google.rpc` details, correlation ids,
//! idempotency, deadlines, watch streams through fulfillment, and health.

use std::time::{Duration, Instant};

use futures::StreamExt;
use host::grpc::proto::order_event::Type;
use host::grpc::proto::{
    CreateOrderRequest, GetOrderRequest, LineRequest, ListOrdersRequest, OrderStatus, UpdateOrderStatusRequest,
    WatchOrderRequest, WatchOrdersRequest,
};
use host::runtime::Slot;
use serde_json::{Value, json};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

use crate::helpers::{Backend, Options, TestApp, fast_fulfillment, logs_of, wasm};
use crate::on_both_backends;

fn order_of(user_id: u64, lines: &[(i64, u32)]) -> CreateOrderRequest {
    CreateOrderRequest {
        user_id: Some(user_id),
        items: lines.iter().map(|&(product_id, quantity)| LineRequest { product_id, quantity }).collect(),
        ..CreateOrderRequest::default()
    }
}

/// A request carrying `metadata` pairs.
fn with<T>(message: T, metadata: &[(&'static str, &str)]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for (key, value) in metadata {
        request.metadata_mut().insert(*key, MetadataValue::try_from(*value).unwrap());
    }
    request
}

on_both_backends!(orders_are_placed_read_listed_and_moved_over_grpc, |app| {
    let (mug, tea) = (app.product("MUG", 1250, 10).await, app.product("TEA", 990, 10).await);
    let mut client = app.grpc().await;
    let placed = client.create_order(order_of(7, &[(mug, 2), (tea, 1)])).await.unwrap().into_inner();
    assert_eq!(placed.status(), OrderStatus::Pending);
    assert_eq!(placed.items.iter().map(|line| line.line_total).collect::<Vec<_>>(), [2500, 990]);
    assert_eq!(placed.total, placed.subtotal - placed.discount + placed.tax + placed.shipping);
    assert_eq!(placed.components.iter().map(|c| c.slot.as_str()).collect::<Vec<_>>(), ["validation", "pricing"]);
    assert_eq!((app.stock(mug).await, app.stock(tea).await), (8, 9), "the stock was taken");

    // The same order over REST and over gRPC.
    let rest: Value = app.get(&format!("/api/v1/orders/{}", placed.id)).await.json().await.unwrap();
    assert_eq!(rest["total"], placed.total);
    assert_eq!(rest["priced_by"], placed.priced_by.as_str());
    let fetched = client.get_order(GetOrderRequest { id: placed.id }).await.unwrap().into_inner();
    assert_eq!(fetched, placed, "GetOrder answers what CreateOrder answered");

    // The seeds' single-line shorthand.
    let shorthand =
        CreateOrderRequest { user_id: Some(8), product_id: Some(tea), quantity: Some(3), ..Default::default() };
    let second = client.create_order(shorthand).await.unwrap().into_inner();
    assert_eq!((second.items.len(), second.items[0].quantity), (1, 3));

    let page = ListOrdersRequest { page_size: 1, ..Default::default() };
    let first_page = client.list_orders(page.clone()).await.unwrap().into_inner();
    assert_eq!(first_page.orders.iter().map(|o| o.id).collect::<Vec<_>>(), [second.id], "newest first");
    let next = ListOrdersRequest { page_token: first_page.next_page_token, ..page };
    let second_page = client.list_orders(next).await.unwrap().into_inner();
    assert_eq!(second_page.orders.iter().map(|o| o.id).collect::<Vec<_>>(), [placed.id]);
    let mine = ListOrdersRequest { user_id: Some(8), ..Default::default() };
    assert_eq!(client.list_orders(mine).await.unwrap().into_inner().orders.len(), 1);

    let cancel = UpdateOrderStatusRequest {
        id: placed.id,
        status: OrderStatus::Cancelled.into(),
        reason: Some("changed my mind".into()),
    };
    let cancelled = client.update_order_status(cancel).await.unwrap().into_inner();
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(cancelled.status_reason.as_deref(), Some("changed my mind"));
    assert_eq!((app.stock(mug).await, app.stock(tea).await), (10, 7), "cancelling returned the stock");
    // Reads follow the change (the decoded copy is never older than the cache).
    let read_again = client.get_order(GetOrderRequest { id: placed.id }).await.unwrap().into_inner();
    assert_eq!((read_again.status(), read_again.version), (OrderStatus::Cancelled, cancelled.version));
});

on_both_backends!(every_refusal_has_its_code_and_details, |app| {
    let scarce = app.product("SCARCE", 500, 1).await;
    let mut client = app.grpc().await;

    let refused = client.create_order(order_of(7, &[(scarce, 0)])).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let bad_request = refused.get_details_bad_request().expect("BadRequest details");
    let fields: Vec<&str> = bad_request.field_violations.iter().map(|v| v.field.as_str()).collect();
    assert!(fields.iter().any(|field| field.starts_with("items/0")), "{fields:?}");
    assert!(bad_request.field_violations[0].description.contains("quantity-out-of-range"), "{bad_request:?}");
    assert_eq!(refused.get_details_error_info().unwrap().reason, "validation-failed");

    let neither = client.create_order(CreateOrderRequest { user_id: Some(7), ..Default::default() }).await.unwrap_err();
    assert_eq!(neither.code(), Code::InvalidArgument);
    assert_eq!(neither.get_details_bad_request().unwrap().field_violations[0].field, "items");

    let missing = client.get_order(GetOrderRequest { id: 999_999 }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains("999999"), "{missing:?}");
    let resource = missing.get_details_resource_info().expect("ResourceInfo details");
    assert_eq!((resource.resource_type.as_str(), resource.resource_name.as_str()), ("order", "orders/999999"));
    let unknown_product = client.create_order(order_of(7, &[(777_777, 1)])).await.unwrap_err();
    assert_eq!(unknown_product.code(), Code::NotFound);
    let resource = unknown_product.get_details_resource_info().unwrap();
    assert_eq!((resource.resource_type.as_str(), resource.resource_name.as_str()), ("product", "products/777777"));

    let short = client.create_order(order_of(7, &[(scarce, 2)])).await.unwrap_err();
    assert_eq!(short.code(), Code::FailedPrecondition, "{short:?}");
    let failure = short.get_details_precondition_failure().expect("PreconditionFailure details");
    assert_eq!(failure.violations[0].r#type, "INSUFFICIENT_STOCK");
    assert_eq!(failure.violations[0].subject, format!("products/{scarce}"));
    assert_eq!(app.stock(scarce).await, 1);

    let placed = client.create_order(order_of(7, &[(scarce, 1)])).await.unwrap().into_inner();
    let deliver = UpdateOrderStatusRequest { id: placed.id, status: OrderStatus::Delivered.into(), reason: None };
    let illegal = client.update_order_status(deliver).await.unwrap_err();
    assert_eq!(illegal.code(), Code::FailedPrecondition);
    let failure = illegal.get_details_precondition_failure().unwrap();
    assert_eq!(failure.violations[0].r#type, "ILLEGAL_TRANSITION");
    assert_eq!(failure.violations[0].subject, "pending -> delivered");
    let unnamed = UpdateOrderStatusRequest { id: placed.id, status: 0, reason: None };
    assert_eq!(client.update_order_status(unnamed).await.unwrap_err().code(), Code::InvalidArgument);
    let bad_page = ListOrdersRequest { page_token: "not-a-token".into(), ..Default::default() };
    let bad_page = client.list_orders(bad_page).await.unwrap_err();
    assert_eq!(bad_page.get_details_bad_request().unwrap().field_violations[0].field, "page_token");
    assert_eq!(app.order_count().await, 1, "no refusal stored anything");
});

on_both_backends!(the_idempotency_key_replays_and_refuses_like_rest, |app| {
    let mug = app.product("MUG", 1250, 10).await;
    let mut client = app.grpc().await;
    let first = client.create_order(with(order_of(7, &[(mug, 2)]), &[("idempotency-key", "grpc-k1")])).await.unwrap();
    assert!(first.metadata().get("idempotent-replayed").is_none());
    let again = client.create_order(with(order_of(7, &[(mug, 2)]), &[("idempotency-key", "grpc-k1")])).await.unwrap();
    assert_eq!(again.metadata().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again.into_inner(), first.into_inner(), "the first answer again");
    assert_eq!(app.stock(mug).await, 8, "placed once");

    let other = client.create_order(with(order_of(7, &[(mug, 3)]), &[("idempotency-key", "grpc-k1")])).await;
    let other = other.unwrap_err();
    assert_eq!(other.code(), Code::AlreadyExists);
    assert_eq!(other.get_details_error_info().unwrap().reason, "idempotency-key-reused");
    let bad_key = client.create_order(with(order_of(7, &[(mug, 1)]), &[("idempotency-key", "has space")])).await;
    assert_eq!(bad_key.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(app.stock(mug).await, 8);

    // One key, one order, whichever front end the retry goes through.
    let body = serde_json::json!({"user_id": 9, "product_id": mug, "quantity": 1});
    let rest = app.client.post(app.url("/api/v1/orders")).header("idempotency-key", "both-ways").json(&body).send();
    let rest: Value = rest.await.unwrap().json().await.unwrap();
    let shorthand =
        CreateOrderRequest { user_id: Some(9), product_id: Some(mug), quantity: Some(1), ..Default::default() };
    let over_grpc = client.create_order(with(shorthand, &[("idempotency-key", "both-ways")])).await.unwrap();
    assert_eq!(over_grpc.metadata().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(over_grpc.into_inner().id, rest["id"].as_i64().unwrap());
    assert_eq!(app.stock(mug).await, 7, "placed once");
});

on_both_backends!(a_correlation_id_reaches_the_answer_the_logs_and_the_outbox, |app| {
    let mug = app.product("MUG", 1250, 10).await;
    let mut client = app.grpc().await;
    let correlation_id = format!("grpc-trace-{}", uuid::Uuid::new_v4().simple());
    let request = with(order_of(7, &[(mug, 1)]), &[("x-correlation-id", &correlation_id)]);
    let response = client.create_order(request).await.unwrap();
    assert_eq!(response.metadata().get("x-correlation-id").unwrap(), correlation_id.as_str());
    let order = response.into_inner();
    assert_eq!(order.history[0].correlation_id, correlation_id);
    let lines = logs_of(&correlation_id);
    assert!(lines.iter().any(|line| line["message"] == "order placed"), "{lines:?}");
    assert!(lines.iter().any(|line| line["target"] == "component"), "the components' own lines carry it too");
    for message in app.service.store.outbox_of(order.id).await.unwrap() {
        let payload: Value = serde_json::from_str(&message.payload).unwrap();
        assert_eq!(payload["correlation_id"], correlation_id.as_str(), "{payload}");
    }
    // Without one (or with one that is not sane), the call gets a new id.
    let response = client.get_order(with(GetOrderRequest { id: order.id }, &[("x-correlation-id", "two words")])).await;
    let echoed = response.unwrap().metadata().get("x-correlation-id").unwrap().to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "a generated id: {echoed}");
});

on_both_backends!(
    a_watch_follows_an_order_through_fulfillment,
    options = Options { fulfillment: Some(fast_fulfillment(1)), ..Options::default() },
    |app| {
        let mug = app.product("MUG", 1250, 10).await;
        let mut client = app.grpc().await;
        let mut everything = client.watch_orders(WatchOrdersRequest {}).await.unwrap().into_inner();
        let placed = client.create_order(order_of(7, &[(mug, 1)])).await.unwrap().into_inner();
        let mut watch = client.watch_order(WatchOrderRequest { id: placed.id }).await.unwrap().into_inner();
        let first = watch.next().await.unwrap().unwrap();
        assert_eq!((first.r#type(), first.order_id), (Type::State, placed.id));
        let mut seen = vec![first.to()];
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.last() != Some(&OrderStatus::Fulfilled) {
            let event = tokio::time::timeout_at(deadline.into(), watch.next()).await.expect("fulfilled in time");
            let event = event.unwrap().unwrap();
            assert_eq!((event.r#type(), event.order_id), (Type::StatusChanged, placed.id));
            assert!(event.version > 1 && !event.event_id.is_empty());
            seen.push(event.to());
        }
        // The state first (pending, or further if the worker was quick), then every change after it.
        let from = seen.iter().position(|status| *status == OrderStatus::Processing).map_or(seen.len() - 1, |i| i);
        assert!(seen[..from].iter().all(|status| *status == OrderStatus::Pending), "{seen:?}");
        assert_eq!(seen[from..].last(), Some(&OrderStatus::Fulfilled), "{seen:?}");
        let created = tokio::time::timeout(Duration::from_secs(10), everything.next()).await.unwrap().unwrap().unwrap();
        assert_eq!((created.r#type(), created.order_id), (Type::Created, placed.id));
    }
);

/// The sleeping fixture in the pricing slot, allowed to sleep 10 s.
fn slow_pricing() -> Options {
    Options {
        components: vec![(Slot::Pricing, "fixtures/sleep")],
        configs: vec![(Slot::Pricing, "[limits]\ndeadline_ms = 10000\n".into())],
        ..Options::default()
    }
}

on_both_backends!(a_client_deadline_stops_the_work_and_frees_the_key, options = slow_pricing(), |app| {
    let mug = app.product("MUG", 1250, 5).await;
    let mut client = app.grpc().await;
    let mut request = with(order_of(7, &[(mug, 1)]), &[("idempotency-key", "in-a-hurry")]);
    request.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let stopped = client.create_order(request).await.unwrap_err();
    assert!(matches!(stopped.code(), Code::DeadlineExceeded | Code::Cancelled), "{stopped:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "answered after {:?}", started.elapsed());
    assert_eq!((app.stock(mug).await, app.order_count().await), (5, 0), "nothing was stored");
    // The key was released with the dropped call: once pricing answers again,
    // a retry with the same key places the order at once, instead of waiting
    // on a request that is gone and then being refused as still running.
    let pricing = app.service.rules.runtime().load_file(Slot::Pricing, &wasm("pricing")).await.unwrap();
    app.service.rules.slots().install(pricing);
    let mut retry = with(order_of(7, &[(mug, 1)]), &[("idempotency-key", "in-a-hurry")]);
    retry.set_timeout(Duration::from_secs(5));
    let retried = Instant::now();
    let placed = client.create_order(retry).await.expect("the retry places the order").into_inner();
    assert!(retried.elapsed() < Duration::from_secs(3), "waited {:?} for the key", retried.elapsed());
    assert_eq!((app.stock(mug).await, app.order_count().await, placed.items[0].quantity), (4, 1, 1));
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_not_serving_while_a_slot_is_empty() {
    let empty = TestApp::spawn_with(Backend::Embedded, Options { without: Some(Slot::Pricing), ..Options::default() });
    let (empty, full) = (empty.await, TestApp::spawn(Backend::Embedded).await);
    for (app, expected) in [(&empty, ServingStatus::NotServing), (&full, ServingStatus::Serving)] {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.grpc_address)).unwrap();
        let mut health = HealthClient::new(channel.connect().await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(5);
        for service in ["", "orderly.v1.OrderService"] {
            loop {
                let request = HealthCheckRequest { service: service.into() };
                let status = health.check(request).await.map(|answer| answer.into_inner().status());
                if status.as_ref().ok() == Some(&expected) {
                    break;
                }
                assert!(Instant::now() < deadline, "{service:?}: {status:?}, expected {expected:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // The empty slot is the only reason: an order needs pricing and is refused.
    let mug = empty.product("MUG", 1250, 5).await;
    let refused = empty.grpc().await.create_order(order_of(7, &[(mug, 1)])).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(refused.get_details_error_info().unwrap().reason, "rule-unavailable");
    assert_eq!(refused.get_details_retry_info().unwrap().retry_delay, Some(Duration::from_secs(1)));
    assert!(!refused.message().contains("empty"), "no internals: {}", refused.message());
}

on_both_backends!(a_pricing_violation_is_invalid_argument_naming_the_field, |app| {
    let mug = app.product("MUG", 1250, 5).await;
    let mut request = order_of(7, &[(mug, 1)]);
    request.attributes.insert("promo_code".into(), "NO-SUCH-CODE".into());
    let refused = app.grpc().await.create_order(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(refused.get_details_error_info().unwrap().reason, "validation-failed");
    let violations = refused.get_details_bad_request().expect("BadRequest").field_violations;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].field, "attributes/promo_code");
    assert!(violations[0].description.starts_with("unknown-promo-code: "), "{violations:?}");
    assert_eq!((app.stock(mug).await, app.order_count().await), (5, 0), "nothing stored");
});

fn slow_pricing_within(request_timeout_ms: u64) -> Options {
    Options { request_timeout_ms: Some(request_timeout_ms), ..slow_pricing() }
}

on_both_backends!(a_key_still_being_placed_is_aborted_with_a_retry_delay, options = slow_pricing_within(4000), |app| {
    let mug = app.product("MUG", 1250, 5).await;
    let mut first = app.grpc().await;
    let holding = tokio::spawn(async move {
        first.create_order(with(order_of(7, &[(mug, 1)]), &[("idempotency-key", "held")])).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The same key meanwhile: it waits three quarters of the time limit, then gives up.
    let mut second = app.grpc().await;
    let refused =
        second.create_order(with(order_of(7, &[(mug, 1)]), &[("idempotency-key", "held")])).await.unwrap_err();
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    assert_eq!(refused.get_details_error_info().unwrap().reason, "idempotency-key-in-progress");
    assert_eq!(refused.get_details_retry_info().unwrap().retry_delay, Some(Duration::from_secs(1)));
    // The first stops at the time limit; nothing was stored by either.
    let first = holding.await.unwrap().unwrap_err();
    assert!(matches!(first.code(), Code::DeadlineExceeded | Code::Cancelled), "{first:?}");
    assert_eq!((app.stock(mug).await, app.order_count().await), (5, 0));
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_fault_is_unavailable_with_a_retry_delay() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let mug = app.product("MUG", 1250, 10).await;
    // Another process holds the file's write lock past SQLite's 5 s busy timeout.
    let file = rusqlite::Connection::open(app.sqlite_file()).unwrap();
    file.execute_batch("BEGIN IMMEDIATE").unwrap();
    let refused = app.grpc().await.create_order(order_of(7, &[(mug, 1)])).await.unwrap_err();
    file.execute_batch("ROLLBACK").unwrap();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(refused.get_details_error_info().unwrap().reason, "service-unavailable");
    assert_eq!(refused.get_details_retry_info().unwrap().retry_delay, Some(Duration::from_secs(1)));
    assert!(!refused.message().to_lowercase().contains("sqlite"), "no internals: {}", refused.message());
    assert!(app.grpc().await.create_order(order_of(7, &[(mug, 1)])).await.is_ok(), "served again once released");
    assert_eq!((app.order_count().await, app.stock(mug).await), (1, 9));
}

on_both_backends!(an_order_whose_answer_is_larger_than_its_request_is_answered, |app| {
    // Names and SKUs at their longest, in four-byte characters: each line of
    // the request comes back as about 1.1 KB, past the 64 KiB request cap.
    let mut lines = Vec::new();
    for n in 0..100 {
        let sku = format!("{n:02}{}", "\u{1F600}".repeat(62));
        let product = json!({"sku": sku, "name": "\u{1F600}".repeat(200), "price": 100, "stock": 5});
        let created = app.post("/api/v1/products", &product).await;
        assert_eq!(created.status(), 201);
        lines.push((created.json::<Value>().await.unwrap()["id"].as_i64().unwrap(), 1));
    }
    let request = order_of(7, &lines);
    assert!(prost::Message::encoded_len(&request) < 64 * 1024);
    let placed = app.grpc().await.create_order(request).await.expect("stored and answered");
    let placed = placed.into_inner();
    assert!(prost::Message::encoded_len(&placed) > 64 * 1024, "the answer outgrew the request cap");
    assert_eq!((placed.items.len(), app.order_count().await), (100, 1));
    let read = app.grpc().await.get_order(GetOrderRequest { id: placed.id }).await.expect("read back whole");
    assert_eq!(read.into_inner().items.len(), 100);
});
