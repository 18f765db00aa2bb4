//! `/health` (liveness) and `/ready` (can this instance serve?).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::state::ApiState;

/// The health routes (outside `/api/v1`).
pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(ready))
}

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

/// Readiness: 200 when the database and Redis answer and every slot holds a
/// component, 503 otherwise (with each check).
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn ready(State(api): State<ApiState>) -> (StatusCode, axum::Json<Readiness>) {
    let readiness = api.health.readiness().await;
    let ready = readiness.is_ready();
    let checks = readiness
        .checks
        .into_iter()
        .map(|(name, check)| (name, Check { status: check.status.into(), detail: check.detail }))
        .collect();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let readiness = Readiness { status: if ready { "ready" } else { "unavailable" }.into(), checks };
    (status, axum::Json(readiness))
}
