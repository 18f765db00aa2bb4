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

    if app.backend == Backend::Postgres {
        wait_for_registry_listener(&app).await;
    }
    // The registry's listener holds a connection of the pool: closing must not wait for it forever.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(15), app.service.store.close()).await;
    closed.expect("the store closes while the registry is followed");
    let down = app.get("/ready").await;
    assert_eq!(down.status(), 503);
    let down: Value = down.json().await.unwrap();
    assert_eq!(down["checks"]["database"]["status"], "down");
    assert_eq!(app.get("/health").await.status(), 200, "liveness does not depend on the database");
});

/// Waits until the service listens for the registry's notifications (a `LISTEN` session of its database).
async fn wait_for_registry_listener(app: &TestApp) {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(&app.database_url).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'";
    while sqlx::query_scalar::<_, i64>(query).fetch_one(&mut connection).await.unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "the service never listened to the registry");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

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
