//! Hot swap with real files in a temporary components folder: a dropped
//! component goes live only through the gate; a swap under load fails no
//! request; the admin API lists, uploads and rolls back; a failing new
//! version is rolled back by itself; orders record which version decided.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{
    Backend, Options, TestApp, admin_token, component_dir, copy_dir, fast_fulfillment, problem, wasm,
};
use host::config::SwapSettings;

pub(crate) fn swapping(workers: usize) -> Options {
    Options {
        fixtures: true,
        fulfillment: Some(fast_fulfillment(workers)),
        swap: Some(SwapSettings { watch_debounce_ms: 100, ..SwapSettings::default() }),
        ..Options::default()
    }
}

pub(crate) async fn admin(app: &TestApp, method: reqwest::Method, path: &str) -> reqwest::Response {
    app.client.request(method, app.url(path)).bearer_auth(admin_token()).send().await.unwrap()
}

pub(crate) async fn slot_status(app: &TestApp, slot: &str) -> Value {
    let slots: Value = admin(app, reqwest::Method::GET, "/api/v1/admin/slots").await.json().await.unwrap();
    slots.as_array().unwrap().iter().find(|status| status["slot"] == slot).unwrap().clone()
}

/// Waits until `check` holds for the slot's status and this process serves
/// the registry's active version (the registry changes first, then each
/// process loads the version); returns the status.
pub(crate) async fn wait_for_slot(app: &TestApp, slot: &str, check: impl Fn(&Value) -> bool) -> Value {
    let served_here = |status: &Value| status["active"].is_null() || status["active"]["loaded_at"].is_string();
    wait_for_registry(app, slot, |status| served_here(status) && check(status)).await
}

