//! The OpenAPI document lists every route, every route it lists is served,
//! and what it states (bounds, shapes, answers) is what the server does.
//! The schemathesis run (`just contract`) checks the rest by generating
//! requests from the document.

use serde_json::{Value, json};

use crate::helpers::{Backend, Options, TestApp, admin_token, problem, wasm};

async fn document(app: &TestApp) -> Value {
    app.get("/api/v1/openapi.json").await.json().await.unwrap()
}

/// The admin listener's own document.
async fn admin_document(app: &TestApp) -> Value {
    app.client.get(app.admin_url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap()
}

/// `METHOD /path` of every operation `document` lists, sorted.
fn listed(document: &Value) -> Vec<String> {
    let mut listed: Vec<String> = Vec::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            listed.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    listed.sort();
    listed
}

/// The operation's entry in the document.
fn operation<'a>(document: &'a Value, method: &str, path: &str) -> &'a Value {
    &document["paths"][path][method]
}

fn query_bounds(document: &Value, path: &str, name: &str) -> (i64, i64) {
    let parameters = operation(document, "get", path)["parameters"].as_array().unwrap();
    let parameter = parameters.iter().find(|parameter| parameter["name"] == name).unwrap();
    let schema = &parameter["schema"];
    (schema["minimum"].as_i64().unwrap(), schema["maximum"].as_i64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_matches_the_routes() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"), "OpenAPI 3.1");
    let public = [
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
        "POST /api/v1/orders",
        "POST /api/v1/products",
    ];
    assert_eq!(listed(&document), public);
    // The admin API is on its own listener, with its own document.
    let admin = [
        "GET /api/v1/admin/dead-letters",
        "GET /api/v1/admin/queue",
        "GET /api/v1/admin/slots",
        "GET /api/v1/admin/slots/{slot}/history",
        "GET /health",
        "GET /ready",
        "POST /api/v1/admin/dead-letters/{id}/requeue",
        "POST /api/v1/admin/slots/{slot}/rollback",
        "POST /api/v1/admin/slots/{slot}/versions",
        "POST /api/v1/admin/slots/{slot}/versions/{id}/activate",
        "PUT /api/v1/admin/slots/{slot}/component",
    ];
    let admin_document = admin_document(&app).await;
    assert_eq!(listed(&admin_document), admin);
    // Neither listener serves the other's routes, whatever the token.
    let on_public = app.client.get(app.public_url("/api/v1/admin/queue")).send().await.unwrap();
    problem(on_public, 404).await;
    let on_admin = app.client.get(app.admin_url("/api/v1/orders")).send().await.unwrap();
    problem(on_admin, 404).await;

    let listed: Vec<String> = public.iter().chain(&admin).map(|operation| operation.to_string()).collect();
    let document_of = |path: &str| if path.starts_with("/api/v1/admin") { &admin_document } else { &document };
    // Every listed operation but health says it needs a bearer token, and
    // answers 401 without one, before anything else.
    for listed_operation in &listed {
        let (method, path) = listed_operation.split_once(' ').unwrap();
        let entry = operation(document_of(path), &method.to_lowercase(), path);
        let url = app.url(&path.replace("{id}", "1").replace("{slot}", "pricing"));
        let anonymous = reqwest::Client::new().request(method.parse().unwrap(), url).body("{}").send().await.unwrap();
        if path == "/health" || path == "/ready" {
            assert!(entry.get("security").is_none(), "{listed_operation} is open");
            assert_ne!(anonymous.status(), 401, "{listed_operation}");
            continue;
        }
        let schemes =
            entry["security"].as_array().unwrap_or_else(|| panic!("{listed_operation} declares its security"));
        assert!(schemes.iter().all(|scheme| scheme.get("bearer").is_some()), "{listed_operation}");
        assert!(entry["responses"]["401"].is_object(), "{listed_operation} lists its 401");
        assert!(anonymous.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"), "{listed_operation}");
        problem(anonymous, 401).await;
    }

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
    for document in [&document, &admin_document] {
        let bearer = &document["components"]["securitySchemes"]["bearer"];
        assert_eq!((bearer["scheme"].as_str(), bearer["bearerFormat"].as_str()), (Some("bearer"), Some("JWT")));
    }
    for schema in ["OrderDetail", "Product", "Problem", "CreateOrder", "OrderOfItems", "OrderOfOneLine", "Shipment"] {
        assert!(document["components"]["schemas"].get(schema).is_some(), "schema {schema}");
    }
    for schema in ["Problem", "DeadLetter", "QueueStatus", "SlotStatus", "GateReport"] {
        assert!(admin_document["components"]["schemas"].get(schema).is_some(), "admin schema {schema}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stated_bounds_are_the_enforced_ones() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let (document, admin_document) = (document(&app).await, admin_document(&app).await);
    for (path, listing) in [
        ("/api/v1/orders", "/api/v1/orders"),
        ("/api/v1/products", "/api/v1/products"),
        ("/api/v1/admin/dead-letters", "/api/v1/admin/dead-letters"),
    ] {
        let stated_in = if path.starts_with("/api/v1/admin") { &admin_document } else { &document };
        let (minimum, maximum) = query_bounds(stated_in, path, "limit");
        let get = |limit: i64| app.client.get(app.url(&format!("{listing}?limit={limit}"))).send();
        assert_eq!(get(minimum).await.unwrap().status(), 200, "{path} limit={minimum}");
        assert_eq!(get(maximum).await.unwrap().status(), 200, "{path} limit={maximum}");
        problem(get(minimum - 1).await.unwrap(), 400).await;
        problem(get(maximum + 1).await.unwrap(), 400).await;
    }
    for path in ["/api/v1/orders", "/api/v1/products"] {
        let parameters = operation(&document, "get", path)["parameters"].as_array().unwrap();
        let cursor = parameters.iter().find(|parameter| parameter["name"] == "cursor").unwrap();
        assert_eq!(cursor["schema"]["pattern"], host::api::page::CURSOR_PATTERN, "{path}");
        assert_eq!(query_bounds(&document, path, "limit").1, host::api::page::MAX_PAGE, "{path}");
    }
    for cursor in ["0", "007", "+3", "12345678901234567890"] {
        problem(app.get(&format!("/api/v1/products?cursor={cursor}")).await, 400).await;
    }

    // String lengths: exactly at the bound is stored, one past it is refused.
    let sku_schema = &document["components"]["schemas"]["CreateProductRequest"]["properties"]["sku"];
    let longest = sku_schema["maxLength"].as_u64().unwrap() as usize;
    let product = |sku: String| json!({"sku": sku, "name": "Bound", "price": 1});
    assert_eq!(
        app.post("/api/v1/products", &product("é".repeat(longest))).await.status(),
        201,
        "counted in characters"
    );
    problem(app.post("/api/v1/products", &product("é".repeat(longest + 1))).await, 422).await;
    problem(app.post("/api/v1/products", &product(" \u{3000}\t".into())).await, 422).await;
    let price_schema = &document["components"]["schemas"]["CreateProductRequest"]["properties"]["price"];
    let dearest = price_schema["maximum"].as_i64().unwrap();
    let priced = |price: i64| json!({"sku": format!("P{price}"), "name": "Dear", "price": price});
    assert_eq!(app.post("/api/v1/products", &priced(dearest)).await.status(), 201);
    problem(app.post("/api/v1/products", &priced(dearest + 1)).await, 422).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_states_shapes_links_and_every_error() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let document = document(&app).await;
    let create = operation(&document, "post", "/api/v1/orders");
    let body = &create["requestBody"]["content"]["application/json"]["schema"];
    let shapes = document["components"]["schemas"]["CreateOrder"]["oneOf"].as_array().unwrap();
    assert_eq!(body["$ref"], "#/components/schemas/CreateOrder");
    assert_eq!(shapes.len(), 2, "items, or the one-line shorthand");
    let links = &create["responses"]["201"]["links"];
    assert_eq!(links["GetOrder"]["operationId"], "get_order");
    assert_eq!(links["GetOrder"]["parameters"]["id"], "$response.body#/id");
    assert!(operation(&document, "get", "/api/v1/orders/{id}")["operationId"] == "get_order");

    let admin_document = admin_document(&app).await;
    let operations =
        [&document, &admin_document].into_iter().flat_map(|document| document["paths"].as_object().unwrap().iter());
    for (path, operations) in operations {
        for (method, operation) in operations.as_object().unwrap() {
            let answers = operation["responses"].as_object().unwrap();
            let has = |status: &str| answers.contains_key(status);
            if operation["requestBody"].is_object() {
                for status in ["400", "413", "415"] {
                    assert!(has(status), "{method} {path} states {status}");
                }
            }
            if let Some(requirements) = operation["security"].as_array() {
                assert!(has("401"), "{method} {path} states 401");
                let scoped = requirements
                    .iter()
                    .any(|requirement| requirement["bearer"].as_array().is_some_and(|scopes| !scopes.is_empty()));
                assert!(!scoped || has("403"), "{method} {path} needs a scope and states 403");
            }
            for (status, answer) in answers {
                if status.starts_with('4') || (status.starts_with('5') && path != "/ready") {
                    assert!(answer["content"]["application/problem+json"].is_object(), "{method} {path} {status}");
                }
            }
        }
    }
    // The two order shapes exclude each other, as the handler does: a body
    // carrying both is valid as neither, and refused.
    let schemas = &document["components"]["schemas"];
    assert_eq!(schemas["OrderOfOneLine"]["not"], json!({"required": ["items"]}));
    assert_eq!(schemas["OrderOfItems"]["not"]["anyOf"][0], json!({"required": ["product_id"]}));
    let both = json!({"user_id": 42, "product_id": 1, "quantity": 1, "items": [{"product_id": 5}]});
    problem(app.post("/api/v1/orders", &both).await, 422).await;
    // A form's optional parts are never `null`: a part sent holds a value.
    let form = &operation(&admin_document, "post", "/api/v1/admin/slots/{slot}/versions")["requestBody"]["content"]["multipart/form-data"]
        ["schema"];
    assert_eq!(form["properties"]["activate"]["type"], "boolean", "{form}");
    assert_eq!(form["properties"]["config"]["type"], "string", "{form}");
    let upload = operation(&admin_document, "put", "/api/v1/admin/slots/{slot}/component");
    let wasm = upload["requestBody"]["content"]["application/wasm"]["schema"]["$ref"].as_str().unwrap();
    let wasm = &admin_document["components"]["schemas"][wasm.trim_start_matches("#/components/schemas/")];
    assert_eq!((wasm["type"].as_str(), wasm["format"].as_str()), (Some("string"), Some("binary")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upload_refusal_is_a_problem() {
    let app = TestApp::spawn_with(Backend::Embedded, Options { fixtures: true, ..Options::default() }).await;
    let upload = |content_type: &'static str, bytes: Vec<u8>| {
        app.client
            .put(app.url("/api/v1/admin/slots/pricing/component"))
            .bearer_auth(admin_token())
            .header("content-type", content_type)
            .body(bytes)
            .send()
    };
    let pricing = std::fs::read(wasm("pricing")).unwrap();
    let wrong_type = problem(upload("application/octet-stream", pricing.clone()).await.unwrap(), 415).await;
    assert!(wrong_type["detail"].as_str().unwrap().contains("application/wasm"));
    let (status, head, body) = oversized_upload(&app).await;
    assert_eq!(status, 413, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/problem+json"), "{head}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["type"], "urn:orderly:problem:body-too-large");
    for refused in [Vec::new(), b"not a component".to_vec(), std::fs::read(wasm("fixtures/trap")).unwrap()] {
        let rejected = problem(upload("application/wasm", refused).await.unwrap(), 422).await;
        assert_eq!(rejected["type"], "urn:orderly:problem:component-rejected");
        assert_eq!(rejected["outcome"], "rejected");
        assert_eq!(rejected["report"]["accepted"], false, "{rejected}");
        assert!(!rejected["report"]["reason"].as_str().unwrap().is_empty());
    }
    let unknown_slot = app.client.put(app.url("/api/v1/admin/slots/shipping/component")).bearer_auth(admin_token());
    problem(unknown_slot.header("content-type", "application/wasm").body(pricing).send().await.unwrap(), 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_change_names_real_fields_with_values() {
    let app = TestApp::spawn(Backend::Embedded).await;
    let id = app.product("PATCHED", 100, 5).await;
    let path = format!("/api/v1/products/{id}");
    for refused in [json!({}), json!({"prise": 120}), json!({"price": null}), json!({"name": null, "stock": 3})] {
        problem(app.patch(&path, &refused).await, 422).await;
    }
    // A path id is an integer as the document (and JSON Schema) counts them: `3.0` is 3.
    let same: Value = app.get(&format!("{path}.0")).await.json().await.unwrap();
    assert_eq!(same["id"], id);
    problem(app.get(&format!("{path}.5")).await, 400).await;
    let changed: Value = app.patch(&path, &json!({"price": 120})).await.json().await.unwrap();
    assert_eq!((changed["price"].as_i64(), changed["stock"].as_i64()), (Some(120), Some(5)), "only the price moved");
}

/// Sends a 33 MiB component over a bare connection, reading the answer while
/// still writing: the server answers once it has read past the limit, and
/// an HTTP client would stop at the broken pipe before reading the answer.
/// Status, head, body.
async fn oversized_upload(app: &TestApp) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.admin_address.to_string();
    let (mut reader, mut writer) = tokio::net::TcpStream::connect(&address).await.unwrap().into_split();
    let token = admin_token();
    let head = format!(
        "PUT /api/v1/admin/slots/pricing/component HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/wasm\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        33u64 << 20
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    let sending = tokio::spawn(async move {
        for _ in 0..(33 * 16) {
            if writer.write_all(&[0; 64 * 1024]).await.is_err() {
                break;
            }
        }
    });
    // Read until the whole answer is in (not to the end: the server may
    // reset the connection it did not read, which can drop unread bytes).
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    while !complete(&answer) {
        let read = tokio::time::timeout(std::time::Duration::from_secs(30), reader.read(&mut chunk)).await;
        match read {
            Ok(Ok(count)) if count > 0 => answer.extend_from_slice(&chunk[..count]),
            _ => break,
        }
    }
    sending.abort();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// Whether `answer` holds a head and as many body bytes as it announces.
fn complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
    });
    length.is_some_and(|length| body.len() >= length)
}
