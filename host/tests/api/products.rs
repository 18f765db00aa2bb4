//! The catalogue routes and the product cache.

use std::time::Duration;

use host::orders::product_cache::{ProductCache, RedisProductCache};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, problem};
use crate::on_both_backends;

on_both_backends!(create_read_list_and_update, |app| {
    let response = app
        .post("/api/v1/products", &json!({"sku": "CUP-1", "name": "Cup", "price": 700, "stock": 3, "currency": "EUR"}))
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/products/{}", created["id"]));
    assert_eq!((created["price"].as_i64(), created["active"].as_bool()), (Some(700), Some(true)));

    let fetched: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(fetched, created);

    let updated = app.patch(&location, &json!({"price": 650, "stock": 10, "active": false})).await;
    assert_eq!(updated.status(), 200);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!((updated["price"].as_i64(), updated["stock"].as_i64()), (Some(650), Some(10)));
    assert_eq!(updated["active"], false);
    assert_eq!(updated["sku"], "CUP-1", "fields not sent keep their value");
});

on_both_backends!(listing_pages_with_a_cursor, |app| {
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(app.product(&format!("P-{n}"), 100, 1).await);
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/products?limit=2".to_owned();
    loop {
        let page: Value = app.get(&path).await.json().await.unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|item| item["id"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/products?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every product once, in id order");
    problem(app.get("/api/v1/products?limit=0").await, 400).await;
    problem(app.get("/api/v1/products?cursor=abc").await, 400).await;
});

on_both_backends!(bad_products_are_refused, |app| {
    app.product("DUP-1", 100, 1).await;
    let duplicate = app.post("/api/v1/products", &json!({"sku": "DUP-1", "name": "again", "price": 1})).await;
    problem(duplicate, 409).await;
    let invalid = app.post("/api/v1/products", &json!({"sku": "", "name": "x", "price": 1, "currency": "euro"})).await;
    let body = problem(invalid, 422).await;
    let fields: Vec<&str> =
        body["violations"].as_array().unwrap().iter().map(|v| v["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["sku", "currency"]);
    let negative = app.post("/api/v1/products", &json!({"sku": "N", "name": "x", "price": -5})).await;
    problem(negative, 422).await;
    problem(app.get("/api/v1/products/999999").await, 404).await;
    problem(app.patch("/api/v1/products/999999", &json!({"price": 1})).await, 404).await;
    let nothing = app.patch("/api/v1/products/1", &json!({})).await;
    problem(nothing, 422).await;
});

on_both_backends!(a_price_change_reaches_the_next_order_through_the_cache, |app| {
    let id = app.product("CACHED-1", 1000, 10).await;
    let first: Value = app.order(&[(id, 1)]).await.json().await.unwrap();
    assert_eq!(first["items"][0]["unit_price"], 1000);
    if app.backend == Backend::Postgres {
        // The first order filled the Redis cache.
        let mut redis =
            redis::Client::open(crate::helpers::redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let key = format!("{}product:{id}", app.namespace);
        let cached: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut redis).await.unwrap();
        assert!(cached.unwrap().contains("CACHED-1"));
        app.patch(&format!("/api/v1/products/{id}"), &json!({"price": 1500})).await;
        let cached: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut redis).await.unwrap();
        assert!(cached.unwrap().contains(r#""price":1500"#), "the update cached the changed product");
    } else {
        app.patch(&format!("/api/v1/products/{id}"), &json!({"price": 1500})).await;
    }
    let second: Value = app.order(&[(id, 1)]).await.json().await.unwrap();
    assert_eq!(second["items"][0]["unit_price"], 1500, "the new price, not the cached one");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_fill_racing_a_price_change_cannot_bring_the_old_price_back() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let id = app.product("RACED", 1000, 10).await;
    // A fill reads the product from the database...
    let before = app.service.store.product(id).await.unwrap();
    // ...the price changes, and the change answers...
    assert_eq!(app.patch(&format!("/api/v1/products/{id}"), &json!({"price": 1500})).await.status(), 200);
    // ...then the fill writes what it read, as a slow process would.
    let client = redis::Client::open(crate::helpers::redis_url()).unwrap();
    let connection = redis::aio::ConnectionManager::new(client).await.unwrap();
    let late = RedisProductCache::new(connection, &app.namespace, Duration::from_secs(300));
    late.put_many(&[before]).await;
    let order: Value = app.order(&[(id, 1)]).await.json().await.unwrap();
    assert_eq!(order["items"][0]["unit_price"], 1500, "the new price, not the late fill's");
    assert_eq!(late.get_many(&[id]).await[0].as_ref().map(|product| product.price), Some(1500));
}
