//! `/api/v1/admin/slots`: what serves each slot, its calls and history;
//! uploading a component (through the same gate as the components folder)
//! and rolling a slot back. Behind the admin token.

use axum::extract::{DefaultBodyLimit, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::admin::Admin;
use super::documented::{ScopeProblems, Unavailable};
use super::extract::{ApiPath, WasmBody};
use super::problem::{ApiError, Problem, Result};
use super::state::ApiState;
use crate::orders::OrderError;
use crate::rules::swap::gate::MAX_COMPONENT_BYTES;
use crate::rules::swap::{Change, GateReport, Proposal, SlotHistoryView, SlotStatus, Source, SwapError};
use crate::runtime::Slot;

/// The slot routes.
pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_slots))
        .routes(routes!(slot_history))
        .routes(routes!(upload).layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)))
        .routes(routes!(roll_back))
}

pub(super) fn slot(name: &str) -> Result<Slot> {
    name.parse().map_err(|message: String| ApiError::not_found(message))
}

/// The answer to a change of a slot that could not be made.
pub(super) fn swap_problem(error: SwapError) -> ApiError {
    match error {
        SwapError::NothingToRestore(_) => ApiError::Conflict { detail: error.to_string() },
        SwapError::UnknownVersion { .. } => ApiError::not_found(error.to_string()),
        SwapError::Registry(store) => OrderError::from(store).into(),
    }
}

/// A slot's name in a path (for the document: the handlers parse it).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub(super) enum SlotName {
    Validation,
    Pricing,
    Fulfillment,
}

/// A component's `.wasm` bytes (for the document).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
struct Wasm(Vec<u8>);

/// Every slot: the registry's active version (name, version, sha256, what
/// activated it, probation; its calls in this process), what every live
/// process serves and whether it converged, and the latest rejection.
#[utoipa::path(get, path = "/admin/slots", tag = "admin", security(("bearer" = ["admin"])),
    responses(
        (status = 200, body = Vec<SlotStatus>),
        ScopeProblems,
        Unavailable,
    ))]
async fn list_slots(_: Admin, State(api): State<ApiState>) -> Result<axum::Json<Vec<SlotStatus>>> {
    let statuses = api.rules.slot_statuses().await.map_err(|error| swap_problem(error.into()))?;
    Ok(axum::Json(statuses))
}

/// A slot's versions (oldest first) and what happened to it: activations,
/// rejections with their reasons, rollbacks.
#[utoipa::path(get, path = "/admin/slots/{slot}/history", tag = "admin", security(("bearer" = ["admin"])),
    params(("slot" = inline(SlotName), Path, description = "The slot")),
    responses(
        (status = 200, body = SlotHistoryView),
        ScopeProblems,
        (status = 404, description = "No such slot", body = Problem, content_type = "application/problem+json"),
        Unavailable,
    ))]
async fn slot_history(
    _: Admin,
    State(api): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<SlotHistoryView>> {
    let history = api.rules.slot_history(slot(&name)?).await.map_err(|error| swap_problem(error.into()))?;
    Ok(axum::Json(history))
}

/// The outcome of an upload the gate accepted.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadOutcome {
    /// `activated`, `stored` (in the registry, not activated), or
    /// `unchanged` (it is the active version already).
    pub outcome: String,
    /// The registry's id of a stored version (to activate it later).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<i64>,
    /// The gate's report (absent when unchanged).
    pub report: Option<GateReport>,
}

impl UploadOutcome {
    pub(super) fn new(outcome: &str, version_id: Option<i64>, report: Option<GateReport>) -> Self {
        Self { outcome: outcome.into(), version_id, report }
    }
}

/// Uploads a component (`.wasm` bytes as the body) for a slot, with the
/// slot's current `.toml`. It goes through the gate; if it passes it serves
/// at once and is written to the components folder, and if not, the slot
/// keeps its version and the answer is a 422 problem carrying the report.
#[utoipa::path(put, path = "/admin/slots/{slot}/component", tag = "admin", security(("bearer" = ["admin"])),
    params(("slot" = inline(SlotName), Path, description = "The slot")),
    request_body(content = Wasm, content_type = "application/wasm"),
    responses(
        (status = 200, description = "Activated, or already serving", body = UploadOutcome),
        (status = 400, description = "The body could not be read", body = Problem, content_type = "application/problem+json"),
        ScopeProblems,
        (status = 404, description = "No such slot", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than 32 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not sent as `Content-Type: application/wasm`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Rejected by the gate: the problem's `report` says why (`outcome` is `rejected`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The request did not finish within REQUEST_TIMEOUT_MS", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
async fn upload(
    Admin(operator): Admin,
    State(api): State<ApiState>,
    ApiPath(name): ApiPath<String>,
    WasmBody(wasm): WasmBody,
) -> Result<axum::Json<UploadOutcome>> {
    let slot = slot(&name)?;
    let change = Change::by(Source::Upload, operator.0.actor());
    let proposed = api.rules.propose_build(slot, wasm.to_vec(), change).await.map_err(swap_problem)?;
    let (outcome, report) = match proposed {
        Proposal::Activated(report) => ("activated", Some(report)),
        Proposal::Unchanged => ("unchanged", None),
        Proposal::Stored { report, .. } => ("stored", Some(report)),
        Proposal::Rejected(report) => return Err(ApiError::ComponentRejected { report: Box::new(report) }),
    };
    tracing::info!(slot = slot.name(), outcome, actor = operator.0.actor(), "component uploaded");
    Ok(axum::Json(UploadOutcome::new(outcome, None, report)))
}

/// Sends a slot back to its last known good version (the newest earlier
/// version that was not rolled back for failing), and writes it back to the
/// components folder.
#[utoipa::path(post, path = "/admin/slots/{slot}/rollback", tag = "admin", security(("bearer" = ["admin"])),
    params(("slot" = inline(SlotName), Path, description = "The slot")),
    responses(
        (status = 200, description = "The slot as it is now", body = SlotStatus),
        ScopeProblems,
        (status = 404, description = "No such slot", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No earlier version to go back to", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The request did not finish within REQUEST_TIMEOUT_MS", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
async fn roll_back(
    Admin(operator): Admin,
    State(api): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<SlotStatus>> {
    let slot = slot(&name)?;
    let by = Some(operator.0.actor());
    api.rules.roll_back(slot, "rolled back by an operator", by).await.map_err(swap_problem)?;
    let statuses = api.rules.slot_statuses().await.map_err(|error| swap_problem(error.into()))?;
    let status = statuses.into_iter().find(|status| status.slot == slot.name());
    Ok(axum::Json(status.expect("every slot has a status")))
}