/// Waits until `check` holds for the slot's status as the registry shows it; returns it.
pub(crate) async fn wait_for_registry(app: &TestApp, slot: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = slot_status(app, slot).await;
        if check(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "the {slot} slot never reached the state: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Drops a component into the folder the safe way: fixtures, then the
/// `.toml`, then the `.wasm`, each written beside and renamed into place.
pub(crate) fn drop_component(dir: &Path, slot: &str, wasm: &[u8], toml: Option<&str>, fixtures: Option<&Path>) {
    if let Some(fixtures) = fixtures {
        let staged = dir.join(format!(".{slot}.fixtures.new"));
        copy_dir(fixtures, &staged);
        let target = dir.join(format!("{slot}.fixtures"));
        let _ = std::fs::remove_dir_all(&target);
        std::fs::rename(&staged, &target).unwrap();
    }
    if let Some(toml) = toml {
        std::fs::write(dir.join(format!(".{slot}.toml.new")), toml).unwrap();
        std::fs::rename(dir.join(format!(".{slot}.toml.new")), dir.join(format!("{slot}.toml"))).unwrap();
    }
    std::fs::write(dir.join(format!(".{slot}.wasm.new")), wasm).unwrap();
    std::fs::rename(dir.join(format!(".{slot}.wasm.new")), dir.join(format!("{slot}.wasm"))).unwrap();
}

/// The same component with a custom section appended: other bytes (another
/// sha256), the same behaviour.
pub(crate) fn rebuilt(wasm: &[u8], tag: &str) -> Vec<u8> {
    let mut bytes = wasm.to_vec();
    let name = b"orderly-build";
    let payload = tag.as_bytes();
    let body_len = 1 + name.len() + payload.len();
    assert!(body_len < 128 && name.len() < 128, "one-byte LEB128 lengths");
    bytes.extend_from_slice(&[0, body_len as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    bytes
}

/// The files of a folder, by name, with their bytes.
fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    host::runtime::digest(bytes)
}

pub(crate) fn toml_of(crate_dir: &str, slot: &str) -> String {
    std::fs::read_to_string(component_dir(crate_dir).join(format!("{slot}.toml"))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_policy_goes_live_new_orders_follow_it_and_it_rolls_back() {
    let app = TestApp::spawn_with(Backend::Embedded, swapping(1)).await;
    let mug = app.product("MUG", 1250, 100).await;
    let before = app.place_for(1, &[(mug, 1)], json!({"region": "us"})).await;
    let before = app.wait_for_status(before, "fulfilled", Duration::from_secs(15)).await;
    assert_eq!(before["shipment"]["carrier"], "postal");

    let express = std::fs::read(wasm("fulfillment-express")).unwrap();
    drop_component(
        &app.components_dir,
        "fulfillment",
        &express,
        Some(&toml_of("fulfillment-express", "fulfillment")),
        Some(&component_dir("fulfillment-express").join("fixtures")),
    );
    let status = wait_for_slot(&app, "fulfillment", |status| status["active"]["sha256"] == sha256(&express)).await;
    assert_eq!(status["active"]["component"], "fulfillment-express");
    assert_eq!(status["active"]["source"], "folder");
    assert_eq!(status["active"]["on_probation"], true);

    let after = app.place_for(2, &[(mug, 1)], json!({"region": "us"})).await;
    let after = app.wait_for_status(after, "fulfilled", Duration::from_secs(15)).await;
    assert_eq!(after["shipment"]["service"], "express", "{after}");
    assert_eq!(after["shipment"]["warehouse"], "nyc");
    let decided =
        after["components"].as_array().unwrap().iter().find(|record| record["slot"] == "fulfillment").unwrap();
    assert_eq!(
        (decided["component"].as_str(), decided["digest"].as_str()),
        (Some("fulfillment-express"), Some(sha256(&express).as_str()))
    );

    // Back to the standard policy, through the admin API; the folder follows.
    let rolled = admin(&app, reqwest::Method::POST, "/api/v1/admin/slots/fulfillment/rollback").await;
    assert_eq!(rolled.status(), 200);
    let standard = std::fs::read(wasm("fulfillment-standard")).unwrap();
    wait_for_slot(&app, "fulfillment", |status| status["active"]["sha256"] == sha256(&standard)).await;
    assert_eq!(std::fs::read(app.components_dir.join("fulfillment.wasm")).unwrap(), standard);
    // Its fixtures come back with it (not the express policy's), so a restart
    // gates the standard policy against its own fixtures and serves it.
    assert_eq!(
        files_in(&app.components_dir.join("fulfillment.fixtures")),
        files_in(&component_dir("fulfillment-standard").join("fixtures"))
    );
    let toml = std::fs::read_to_string(app.components_dir.join("fulfillment.toml")).unwrap();
    let verdict = host::rules::swap::gate::check(
        app.service.rules.runtime(),
        host::runtime::Slot::Fulfillment,
        std::fs::read(app.components_dir.join("fulfillment.wasm")).unwrap(),
        host::runtime::SlotConfig::parse(&toml, "fulfillment.toml").unwrap(),
        Some(toml),
        &host::rules::swap::gate::Fixtures::in_dir(&app.components_dir.join("fulfillment.fixtures")),
    )
    .await;
    assert!(verdict.report.accepted, "{:?}", verdict.report);
    let again = app.place_for(3, &[(mug, 1)], json!({"region": "us"})).await;
    let again = app.wait_for_status(again, "fulfilled", Duration::from_secs(15)).await;
    assert_eq!(again["shipment"]["carrier"], "postal");

    let history: Value =
        admin(&app, reqwest::Method::GET, "/api/v1/admin/slots/fulfillment/history").await.json().await.unwrap();
    let kinds: Vec<(&str, &str)> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| (event["kind"].as_str().unwrap(), event["component"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("activated", "fulfillment-standard"),
            ("activated", "fulfillment-express"),
            ("rolled-back", "fulfillment-express"),
            ("activated", "fulfillment-standard"),
        ]
    );
    // Two versions (each stored once), four changes.
    let versions: Vec<&str> =
        history["versions"].as_array().unwrap().iter().map(|version| version["component"].as_str().unwrap()).collect();
    assert_eq!(versions, ["fulfillment-standard", "fulfillment-express"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_fails_the_gate_never_goes_live() {
    let app = TestApp::spawn_with(Backend::Embedded, swapping(0)).await;
    let mug = app.product("MUG", 1250, 100).await;
    let pricing = std::fs::read(wasm("pricing")).unwrap();
    let dir = app.components_dir.clone();
    let many_memories: String = (0..3).map(|i| format!("(core instance $i{i} (instantiate $m))")).collect();
    let many_memories = wat::parse_str(format!("(component (core module $m (memory 1)) {many_memories})")).unwrap();
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("traps on its fixtures", std::fs::read(wasm("fixtures/trap")).unwrap(), "golden fixtures failed"),
        ("not a component", b"\0asm but not really".to_vec(), "not a valid component"),
        ("another slot's world", std::fs::read(wasm("order-validation")).unwrap(), "does not fit the pricing slot"),
        ("imports sockets", std::fs::read(wasm("fixtures/sockets")).unwrap(), "wasi:sockets/"),
        ("imports files", std::fs::read(wasm("fixtures/filesystem")).unwrap(), "wasi:filesystem/"),
        ("holds three memories", many_memories, "3 Wasm linear memories"),
    ];
    for (case, candidate, reason) in cases {
        drop_component(&dir, "pricing", &candidate, None, None);
        let status =
            wait_for_slot(&app, "pricing", |status| status["last_rejection"]["sha256"] == sha256(&candidate)).await;
        assert!(status["last_rejection"]["reason"].as_str().unwrap().contains(reason), "{case}: {status}");
        assert_eq!(status["active"]["sha256"], sha256(&pricing), "{case}: the old version keeps serving");
        // The folder shows what serves; the candidate is set aside for inspection.
        let deadline = Instant::now() + Duration::from_secs(5);
        // (For a moment between the two, the folder has no pricing.wasm.)
        while std::fs::read(dir.join("pricing.wasm")).ok().as_ref() != Some(&pricing) {
            assert!(Instant::now() < deadline, "{case}: the serving version is written back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(std::fs::read(dir.join("pricing.rejected.wasm")).unwrap(), candidate);
        // The fixtures in the folder are the serving version's, as before.
        assert_eq!(files_in(&dir.join("pricing.fixtures")), files_in(&component_dir("pricing").join("fixtures")));
        let response = app.order(&[(mug, 1)]).await;
        assert_eq!(response.status(), 201, "{case}: orders are still priced");
    }
    let history: Value =
        admin(&app, reqwest::Method::GET, "/api/v1/admin/slots/pricing/history").await.json().await.unwrap();
    let rejected = history["events"].as_array().unwrap().iter().filter(|event| event["kind"] == "rejected").count();
    assert_eq!(rejected, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_in_pieces_is_taken_once_complete() {
    let app = TestApp::spawn_with(Backend::Embedded, swapping(0)).await;
    let next = rebuilt(&std::fs::read(wasm("pricing")).unwrap(), "in-pieces");
    // Written in place, slowly: the wrong way, but it must still not go live half-written.
    let path = app.components_dir.join("pricing.wasm");
    let half = next.len() / 2;
    std::fs::write(&path, &next[..half]).unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    use std::io::Write;
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&next[half..]).unwrap();
    let status = wait_for_slot(&app, "pricing", |status| status["active"]["sha256"] == sha256(&next)).await;
    assert_eq!(status["last_rejection"], Value::Null, "the half-written file was never gated: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn swapping_pricing_twenty_times_under_load_fails_no_request() {
    let app = Arc::new(TestApp::spawn_with(Backend::Postgres, swapping(0)).await);
    let products = [app.product("A", 1000, 1_000_000).await, app.product("B", 2500, 1_000_000).await];
    let first = std::fs::read(wasm("pricing")).unwrap();
    let second = rebuilt(&first, "v2");
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for client in 0..4 {
        let (app, stop, sent, failed) = (app.clone(), stop.clone(), sent.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = json!({"user_id": client * 100_000 + n, "items": [
                    {"product_id": products[0], "quantity": 1}, {"product_id": products[1], "quantity": 2}]});
                let response = app.post("/api/v1/orders", &body).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if response.status() == 201 {
                    ids.push(response.json::<Value>().await.unwrap()["id"].as_i64().unwrap());
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed: {} {}", response.status(), response.text().await.unwrap_or_default());
                }
            }
            ids
        }));
    }
    let toml = toml_of("pricing", "pricing");
    for swap in 0..20 {
        let next = if swap % 2 == 0 { &second } else { &first };
        drop_component(&app.components_dir, "pricing", next, Some(&toml), None);
        wait_for_slot(&app, "pricing", |status| status["active"]["sha256"] == sha256(next)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut ids = Vec::new();
    for task in load {
        ids.extend(task.await.unwrap());
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed during 20 swaps");
    assert!(sent.load(Ordering::Relaxed) > 40, "the load ran throughout");
    let digests: Vec<String> =
        sqlx::query_scalar("SELECT digest FROM order_decisions WHERE slot = 'pricing' ORDER BY order_id")
            .fetch_all(&app.database().pool)
            .await
            .unwrap();
    assert_eq!(digests.len(), ids.len(), "every order records its pricing call");
    let (one, two) = (sha256(&first), sha256(&second));
    assert!(digests.iter().all(|digest| *digest == one || *digest == two), "priced by one of the two versions");
    assert!(digests.contains(&one) && digests.contains(&two), "both versions priced orders");
    let history: Value =
        admin(&app, reqwest::Method::GET, "/api/v1/admin/slots/pricing/history").await.json().await.unwrap();
    let activations = history["events"].as_array().unwrap().iter().filter(|event| event["kind"] == "activated").count();
    assert_eq!(activations, 21, "the start-up version and twenty swaps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_uploads_rolls_back_and_reports() {
    let app = TestApp::spawn_with(Backend::Embedded, swapping(0)).await;
    let mug = app.product("MUG", 1250, 100).await;
    for user in 0..5 {
        app.place_for(user, &[(mug, 1)], json!({})).await;
    }
    let status = slot_status(&app, "pricing").await;
    let active = &status["active"];
    assert_eq!((active["component"].as_str(), active["version"].as_str()), (Some("pricing"), Some("0.1.0")));
    assert_eq!((active["calls"].as_u64(), active["errors"].as_u64()), (Some(5), Some(0)));
    assert!(active["p50_us"].as_u64().unwrap() > 0 && active["p99_us"].as_u64() >= active["p50_us"].as_u64());
    assert!(active["loaded_at"].as_str().is_some() && active["source"] == "startup");

    // Nothing to go back to yet.
    let nothing = admin(&app, reqwest::Method::POST, "/api/v1/admin/slots/pricing/rollback").await;
    problem(nothing, 409).await;
    problem(admin(&app, reqwest::Method::GET, "/api/v1/admin/slots/shipping/history").await, 404).await;
    let anonymous = reqwest::Client::new().put(app.url("/api/v1/admin/slots/pricing/component")).body(vec![1u8]).send();
    problem(anonymous.await.unwrap(), 401).await;

    let first = std::fs::read(wasm("pricing")).unwrap();
    let second = rebuilt(&first, "uploaded");
    let upload = |bytes: Vec<u8>| {
        app.client
            .put(app.url("/api/v1/admin/slots/pricing/component"))
            .bearer_auth(admin_token())
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
    };
    let accepted = upload(second.clone()).await.unwrap();
    assert_eq!(accepted.status(), 200);
    let accepted: Value = accepted.json().await.unwrap();
    assert_eq!(accepted["outcome"], "activated");
    assert_eq!(accepted["report"]["exports"], json!(["price"]));
    assert!(accepted["report"]["fixtures"].as_array().unwrap().iter().all(|fixture| fixture["passed"] == true));
    assert_eq!(std::fs::read(app.components_dir.join("pricing.wasm")).unwrap(), second, "written to the folder");
    let same: Value = upload(second.clone()).await.unwrap().json().await.unwrap();
    let history: Value =
        admin(&app, reqwest::Method::GET, "/api/v1/admin/slots/pricing/history").await.json().await.unwrap();
    assert_eq!(same["outcome"], "unchanged", "{history:#}");
    let refused = upload(std::fs::read(wasm("fixtures/trap")).unwrap()).await.unwrap();
    assert_eq!(refused.status(), 422);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["outcome"], "rejected");
    assert!(refused["report"]["reason"].as_str().unwrap().contains("golden fixtures failed"), "{refused}");
    assert!(refused["report"]["fixtures"].as_array().unwrap().iter().any(|fixture| fixture["passed"] == false));
    assert_eq!(slot_status(&app, "pricing").await["active"]["sha256"], sha256(&second));

    let rolled = admin(&app, reqwest::Method::POST, "/api/v1/admin/slots/pricing/rollback").await;
    assert_eq!(rolled.status(), 200);
    let rolled: Value = rolled.json().await.unwrap();
    assert_eq!(rolled["active"]["sha256"], sha256(&first));
    assert_eq!(rolled["active"]["source"], "rollback");
    assert_eq!(std::fs::read(app.components_dir.join("pricing.wasm")).unwrap(), first);
    let history: Value =
        admin(&app, reqwest::Method::GET, "/api/v1/admin/slots/pricing/history").await.json().await.unwrap();
    // Two versions, each stored once with how it came; the changes are events.
    let sources: Vec<(&str, bool)> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|version| (version["source"].as_str().unwrap(), version["active"].as_bool().unwrap()))
        .collect();
    assert_eq!(sources, [("startup", true), ("upload", false)]);
    let events: Vec<(&str, &str)> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| (event["kind"].as_str().unwrap(), event["source"].as_str().unwrap()))
        .collect();
    assert_eq!(
        events,
        [
            ("activated", "startup"),
            ("activated", "upload"),
            ("rejected", "upload"),
            ("rolled-back", "rollback"),
            ("activated", "rollback")
        ]
    );
}

/// Drops a policy that passes its own fixtures but traps on orders marked
/// `trap` (`flaky-policy` 9.9.9); returns its fixtures' folder.
pub(crate) fn drop_flaky_policy(app: &TestApp) -> tempfile::TempDir {
    let fixtures = tempfile::tempdir().unwrap();
    std::fs::copy(
        component_dir("fulfillment-standard").join("fixtures/ship.input.json"),
        fixtures.path().join("ship.input.json"),
    )
    .unwrap();
    let shipped =
        json!({"Ship": {"carrier": "fixture", "service": "standard", "warehouse": "main", "estimated_days": 1}});
    std::fs::write(fixtures.path().join("ship.expected.json"), shipped.to_string()).unwrap();
    let flaky = std::fs::read(wasm("fixtures/trap-policy")).unwrap();
    let toml = "[component]\nname = \"flaky-policy\"\nversion = \"9.9.9\"\n";
    drop_component(&app.components_dir, "fulfillment", &flaky, Some(toml), Some(fixtures.path()));
    fixtures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_failing_in_production_is_rolled_back_by_itself() {
    let mut options = swapping(1);
    options.fulfillment.as_mut().unwrap().max_attempts = 20;
    options.swap = Some(SwapSettings {
        watch_debounce_ms: 100,
        rollback_window_calls: 4,
        rollback_failure_rate: 0.5,
        ..SwapSettings::default()
    });
    let app = TestApp::spawn_with(Backend::Embedded, options).await;
    let mug = app.product("MUG", 1250, 100).await;
    let _fixtures = drop_flaky_policy(&app);
    wait_for_slot(&app, "fulfillment", |status| status["active"]["component"] == "flaky-policy").await;

    let doomed = app.place_for(1, &[(mug, 1)], json!({"trap": "yes"})).await;
    let status =
        wait_for_slot(&app, "fulfillment", |status| status["active"]["component"] == "fulfillment-standard").await;
    assert_eq!(status["active"]["source"], "rollback");
    let history: Value =
        admin(&app, reqwest::Method::GET, "/api/v1/admin/slots/fulfillment/history").await.json().await.unwrap();
    let event = history["events"].as_array().unwrap().iter().find(|event| event["kind"] == "auto-rolled-back").unwrap();
    assert_eq!(event["component"], "flaky-policy");
    assert!(event["reason"].as_str().unwrap().contains("of its first"), "{event}");
    let failed = history["versions"].as_array().unwrap().iter().find(|version| version["component"] == "flaky-policy");
    assert_eq!(failed.unwrap()["failed"], true);
    // The job is retried on the restored version and completes.
    let order = app.wait_for_status(doomed, "fulfilled", Duration::from_secs(30)).await;
    assert_eq!(order["shipment"]["carrier"], "postal");
    assert_eq!(
        std::fs::read(app.components_dir.join("fulfillment.wasm")).unwrap(),
        std::fs::read(wasm("fulfillment-standard")).unwrap()
    );
}
