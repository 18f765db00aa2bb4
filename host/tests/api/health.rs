//! `/health` and `/ready`.

use serde_json::Value;

use host::runtime::Slot;

use crate::helpers::{Backend, Options, TestApp};
use crate::on_both_backends;

on_both_backends!(ready_when_everything_is_up_and_503_when_the_database_goes, |app| {
    let health = app.get("/health").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.unwrap(), serde_json::json!({"status": "ok"}));

    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    let expected_redis = if app.backend == Backend::Postgres { "up" } else { "embedded" };
    assert_eq!(ready["checks"]["redis"]["status"], expected_redis);
    for slot in ["validation", "pricing", "fulfillment"] {
        assert_eq!(ready["checks"][format!("slot:{slot}")]["status"], "up", "{ready}");
    }

    app.service.store.close().await;
    let down = app.get("/ready").await;
    assert_eq!(down.status(), 503);
    let down: Value = down.json().await.unwrap();
    assert_eq!(down["checks"]["database"]["status"], "down");
    assert_eq!(app.get("/health").await.status(), 200, "liveness does not depend on the database");
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_slot_makes_the_service_unready() {
    let app =
        TestApp::spawn_with(Backend::Embedded, Options { without: Some(Slot::Fulfillment), ..Options::default() })
            .await;
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["checks"]["slot:fulfillment"]["status"], "empty");
    assert_eq!(ready["checks"]["slot:pricing"]["status"], "up");
}
