//! Hot swap across a deployment: `host serve` (the test's service, no
//! workers of its own), `host worker` processes and a second `host serve`
//! on one database (PostgreSQL, or one embedded SQLite file). Every process
//! loads the registry's active versions and follows them; a swap and a
//! rollback reach the others, a restarted process serves what the registry
//! says, and a process killed mid-swap leaves the registry whole.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    AUTH_ENV, Backend, TestApp, admin_token, back_office_token, client_with, component_dir, problem, wasm,
};
use crate::on_both_backends;
use crate::processes::{ApiProcess, worker_process};
use crate::swap::{
    admin, drop_component, drop_flaky_policy, rebuilt, sha256, slot_status, swapping, toml_of, wait_for_registry,
    wait_for_slot,
};
use host::config::SwapSettings;
use host::store::registry::{Expect, NewVersion, SlotEventRow};

/// Workers that look at the registry twice a second (notifications come first anyway).
const FOLLOWING: [(&str, &str); 3] = [("WORKERS", "2"), ("REGISTRY_RECHECK_MS", "500"), AUTH_ENV];

/// The test's service (`host serve`, no workers) following the registry twice a second.
async fn following(backend: Backend) -> TestApp {
    let mut options = swapping(0);
    options.swap = Some(SwapSettings { watch_debounce_ms: 100, registry_recheck_ms: 500, ..SwapSettings::default() });
    TestApp::spawn_with(backend, options).await
}

/// A second `host serve` on `app`'s database with `more` settings, and a
/// components folder of its own (empty: it serves what the registry says),
/// kept as long as the returned folder is.
async fn second_api(app: &TestApp, more: &[(&str, &str)]) -> (ApiProcess, tempfile::TempDir) {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().to_string_lossy().into_owned();
    let mut settings = vec![("COMPONENTS_DIR", path.as_str()), ("REQUEST_TIMEOUT_MS", "60000")];
    settings.extend_from_slice(more);
    (ApiProcess::start_with(app, &settings).await, folder)
}

/// Waits until `processes` live processes all serve `sha256` in `slot`; returns the slot's status.
async fn converged_on(app: &TestApp, slot: &str, sha256: &str, processes: usize) -> Value {
    wait_for_slot(app, slot, |status| {
        let live = status["processes"].as_array().map_or(0, Vec::len);
        status["active"]["sha256"] == sha256 && status["converged"] == true && live == processes
    })
    .await
}

/// The digest of the fulfillment version that decided each order.
async fn deciding_digests(app: &TestApp, orders: &[i64]) -> Vec<String> {
    let mut digests = Vec::new();
    for id in orders {
        let order = app.wait_for_status(*id, "fulfilled", Duration::from_secs(30)).await;
        let records = order["components"].as_array().unwrap();
        let decided = records.iter().find(|record| record["slot"] == "fulfillment").unwrap();
        digests.push(decided["digest"].as_str().unwrap().to_owned());
    }
    digests
}

