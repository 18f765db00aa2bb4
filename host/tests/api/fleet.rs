//! Hot swap across a deployment: `host serve` (the test's service, no
//! workers of its own) and two `host worker` processes on one database.
//! Every process loads the registry's active versions and follows them; a
//! swap and a rollback reach the workers, and a restarted worker serves
//! what the registry says.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, component_dir, wasm};
use crate::processes::worker_process;
use crate::swap::{TOKEN, admin, drop_component, sha256, swapping, toml_of, wait_for_slot};
use host::config::SwapSettings;

/// Workers that look at the registry twice a second (notifications come first anyway).
const FOLLOWING: [(&str, &str); 3] = [("WORKERS", "2"), ("REGISTRY_RECHECK_MS", "500"), ("ADMIN_TOKEN", TOKEN)];

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
    let mut options = swapping(0);
    options.swap = Some(SwapSettings { watch_debounce_ms: 100, registry_recheck_ms: 500, ..SwapSettings::default() });
    let app = TestApp::spawn_with(Backend::Postgres, options).await;
    let mug = app.product("MUG", 1250, 1_000).await;
    let standard = sha256(&std::fs::read(wasm("fulfillment-standard")).unwrap());
    let mut workers = [worker_process(&app, &FOLLOWING), worker_process(&app, &FOLLOWING)];
    let status = converged_on(&app, "fulfillment", &standard, 3).await;
    let roles: Vec<&str> =
        status["processes"].as_array().unwrap().iter().map(|process| process["role"].as_str().unwrap()).collect();
    assert_eq!(roles.iter().filter(|role| **role == "worker").count(), 2, "{status}");

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
