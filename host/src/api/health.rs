//! `/health` (liveness) and `/ready` (can this instance serve?).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::runtime::Slot;
use crate::service::Service;

/// The health routes (outside `/api/v1`).
pub fn router() -> OpenApiRouter<Arc<Service>> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(ready))
}

/// How long a dependency may take to answer a readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves requests.
    pub status: String,
}

/// One dependency's state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// `up`, `down`, `empty` (a slot with no component) or `embedded`.
    pub status: String,
    /// What it is: backend name, or `name@version` of a component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Readiness: every dependency and slot.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready`, or `unavailable` when any check is `down` or `empty`.
    pub status: String,
    /// One entry per dependency: `database`, `redis`, `slot:<name>`.
    pub checks: BTreeMap<String, Check>,
}

/// Liveness: answers while the process is up.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = Health)))]
async fn health() -> axum::Json<Health> {
    axum::Json(Health { status: "ok".into() })
}

fn check(status: &str, detail: impl Into<Option<String>>) -> Check {
    Check { status: status.into(), detail: detail.into() }
}

/// Readiness: the database, Redis and each slot; 503 when one is not there.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn ready(State(service): State<Arc<Service>>) -> (StatusCode, axum::Json<Readiness>) {
    let mut checks = BTreeMap::new();
    let backend = service.store.backend().name().to_owned();
    let database = match tokio::time::timeout(PROBE_TIMEOUT, service.store.ping()).await {
        Ok(Ok(())) => check("up", backend),
        Ok(Err(error)) => check("down", format!("{backend}: {error}")),
        Err(_) => check("down", format!("{backend}: no answer within {PROBE_TIMEOUT:?}")),
    };
    checks.insert("database".into(), database);
    let redis = match &service.redis {
        None => check("embedded", "in-process cache".to_owned()),
        Some(connection) => {
            let mut connection = connection.clone();
            let command = redis::cmd("PING");
            let ping = command.query_async::<String>(&mut connection);
            match tokio::time::timeout(PROBE_TIMEOUT, ping).await {
                Ok(Ok(_)) => check("up", None),
                Ok(Err(error)) => check("down", error.to_string()),
                Err(_) => check("down", format!("no answer within {PROBE_TIMEOUT:?}")),
            }
        }
    };
    checks.insert("redis".into(), redis);
    for slot in Slot::ALL {
        let state = match service.slots.get(slot) {
            Some(component) => check("up", format!("{}@{}", component.name, component.version)),
            None => check("empty", None),
        };
        checks.insert(format!("slot:{}", slot.name()), state);
    }
    let ready = checks.values().all(|check| check.status == "up" || check.status == "embedded");
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let readiness = Readiness { status: if ready { "ready" } else { "unavailable" }.into(), checks };
    (status, axum::Json(readiness))
}
