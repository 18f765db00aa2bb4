//! Who may do what, tried as an attacker would: forged and stale tokens,
//! another user's orders over every way in (REST, SSE, gRPC), another
//! user's idempotency key, a customer re-pricing the catalogue or reaching
//! the admin API, and the per-user rules a named `user_id` used to dodge.

use std::time::Duration;

use futures::StreamExt;
use host::grpc::proto::{
    CreateOrderRequest, GetOrderRequest, LineRequest, ListOrdersRequest, UpdateOrderStatusRequest, WatchOrderRequest,
    WatchOrdersRequest,
};
use host::runtime::Slot;
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;

use crate::fulfillment::read_events;
use crate::helpers::{Options, TEST_SECRET, TestApp, client_with, problem, token};
use crate::on_both_backends;

/// A customer: `sub` is the user id, scope `orders`.
fn customer(user: i64) -> String {
    token(&user.to_string(), "orders")
}

/// A token signed with the tests' secret from arbitrary claims.
fn signed(claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(TEST_SECRET.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Places `quantity` of `product` as `token`'s holder (no `user_id`: its own).
async fn place_as(app: &TestApp, token: &str, product: i64, key: Option<&str>) -> reqwest::Response {
    let mut request = app.client.post(app.url("/api/v1/orders")).bearer_auth(token);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.json(&json!({"product_id": product, "quantity": 1})).send().await.unwrap()
}

on_both_backends!(tokens_that_do_not_verify_are_refused_with_the_reason, |app| {
    let good = json!({"iss": "orderly", "aud": "orderly", "sub": "1", "exp": now() + 300, "scope": "orders"});
    let spoilt = |field: &str, value: Value| {
        let mut claims = good.clone();
        claims[field] = value;
        signed(claims)
    };
    let none_alg = {
        use base64::Engine;
        let part = |value: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
        format!("{}.{}.", part(json!({"alg": "none", "typ": "JWT"})), part(good.clone()))
    };
    let other_secret = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &good,
        &jsonwebtoken::EncodingKey::from_secret(b"another secret of thirty-two bytes or more").unwrap(),
    )
    .unwrap();
    let refused = [
        ("expired", spoilt("exp", json!(now() - 300))),
        ("not yet valid", spoilt("nbf", json!(now() + 300))),
        ("another issuer", spoilt("iss", json!("https://evil.test"))),
        ("another audience", spoilt("aud", json!("another-api"))),
        ("alg none", none_alg),
        ("another key", other_secret),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    let mut grpc_statuses = Vec::new();
    for (case, token) in &refused {
        let answer = app.client.get(app.url("/api/v1/products")).bearer_auth(token).send().await.unwrap();
        let challenge = answer.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Bearer realm=\"orderly\", error=\"invalid_token\""), "{case}: {challenge}");
        let body = problem(answer, 401).await;
        assert_eq!(body["type"], "urn:orderly:problem:invalid-token", "{case}");
        let status = app.grpc_as(token).await.get_order(GetOrderRequest { id: 1 }).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!((info.reason.as_str(), info.domain.as_str()), ("invalid-token", "orderly"), "{case}");
        grpc_statuses.push(status.message().to_owned());
    }
    assert!(grpc_statuses[0].contains("expired"), "{grpc_statuses:?}");
    // No token at all: 401 without an error code (RFC 6750 §3.1); gRPC the same.
    let anonymous = reqwest::Client::new().get(app.url("/api/v1/products")).send().await.unwrap();
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer realm=\"orderly\"");
    assert_eq!(problem(anonymous, 401).await["type"], "urn:orderly:problem:unauthorized");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.grpc_address)).unwrap();
    let mut bare = host::grpc::proto::order_service_client::OrderServiceClient::new(channel.connect().await.unwrap());
    let status = bare.get_order(GetOrderRequest { id: 1 }).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.get_details_error_info().unwrap().reason, "unauthorized");
    // Health stays open; reflection does not.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.connect().await.unwrap());
    assert!(health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.is_ok());
    assert_eq!(reqwest::get(app.url("/health")).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(app.url("/api/v1/openapi.json")).await.unwrap().status(), 200);
});

