//! The OpenAPI document lists every route, and every route it lists is served.

use serde_json::Value;

use crate::helpers::{Backend, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_matches_the_routes() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"), "OpenAPI 3.1");
    let paths = document["paths"].as_object().unwrap();
    let mut listed: Vec<String> = Vec::new();
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            listed.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    listed.sort();
    let expected = [
        "GET /api/v1/admin/dead-letters",
        "GET /api/v1/admin/queue",
        "GET /api/v1/admin/slots",
        "GET /api/v1/admin/slots/{slot}/history",
        "GET /api/v1/events",
        "GET /api/v1/orders",
        "GET /api/v1/orders/{id}",
        "GET /api/v1/orders/{id}/events",
        "GET /api/v1/products",
        "GET /api/v1/products/{id}",
        "GET /health",
        "GET /ready",
        "PATCH /api/v1/orders/{id}/status",
        "PATCH /api/v1/products/{id}",
        "POST /api/v1/admin/dead-letters/{id}/requeue",
        "POST /api/v1/admin/slots/{slot}/rollback",
        "POST /api/v1/orders",
        "POST /api/v1/products",
        "PUT /api/v1/admin/slots/{slot}/component",
    ];
    assert_eq!(listed, expected);

    // Every listed operation is routed: no 405, and no "no route" 404.
    for operation in &listed {
        let (method, path) = operation.split_once(' ').unwrap();
        let url = app.url(&path.replace("{id}", "1").replace("{slot}", "pricing"));
        let request = app.client.request(method.parse().unwrap(), url).header("content-type", "application/json");
        let response = request.body("{}").send().await.unwrap();
        let status = response.status().as_u16();
        if response.headers()["content-type"] == "text/event-stream" {
            // An event stream does not end; its headers are the answer.
            assert_eq!(status, 200, "{operation}");
            continue;
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(status, 405, "{operation}");
        assert!(!body["detail"].as_str().unwrap_or_default().starts_with("no route"), "{operation}: {body}");
    }
    assert!(document["components"]["securitySchemes"].get("admin_token").is_some(), "the admin token is declared");
    for schema in [
        "OrderDetail",
        "Product",
        "Problem",
        "CreateOrderRequest",
        "DeadLetter",
        "QueueStatus",
        "Shipment",
        "SlotStatus",
        "GateReport",
    ] {
        assert!(document["components"]["schemas"].get(schema).is_some(), "schema {schema}");
    }
}