async fn place_orders(app: &TestApp, product: i64, users: std::ops::Range<u32>) -> Vec<i64> {
    let mut ids = Vec::new();
    for user in users {
        ids.push(app.place_for(user.into(), &[(product, 1)], json!({"region": "us"})).await);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_follow_a_swap_and_a_rollback_and_a_restarted_worker_serves_the_registrys_version() {
    let app = following(Backend::Postgres).await;
    let mug = app.product("MUG", 1250, 1_000).await;
    let standard = sha256(&std::fs::read(wasm("fulfillment-standard")).unwrap());
    let mut workers = [worker_process(&app, &FOLLOWING), worker_process(&app, &FOLLOWING)];
    let status = converged_on(&app, "fulfillment", &standard, 3).await;
    let roles: Vec<&str> =
        status["processes"].as_array().unwrap().iter().map(|process| process["role"].as_str().unwrap()).collect();
    assert_eq!(roles.iter().filter(|role| **role == "worker").count(), 2, "{status}");
    // A worker decides fulfillment only: it loads no other slot, and the other slots list `host serve` alone.
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    for process in app.service.store.processes_seen_since(since).await.unwrap() {
        let serving: Value = serde_json::from_str(&process.serving).unwrap();
        let slots: Vec<&String> = serving.as_object().unwrap().keys().collect();
        let expected =
            if process.role == "worker" { vec!["fulfillment"] } else { vec!["fulfillment", "pricing", "validation"] };
        assert_eq!(slots, expected, "{} serves {serving}", process.role);
    }
    let pricing = slot_status(&app, "pricing").await;
    let roles: Vec<&Value> = pricing["processes"].as_array().unwrap().iter().map(|process| &process["role"]).collect();
    assert_eq!(roles, [&json!("serve")], "{pricing}");

    // The express policy, dropped into the service's folder, reaches both workers.
    let express = std::fs::read(wasm("fulfillment-express")).unwrap();
    drop_component(
        &app.components_dir,
        "fulfillment",
        &express,
        Some(&toml_of("fulfillment-express", "fulfillment")),
        Some(&component_dir("fulfillment-express").join("fixtures")),
    );
    converged_on(&app, "fulfillment", &sha256(&express), 3).await;
    let swapped = place_orders(&app, mug, 0..20).await;
    let digests = deciding_digests(&app, &swapped).await;
    assert!(digests.iter().all(|digest| *digest == sha256(&express)), "decided by the express policy: {digests:?}");

    // A rollback through the admin API: every process goes back.
    assert_eq!(admin(&app, reqwest::Method::POST, "/api/v1/admin/slots/fulfillment/rollback").await.status(), 200);
    converged_on(&app, "fulfillment", &standard, 3).await;
    let restored = place_orders(&app, mug, 20..30).await;
    let digests = deciding_digests(&app, &restored).await;
    assert!(digests.iter().all(|digest| *digest == standard), "decided by the standard policy: {digests:?}");

    // A worker killed and started again loads the registry's active version.
    workers[0].kill().unwrap();
    workers[0].wait().unwrap();
    workers[0] = worker_process(&app, &FOLLOWING);
    let pid = i64::from(workers[0].id());
    let status = wait_for_slot(&app, "fulfillment", |status| {
        let processes = status["processes"].as_array().unwrap();
        processes.iter().any(|process| process["pid"] == pid && process["converged"] == true)
    })
    .await;
    assert_eq!(status["active"]["sha256"], standard.as_str());
    for worker in &mut workers {
        worker.kill().unwrap();
        worker.wait().unwrap();
    }
}

/// `host component push` with `args`, on `app`'s database.
fn push(app: &TestApp, args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_host"));
    command.args(["component", "push"]).args(args).args(["--database-url", &app.database_url]);
    command.env_remove("DATABASE_URL").env("RUST_LOG", "warn").output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_version_with_its_own_fixtures_goes_live_and_a_rejected_one_changes_nothing() {
    let mut options = swapping(1);
    options.swap = Some(SwapSettings { registry_recheck_ms: 500, ..SwapSettings::default() });
    let app = TestApp::spawn_with(Backend::Postgres, options).await;
    let mug = app.product("MUG", 1250, 100).await;
    let express = wasm("fulfillment-express");
    let crate_dir = component_dir("fulfillment-express");
    let (config, fixtures) = (crate_dir.join("fulfillment.toml"), crate_dir.join("fixtures"));
    let os = |path: &std::path::Path| path.as_os_str().to_owned();
    let pushed = push(
        &app,
        &[
            express.as_os_str(),
            "--slot".as_ref(),
            "fulfillment".as_ref(),
            "--config".as_ref(),
            &os(&config),
            "--fixtures".as_ref(),
            &os(&fixtures),
            "--activate".as_ref(),
        ],
    );
    let said = String::from_utf8_lossy(&pushed.stdout);
    assert!(pushed.status.success(), "{said}{}", String::from_utf8_lossy(&pushed.stderr));
    assert!(said.contains("ACCEPTED") && said.contains("activated"), "{said}");
    // The service follows: a policy that decides differently from the one serving goes live,
    // judged by its own fixtures.
    let express_sha = sha256(&std::fs::read(&express).unwrap());
    let status = converged_on(&app, "fulfillment", &express_sha, 1).await;
    assert_eq!(
        (status["active"]["source"].as_str(), status["active"]["on_probation"].as_bool()),
        (Some("cli"), Some(true))
    );
    assert!(status["active"]["added_by"].as_str().unwrap().starts_with("cli "), "{status}");
    let order = app.place_for(1, &[(mug, 1)], json!({"region": "us"})).await;
    let order = app.wait_for_status(order, "fulfilled", Duration::from_secs(15)).await;
    assert_eq!(order["shipment"]["service"], "express", "{order}");

    // A trapping policy is refused by the gate before it reaches the registry.
    let trap = wasm("fixtures/trap-policy");
    let refused = push(
        &app,
        &[
            trap.as_os_str(),
            "--slot".as_ref(),
            "fulfillment".as_ref(),
            "--fixtures".as_ref(),
            &os(&fixtures),
            "--activate".as_ref(),
        ],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stdout));
    let history: Value =
        admin(&app, reqwest::Method::GET, "/api/v1/admin/slots/fulfillment/history").await.json().await.unwrap();
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "the rejected one was not stored: {history:#}");
    let last = history["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["kind"].as_str(), last["source"].as_str()), (Some("rejected"), Some("cli")), "{last}");
    assert_eq!(wait_for_slot(&app, "fulfillment", |_| true).await["active"]["sha256"], express_sha.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_seen_by_one_worker_roll_the_whole_deployment_back() {
    let mut options = swapping(0);
    options.swap = Some(SwapSettings {
        watch_debounce_ms: 100,
        registry_recheck_ms: 500,
        rollback_window_calls: 4,
        ..SwapSettings::default()
    });
    let app = TestApp::spawn_with(Backend::Postgres, options).await;
    let mug = app.product("MUG", 1250, 100).await;
    let worker_settings =
        [("WORKERS", "1"), ("REGISTRY_RECHECK_MS", "500"), ("MAX_ATTEMPTS", "20"), ("ROLLBACK_WINDOW_CALLS", "4")];
    let mut worker = worker_process(&app, &worker_settings);
    let _fixtures = drop_flaky_policy(&app);
    let flaky = sha256(&std::fs::read(wasm("fixtures/trap-policy")).unwrap());
    converged_on(&app, "fulfillment", &flaky, 2).await;
    // Only the worker calls the policy (the service runs no workers): its failures alone decide.
    let doomed = app.place_for(1, &[(mug, 1)], json!({"trap": "yes"})).await;
    let standard = sha256(&std::fs::read(wasm("fulfillment-standard")).unwrap());
    let status = converged_on(&app, "fulfillment", &standard, 2).await;
    assert_eq!(status["active"]["source"], "rollback", "{status}");
    let history: Value =
        admin(&app, reqwest::Method::GET, "/api/v1/admin/slots/fulfillment/history").await.json().await.unwrap();
    let event = history["events"].as_array().unwrap().iter().find(|event| event["kind"] == "auto-rolled-back");
    let event = event.expect("an automatic rollback");
    assert!(event["added_by"].as_str().unwrap().starts_with("worker "), "the worker rolled it back: {event}");
    assert!(event["reason"].as_str().unwrap().contains("of its first"), "{event}");
    let order = app.wait_for_status(doomed, "fulfilled", Duration::from_secs(30)).await;
    assert_eq!(order["shipment"]["carrier"], "postal", "retried on the restored version");
    worker.kill().unwrap();
    worker.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_a_process_refuses_leaves_it_serving_the_old_one_and_shown_as_not_converged() {
    let mut options = swapping(0);
    options.swap = Some(SwapSettings { registry_recheck_ms: 200, converge_within_ms: 500, ..SwapSettings::default() });
    let app = TestApp::spawn_with(Backend::Postgres, options).await;
    let mug = app.product("MUG", 1250, 100).await;
    let pricing = std::fs::read(wasm("pricing")).unwrap();
    // Written into the registry past any gate (as a process with another
    // runtime might accept): fixtures no build of the pricing rule answers.
    let input = std::fs::read_to_string(component_dir("pricing").join("fixtures/promo-code.input.json")).unwrap();
    let fixtures = json!([["wrong.input.json", input], ["wrong.expected.json", "{\"Err\": []}"]]).to_string();
    let fixtures = fixtures.as_str();
    let store = &app.service.store;
    let sha = sha256(&pricing);
    let config = toml_of("pricing", "pricing");
    let id = store
        .add_component_version(&NewVersion {
            slot: "pricing",
            fingerprint: "unjudged",
            sha256: &sha,
            wasm: &pricing,
            config_text: Some(&config),
            fixtures: Some(fixtures),
            component: "pricing",
            version: "0.1.0-unjudged",
            source: "upload",
            added_by: "test",
            gate_report: "{}",
        })
        .await
        .unwrap();
    let event = SlotEventRow {
        slot: "pricing".into(),
        kind: "activated".into(),
        version_id: Some(id),
        component: "pricing".into(),
        version: "0.1.0-unjudged".into(),
        sha256: sha.clone(),
        source: "upload".into(),
        reason: None,
        added_by: "test".into(),
        at: chrono::Utc::now(),
    };
    store.activate_component_version("pricing", id, "upload", Expect::Any, &[event]).await.unwrap();
    let status = wait_for_registry(&app, "pricing", |status| {
        let process = &status["processes"][0];
        status["active"]["id"] == id && process["problem"].is_string() && process["lagging"] == true
    })
    .await;
    assert_eq!(status["converged"], false, "{status}");
    let process = &status["processes"][0];
    assert_ne!(process["serving"]["version_id"], id, "{status}");
    assert!(process["problem"].as_str().unwrap().contains("golden fixtures failed"), "{status}");
    // It keeps serving the version it had.
    assert_eq!(app.order(&[(mug, 1)]).await.status(), 201);
    let ready: Value = app.get("/ready").await.json().await.unwrap();
    assert_eq!(ready["checks"]["registry"]["status"], "up", "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_during_a_swap_leaves_the_others_converged_and_comes_back_on_the_new_version() {
    let app = following(Backend::Postgres).await;
    let standard = sha256(&std::fs::read(wasm("fulfillment-standard")).unwrap());
    let mut workers = [worker_process(&app, &FOLLOWING), worker_process(&app, &FOLLOWING)];
    converged_on(&app, "fulfillment", &standard, 3).await;
    let express = std::fs::read(wasm("fulfillment-express")).unwrap();
    drop_component(
        &app.components_dir,
        "fulfillment",
        &express,
        Some(&toml_of("fulfillment-express", "fulfillment")),
        Some(&component_dir("fulfillment-express").join("fixtures")),
    );
    // The moment the registry names the new version, one worker dies (SIGKILL), mid-swap.
    wait_for_registry(&app, "fulfillment", |status| status["active"]["sha256"] == sha256(&express)).await;
    workers[0].kill().unwrap();
    workers[0].wait().unwrap();
    let survivor = i64::from(workers[1].id());
    let status = wait_for_slot(&app, "fulfillment", |status| {
        let processes = status["processes"].as_array().unwrap();
        processes.iter().any(|process| process["pid"] == survivor && process["converged"] == true)
    })
    .await;
    assert_eq!(status["active"]["sha256"], sha256(&express).as_str());
    // Started again, it loads the registry's (new) version.
    workers[0] = worker_process(&app, &FOLLOWING);
    let restarted = i64::from(workers[0].id());
    wait_for_slot(&app, "fulfillment", |status| {
        let processes = status["processes"].as_array().unwrap();
        processes.iter().any(|process| process["pid"] == restarted && process["converged"] == true)
    })
    .await;
    for worker in &mut workers {
        worker.kill().unwrap();
        worker.wait().unwrap();
    }
}

/// Posts build `tag` of the express policy (its `.toml` and fixtures) to the API at `base`, activated.
fn upload_express(base: String, tag: &str) -> tokio::task::JoinHandle<Option<Value>> {
    let express = rebuilt(&std::fs::read(wasm("fulfillment-express")).unwrap(), tag);
    let fixtures = component_dir("fulfillment-express").join("fixtures");
    let form = version_form(express, Some(toml_of("fulfillment-express", "fulfillment")), &fixtures, "true");
    tokio::spawn(async move {
        let answer = client_with(&admin_token())
            .post(format!("{base}/api/v1/admin/slots/fulfillment/versions"))
            .bearer_auth(admin_token())
            .multipart(form)
            .send()
            .await
            .ok()?;
        answer.json().await.ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_killed_while_it_publishes_a_version_leaves_the_registry_whole_and_every_process_on_its_version() {
    let app = following(Backend::Postgres).await;
    let mug = app.product("MUG", 1250, 1_000).await;
    let (mut api, _folder) = second_api(&app, &[]).await;
    let mut worker = worker_process(&app, &FOLLOWING);
    converged_on(&app, "fulfillment", &sha256(&std::fs::read(wasm("fulfillment-standard")).unwrap()), 3).await;
    // An upload left to finish: how long one takes here, and the kill points spread over it.
    let started = std::time::Instant::now();
    let whole = upload_express(api.admin_url(), "whole").await.unwrap().expect("answered");
    assert_eq!(whole["outcome"], "activated", "{whole}");
    let took = started.elapsed();
    let mut outcomes = Vec::new();
    for (attempt, fraction) in [0.1, 0.4, 0.7, 0.9, 1.0].into_iter().enumerate() {
        let before = wait_for_registry(&app, "fulfillment", |_| true).await["active"]["sha256"].clone();
        let upload = upload_express(api.admin_url(), &format!("killed-{attempt}"));
        tokio::time::sleep(took.mul_f64(fraction)).await;
        api.kill_and_restart(&app).await;
        let answer = upload.await.unwrap();
        // The registry names the version before or the new one, whole: stored, with its activation event.
        let status = wait_for_registry(&app, "fulfillment", |_| true).await;
        let active = status["active"]["sha256"].as_str().unwrap().to_owned();
        let history: Value =
            admin(&app, reqwest::Method::GET, "/api/v1/admin/slots/fulfillment/history").await.json().await.unwrap();
        let activated = history["events"].as_array().unwrap().iter().rev().find(|event| event["kind"] == "activated");
        assert_eq!(
            activated.unwrap()["sha256"],
            active.as_str(),
            "the last activation is the active version: {history:#}"
        );
        let stored = history["versions"].as_array().unwrap().iter().any(|version| version["sha256"] == active.as_str());
        assert!(stored, "the active version is stored: {history:#}");
        if answer.as_ref().is_some_and(|answer| answer["outcome"] == "activated") {
            assert_ne!(before, active.as_str(), "an answered activation holds");
        }
        outcomes.push(if before == active.as_str() { "kept" } else { "activated" });
        // Every live process, the restarted API included, serves it, and orders are decided by it.
        converged_on(&app, "fulfillment", &active, 3).await;
        let orders = place_orders(&app, mug, 100 * attempt as u32..100 * attempt as u32 + 3).await;
        assert!(deciding_digests(&app, &orders).await.iter().all(|digest| *digest == active), "{outcomes:?}");
    }
    // The restarted API still takes a whole upload.
    let last = upload_express(api.admin_url(), "after").await.unwrap().expect("answered");
    assert_eq!(last["outcome"], "activated", "{last}");
    converged_on(&app, "fulfillment", last["report"]["sha256"].as_str().unwrap(), 3).await;
    worker.kill().unwrap();
    worker.wait().unwrap();
}

/// The digest of the pricing version that priced a new order placed through the API at `base`.
async fn pricing_digest(base: &str, product: i64) -> String {
    let body = json!({"user_id": 7, "items": [{"product_id": product, "quantity": 1}]});
    let client = client_with(&back_office_token());
    let answer = client.post(format!("{base}/api/v1/orders")).json(&body).send().await.unwrap();
    assert_eq!(answer.status(), 201);
    let order: Value = answer.json().await.unwrap();
    let records = order["components"].as_array().unwrap();
    let priced = records.iter().find(|record| record["slot"] == "pricing").unwrap();
    priced["digest"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_embedded_file_follow_the_registry_without_notifications() {
    let app = following(Backend::Embedded).await;
    let mug = app.product("MUG", 1250, 1_000).await;
    // A second `host serve` on the same SQLite file.
    let (other, _folder) = second_api(&app, &[("REGISTRY_RECHECK_MS", "500")]).await;
    let pricing = std::fs::read(wasm("pricing")).unwrap();
    converged_on(&app, "pricing", &sha256(&pricing), 2).await;

    // A new build dropped into this process's folder: the other finds it by looking.
    let build = rebuilt(&pricing, "embedded");
    let fixtures = component_dir("pricing").join("fixtures");
    drop_component(&app.components_dir, "pricing", &build, Some(&toml_of("pricing", "pricing")), Some(&fixtures));
    converged_on(&app, "pricing", &sha256(&build), 2).await;
    assert_eq!(pricing_digest(&other.url(), mug).await, sha256(&build));

    // A rollback here: the other process goes back too.
    assert_eq!(admin(&app, reqwest::Method::POST, "/api/v1/admin/slots/pricing/rollback").await.status(), 200);
    converged_on(&app, "pricing", &sha256(&pricing), 2).await;
    assert_eq!(pricing_digest(&other.url(), mug).await, sha256(&pricing));
}

/// A version as the admin API takes it: the `.wasm`, its `.toml`, its fixtures.
fn version_form(
    wasm: Vec<u8>,
    toml: Option<String>,
    fixtures: &std::path::Path,
    activate: &str,
) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new()
        .part("component", reqwest::multipart::Part::bytes(wasm).file_name("component.wasm"))
        .text("activate", activate.to_owned());
    if let Some(toml) = toml {
        form = form.text("config", toml);
    }
    for entry in std::fs::read_dir(fixtures).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        form = form.part("fixtures", reqwest::multipart::Part::bytes(std::fs::read(&path).unwrap()).file_name(name));
    }
    form
}

on_both_backends!(
    the_admin_api_publishes_a_version_with_its_own_fixtures_and_activates_a_stored_one,
    options = swapping(1),
    |app| {
        let mug = app.product("MUG", 1250, 100).await;
        let express = std::fs::read(wasm("fulfillment-express")).unwrap();
        let fixtures = component_dir("fulfillment-express").join("fixtures");
        let toml = toml_of("fulfillment-express", "fulfillment");
        let post = |form| {
            app.client
                .post(app.url("/api/v1/admin/slots/fulfillment/versions"))
                .bearer_auth(admin_token())
                .multipart(form)
                .send()
        };
        // Stored, not activated: the standard policy keeps serving.
        let stored = post(version_form(express.clone(), Some(toml.clone()), &fixtures, "false")).await.unwrap();
        assert_eq!(stored.status(), 200);
        let stored: Value = stored.json().await.unwrap();
        assert_eq!(stored["outcome"], "stored", "{stored}");
        assert!(stored["report"]["fixtures"].as_array().unwrap().iter().all(|case| case["passed"] == true));
        let id = stored["version_id"].as_i64().unwrap();
        assert_eq!(slot_status(&app, "fulfillment").await["active"]["component"], "fulfillment-standard");

        // Activated by its id: new orders follow it.
        let path = format!("/api/v1/admin/slots/fulfillment/versions/{id}/activate");
        let activated = admin(&app, reqwest::Method::POST, &path).await;
        assert_eq!(activated.status(), 200);
        let activated: Value = activated.json().await.unwrap();
        assert_eq!(
            (activated["active"]["id"].as_i64(), activated["active"]["source"].as_str()),
            (Some(id), Some("upload"))
        );
        let order = app.place_for(1, &[(mug, 1)], json!({"region": "us"})).await;
        let order = app.wait_for_status(order, "fulfilled", Duration::from_secs(15)).await;
        assert_eq!(order["shipment"]["service"], "express", "{order}");
        // The same version again changes nothing; against the wrong fixtures it is refused with the report.
        let again: Value =
            post(version_form(express.clone(), Some(toml), &fixtures, "true")).await.unwrap().json().await.unwrap();
        assert_eq!(again["outcome"], "unchanged", "{again}");
        let standard_fixtures = component_dir("fulfillment-standard").join("fixtures");
        let refused = post(version_form(express, None, &standard_fixtures, "true")).await.unwrap();
        let refused = problem(refused, 422).await;
        assert!(refused["report"]["reason"].as_str().unwrap().contains("golden fixtures failed"), "{refused}");

        // Bad forms are problems, and nothing changes.
        let missing = reqwest::multipart::Form::new().text("config", "x");
        let missing = problem(post(missing).await.unwrap(), 422).await;
        assert!(missing["detail"].as_str().unwrap().contains("component"), "{missing}");
        let badly_named = reqwest::multipart::Form::new()
            .part("component", reqwest::multipart::Part::bytes(vec![0u8]))
            .part("fixtures", reqwest::multipart::Part::bytes(b"{}".to_vec()).file_name("../escape.input.json"));
        problem(post(badly_named).await.unwrap(), 422).await;
        let not_a_form =
            app.client.post(app.url("/api/v1/admin/slots/fulfillment/versions")).bearer_auth(admin_token());
        problem(not_a_form.json(&json!({})).send().await.unwrap(), 415).await;
        let unknown =
            admin(&app, reqwest::Method::POST, "/api/v1/admin/slots/fulfillment/versions/999999/activate").await;
        problem(unknown, 404).await;
        assert_eq!(slot_status(&app, "fulfillment").await["active"]["id"].as_i64(), Some(id));
    }
);