on_both_backends!(one_customer_cannot_reach_another_customers_orders, |app| {
    let mug = app.product("MUG", 1250, 100).await;
    let (alice, bob) = (customer(1), customer(2));
    let hers: Value = place_as(&app, &alice, mug, None).await.json().await.unwrap();
    let (her_order, her_path) = (hers["id"].as_i64().unwrap(), format!("/api/v1/orders/{}", hers["id"]));
    assert_eq!(hers["user_id"], 1, "placed for the token's subject");
    let his: Value = place_as(&app, &bob, mug, None).await.json().await.unwrap();
    let bob_http = client_with(&bob);

    // Reading: her order is as missing to him as one that does not exist.
    let read = problem(bob_http.get(app.url(&her_path)).send().await.unwrap(), 404).await;
    let missing = problem(bob_http.get(app.url("/api/v1/orders/999999")).send().await.unwrap(), 404).await;
    assert_eq!((read["type"].clone(), read["title"].clone()), (missing["type"].clone(), missing["title"].clone()));
    assert_eq!(client_with(&alice).get(app.url(&her_path)).send().await.unwrap().status(), 200);
    // Listing: his own, whatever he asks for.
    let page: Value = bob_http.get(app.url("/api/v1/orders")).send().await.unwrap().json().await.unwrap();
    let ids: Vec<i64> = page["items"].as_array().unwrap().iter().map(|order| order["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [his["id"].as_i64().unwrap()]);
    problem(bob_http.get(app.url("/api/v1/orders?user_id=1")).send().await.unwrap(), 403).await;
    // Watching: not her order, and not her events.
    problem(bob_http.get(app.url(&format!("{her_path}/events"))).send().await.unwrap(), 404).await;
    let his_feed = bob_http.get(app.url("/api/v1/events")).send().await.unwrap();
    assert_eq!(his_feed.status(), 200);
    place_as(&app, &alice, mug, None).await;
    let his_next: Value = place_as(&app, &bob, mug, None).await.json().await.unwrap();
    let seen = read_events(his_feed, |events| !events.is_empty()).await;
    assert_eq!(seen[0].1["order_id"], his_next["id"], "his own order's event, not hers placed before it: {seen:?}");
    // Changing: a customer moves no order (status changes are the back office's).
    let cancel = bob_http.patch(app.url(&format!("{her_path}/status"))).json(&json!({"status": "cancelled"}));
    let body = problem(cancel.send().await.unwrap(), 403).await;
    assert_eq!(body["required_scope"], "orders:all");
    let own_cancel =
        client_with(&alice).patch(app.url(&format!("{her_path}/status"))).json(&json!({"status": "cancelled"}));
    problem(own_cancel.send().await.unwrap(), 403).await;
    // Placing for her: refused, and nothing placed.
    let before = app.order_count().await;
    let as_her =
        bob_http.post(app.url("/api/v1/orders")).json(&json!({"user_id": 1, "product_id": mug, "quantity": 1}));
    problem(as_her.send().await.unwrap(), 403).await;
    assert_eq!(app.order_count().await, before);
    assert_eq!(app.wait_for_status(her_order, "pending", Duration::from_secs(1)).await["user_id"], 1);
});

on_both_backends!(one_customer_cannot_reach_another_customers_orders_over_grpc, |app| {
    let mug = app.product("MUG", 1250, 100).await;
    let (mut alice, mut bob) = (app.grpc_as(&customer(1)).await, app.grpc_as(&customer(2)).await);
    let order = |user_id: Option<u64>| CreateOrderRequest {
        user_id,
        items: vec![LineRequest { product_id: mug, quantity: 1 }],
        ..CreateOrderRequest::default()
    };
    let hers = alice.create_order(order(None)).await.unwrap().into_inner();
    assert_eq!(hers.user_id, 1);
    let mut his_feed = bob.watch_orders(WatchOrdersRequest {}).await.unwrap().into_inner();
    let his = bob.create_order(order(None)).await.unwrap().into_inner();

    let read = bob.get_order(GetOrderRequest { id: hers.id }).await.unwrap_err();
    assert_eq!(read.code(), Code::NotFound, "{read:?}");
    let watch = bob.watch_order(WatchOrderRequest { id: hers.id }).await.unwrap_err();
    assert_eq!(watch.code(), Code::NotFound, "{watch:?}");
    let listed = bob.list_orders(ListOrdersRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.orders.iter().map(|order| order.id).collect::<Vec<_>>(), [his.id]);
    let hers_listed = bob.list_orders(ListOrdersRequest { user_id: Some(1), ..Default::default() }).await.unwrap_err();
    assert_eq!(hers_listed.code(), Code::PermissionDenied);
    let as_her = bob.create_order(order(Some(1))).await.unwrap_err();
    assert_eq!(as_her.code(), Code::PermissionDenied, "{as_her:?}");
    let cancel = UpdateOrderStatusRequest {
        id: hers.id,
        status: host::grpc::proto::OrderStatus::Cancelled as i32,
        reason: None,
    };
    let refused = bob.update_order_status(cancel).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let info = refused.get_details_error_info().expect("ErrorInfo");
    assert_eq!((info.reason.as_str(), info.metadata["required_scope"].as_str()), ("forbidden", "orders:all"));
    // His feed carries his order, and not hers placed after it.
    alice.create_order(order(None)).await.unwrap();
    let mine = bob.create_order(order(None)).await.unwrap().into_inner();
    for expected in [his.id, mine.id] {
        let event = tokio::time::timeout(Duration::from_secs(10), his_feed.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(event.order_id, expected, "only his own orders' events");
    }
});

on_both_backends!(an_idempotency_key_is_its_callers_alone, |app| {
    let mug = app.product("MUG", 1250, 100).await;
    let (alice, bob) = (customer(1), customer(2));
    let first: Value = place_as(&app, &alice, mug, Some("cart-1")).await.json().await.unwrap();
    // The same key and body from another customer: his own order, not her replay.
    let other = place_as(&app, &bob, mug, Some("cart-1")).await;
    assert_eq!(other.status(), 201);
    assert!(other.headers().get("idempotent-replayed").is_none(), "not replayed across callers");
    let other: Value = other.json().await.unwrap();
    assert_ne!(other["id"], first["id"]);
    assert_eq!(other["user_id"], 2);
    // Her retry still replays hers.
    let again = place_as(&app, &alice, mug, Some("cart-1")).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    // And a key he holds squats nothing of hers: her new key is hers.
    place_as(&app, &bob, mug, Some("cart-2")).await;
    let hers: Value = place_as(&app, &alice, mug, Some("cart-2")).await.json().await.unwrap();
    assert_eq!(hers["user_id"], 1);
    // The longest key there is, for the longest subject there is, still replays.
    let (longest, subject) = ("k".repeat(255), "9".repeat(18));
    let customer = token(&subject, "orders");
    let first: Value = place_as(&app, &customer, mug, Some(&longest)).await.json().await.unwrap();
    let replay = place_as(&app, &customer, mug, Some(&longest)).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap()["id"], first["id"]);
    assert_eq!(app.stock(mug).await, 95, "five orders placed, the replays none");
});

on_both_backends!(a_customer_cannot_change_the_catalogue_or_reach_the_admin_api, |app| {
    let mug = app.product("MUG", 1250, 10).await;
    let alice = client_with(&customer(1));
    let reprice = alice.patch(app.url(&format!("/api/v1/products/{mug}"))).json(&json!({"price": 0}));
    let body = problem(reprice.send().await.unwrap(), 403).await;
    assert_eq!(body["required_scope"], "catalog:write");
    let create =
        alice.post(app.url("/api/v1/products")).json(&json!({"sku": "FREE", "name": "Free", "price": 0, "stock": 1}));
    problem(create.send().await.unwrap(), 403).await;
    // The scope is checked before the body: a malformed body is still a 403.
    let malformed = alice.post(app.url("/api/v1/products")).header("content-type", "application/json").body("{");
    problem(malformed.send().await.unwrap(), 403).await;
    let product: Value =
        alice.get(app.url(&format!("/api/v1/products/{mug}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(product["price"], 1250, "unchanged, and readable with any valid token");
    for path in ["/api/v1/admin/slots", "/api/v1/admin/queue", "/api/v1/admin/dead-letters"] {
        problem(alice.get(app.url(path)).send().await.unwrap(), 403).await;
    }
    let rollback = alice.post(app.url("/api/v1/admin/slots/pricing/rollback")).send().await.unwrap();
    problem(rollback, 403).await;
    // The back office may.
    let clerk = client_with(&token("clerk", "catalog:write"));
    let repriced = clerk.patch(app.url(&format!("/api/v1/products/{mug}"))).json(&json!({"price": 1100}));
    assert_eq!(repriced.send().await.unwrap().status(), 200);
    // A token with no scope at all reads the catalogue and nothing else.
    let nobody = client_with(&token("reader", ""));
    assert_eq!(nobody.get(app.url("/api/v1/products")).send().await.unwrap().status(), 200);
    problem(nobody.get(app.url("/api/v1/orders")).send().await.unwrap(), 403).await;
});

fn one_open_order_each() -> Options {
    let toml =
        std::fs::read_to_string(crate::helpers::component_dir("order-validation").join("validation.toml")).unwrap();
    Options { configs: vec![(Slot::Validation, format!("{toml}max_open_orders = 1\n"))], ..Options::default() }
}

on_both_backends!(per_user_rules_hold_for_the_tokens_subject, options = one_open_order_each(), |app| {
    let mug = app.product("MUG", 1250, 10).await;
    let alice = customer(5);
    assert_eq!(place_as(&app, &alice, mug, None).await.status(), 201);
    // Her second open order breaks her limit...
    let second = problem(place_as(&app, &alice, mug, None).await, 422).await;
    assert_eq!(second["violations"][0]["field"], "user_id", "{second}");
    // ...and naming another user to dodge it is no longer hers to do.
    let dodge = client_with(&alice)
        .post(app.url("/api/v1/orders"))
        .json(&json!({"user_id": 6, "product_id": mug, "quantity": 1}))
        .send()
        .await
        .unwrap();
    problem(dodge, 403).await;
    assert_eq!(app.stock(mug).await, 9);
});

on_both_backends!(
    every_admin_action_records_who_did_it,
    options = Options { fixtures: true, ..Options::default() },
    |app| {
        let pricing = std::fs::read(crate::helpers::wasm("pricing")).unwrap();
        let build = crate::swap::rebuilt(&pricing, "audited");
        let operator = client_with(&token("alice-ops", "admin"));
        let uploaded = operator
            .put(app.url("/api/v1/admin/slots/pricing/component"))
            .header("content-type", "application/wasm")
            .body(build)
            .send()
            .await
            .unwrap();
        assert_eq!(uploaded.status(), 200);
        // The console's token names its client: the client is who did it.
        let console = client_with(&crate::helpers::client_token("bob", "admin", Some("ops-console")));
        let rollback = console.post(app.url("/api/v1/admin/slots/pricing/rollback")).send().await.unwrap();
        assert_eq!(rollback.status(), 200);
        let history: Value =
            operator.get(app.url("/api/v1/admin/slots/pricing/history")).send().await.unwrap().json().await.unwrap();
        let by_kind = |kind: &str| -> Vec<String> {
            let events = history["events"].as_array().unwrap().iter().filter(|event| event["kind"] == kind);
            events.map(|event| event["added_by"].as_str().unwrap().to_owned()).collect()
        };
        let activated = by_kind("activated");
        assert!(activated.iter().any(|by| by.starts_with("alice-ops via serve ")), "{activated:?}");
        let rolled_back = by_kind("rolled-back");
        assert!(rolled_back.iter().all(|by| by.starts_with("ops-console via serve ")), "{rolled_back:?}");
        assert_eq!(rolled_back.len(), 1, "{history}");
        let logged = crate::helpers::logs_of_message("slot rolled back");
        assert!(logged.iter().any(|line| line["by"] == "ops-console"), "{logged:?}");
    }
);

on_both_backends!(
    with_tokens_off_anyone_may_order_but_nobody_reaches_the_admin_api,
    options = Options { auth_disabled: true, ..Options::default() },
    |app| {
        let anonymous = reqwest::Client::new();
        let mug = app.product("MUG", 1250, 10).await;
        let body = json!({"user_id": 3, "product_id": mug, "quantity": 1});
        let placed = anonymous.post(app.url("/api/v1/orders")).json(&body).send().await.unwrap();
        assert_eq!(placed.status(), 201, "the explicit opt-out serves without tokens");
        // The admin API still needs the admin scope, which no anonymous caller has.
        let admin = anonymous.get(app.url("/api/v1/admin/slots")).send().await.unwrap();
        assert_eq!(problem(admin, 403).await["required_scope"], "admin");
        let forged = anonymous.get(app.url("/api/v1/admin/slots")).bearer_auth(crate::helpers::admin_token());
        problem(forged.send().await.unwrap(), 403).await;
    }
);

/// An identity provider on loopback: its JWKS at a URL, changeable, counting fetches.
struct IdentityProvider {
    url: String,
    jwks: std::sync::Arc<std::sync::Mutex<String>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl IdentityProvider {
    async fn start(jwks: &str) -> Self {
        let jwks = std::sync::Arc::new(std::sync::Mutex::new(jwks.to_owned()));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let serve = {
            let (jwks, fetches) = (jwks.clone(), fetches.clone());
            move || {
                fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = jwks.lock().unwrap().clone();
                async move { body }
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        let router = axum::Router::new().route("/.well-known/jwks.json", axum::routing::get(serve));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, jwks, fetches }
    }

    /// A token for `subject` with `scopes`, signed with `kid`'s private key.
    fn token(&self, kid: &str, pem: &str, subject: &str, scopes: &str) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.into());
        let claims = json!({"iss": "https://idp.test/", "aud": "orderly-api", "sub": subject, "scope": scopes,
            "exp": now() + 300, "iat": now(), "client_id": "web"});
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap())
            .unwrap()
    }
}

/// Tokens from an identity provider's JWKS URL on `backend`.
async fn jwks_url_case(backend: crate::helpers::Backend) {
    let idp = IdentityProvider::start(include_str!("../keys/jwks-without-rsa-2.json")).await;
    let auth = host::auth::AuthSettings {
        jwks_url: Some(idp.url.clone()),
        issuer: Some("https://idp.test/".into()),
        audience: Some("orderly-api".into()),
        jwks_min_refetch_secs: 1,
        ..host::auth::AuthSettings::default()
    };
    let app = TestApp::spawn_with(backend, Options { auth: Some(auth), ..Options::default() }).await;
    assert_eq!(idp.fetches.load(std::sync::atomic::Ordering::SeqCst), 1, "fetched at start");
    let rsa_1 = include_str!("../keys/rsa-1.pem");
    let first = client_with(&idp.token("rsa-1", rsa_1, "5", "orders"));
    assert_eq!(first.get(app.url("/api/v1/orders")).send().await.unwrap().status(), 200);
    // A token signed with a key the issuer has not published: refused.
    let rsa_2 = include_str!("../keys/rsa-2.pem");
    let early = client_with(&idp.token("rsa-2", rsa_2, "5", "orders"));
    problem(early.get(app.url("/api/v1/orders")).send().await.unwrap(), 401).await;
    // The issuer rotates rsa-2 in: its tokens verify once the service looks again.
    *idp.jwks.lock().unwrap() = include_str!("../keys/jwks.json").to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rotated = client_with(&idp.token("rsa-2", rsa_2, "5", "orders"));
    assert_eq!(rotated.get(app.url("/api/v1/orders")).send().await.unwrap().status(), 200);
    // Over gRPC too; and the tests' shared secret means nothing here.
    let over_grpc = app.grpc_as(&idp.token("rsa-2", rsa_2, "5", "orders")).await;
    assert!(over_grpc.clone().list_orders(ListOrdersRequest::default()).await.is_ok());
    let secret = app.grpc_as(&customer(5)).await.list_orders(ListOrdersRequest::default()).await.unwrap_err();
    assert_eq!(secret.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_a_jwks_url_are_verified_and_a_rotation_followed_embedded() {
    jwks_url_case(crate::helpers::Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_a_jwks_url_are_verified_and_a_rotation_followed_postgres() {
    jwks_url_case(crate::helpers::Backend::Postgres).await;
}
