//! `/api/v1/admin/slots`: what serves each slot, its calls and history;
//! uploading a component (through the same gate as the components folder)
//! and rolling a slot back. Behind the admin token.

use axum::extract::{DefaultBodyLimit, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::admin::Admin;
use super::documented::AdminProblems;
use super::extract::{ApiPath, WasmBody};
use super::problem::{ApiError, Problem, Result};
use super::state::ApiState;
use crate::rules::swap::gate::MAX_COMPONENT_BYTES;
use crate::rules::swap::{GateReport, Proposal, RollbackError, SlotHistoryView, SlotStatus, Source};
use crate::runtime::Slot;

/// The slot routes.
pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_slots))
        .routes(routes!(slot_history))
        .routes(routes!(upload).layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)))
        .routes(routes!(roll_back))
}

fn slot(name: &str) -> Result<Slot> {
    name.parse().map_err(|message: String| ApiError::not_found(message))
}

/// A slot's name in a path (for the document: the handlers parse it).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum SlotName {
    Validation,
    Pricing,
    Fulfillment,
}

/// A component's `.wasm` bytes (for the document).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
struct Wasm(Vec<u8>);

/// Every slot: the version serving (name, version, sha256, when loaded,
/// calls, errors, p50/p99 call time) and the latest rejection.
#[utoipa::path(get, path = "/admin/slots", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, body = Vec<SlotStatus>),
        AdminProblems,
        (status = 404, description = "The admin API is disabled (no ADMIN_TOKEN)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_slots(_: Admin, State(api): State<ApiState>) -> axum::Json<Vec<SlotStatus>> {
    axum::Json(api.rules.slot_statuses())
}

/// A slot's versions (oldest first) and what happened to it: activations,
/// rejections with their reasons, rollbacks.
#[utoipa::path(get, path = "/admin/slots/{slot}/history", tag = "admin", security(("admin_token" = [])),
    params(("slot" = inline(SlotName), Path, description = "The slot")),
    responses(
        (status = 200, body = SlotHistoryView),
        AdminProblems,
        (status = 404, description = "No such slot, or the admin API is disabled", body = Problem, content_type = "application/problem+json"),
    ))]
async fn slot_history(
    _: Admin,
    State(api): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<SlotHistoryView>> {
    Ok(axum::Json(api.rules.slot_history(slot(&name)?)))
}

/// The outcome of an upload that serves.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadOutcome {
    /// `activated`, or `unchanged` (it serves already).
    pub outcome: String,
    /// The gate's report (absent when unchanged).
    pub report: Option<GateReport>,
}

/// Uploads a component (`.wasm` bytes as the body) for a slot, with the
/// slot's current `.toml`. It goes through the gate; if it passes it serves
/// at once and is written to the components folder, and if not, the slot
/// keeps its version and the answer is a 422 problem carrying the report.
#[utoipa::path(put, path = "/admin/slots/{slot}/component", tag = "admin", security(("admin_token" = [])),
    params(("slot" = inline(SlotName), Path, description = "The slot")),
    request_body(content = Wasm, content_type = "application/wasm"),
    responses(
        (status = 200, description = "Activated, or already serving", body = UploadOutcome),
        (status = 400, description = "The body could not be read", body = Problem, content_type = "application/problem+json"),
        AdminProblems,
        (status = 404, description = "No such slot, or the admin API is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than 32 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not sent as `Content-Type: application/wasm`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Rejected by the gate: the problem's `report` says why (`outcome` is `rejected`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The request did not finish within REQUEST_TIMEOUT_MS", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
async fn upload(
    _: Admin,
    State(api): State<ApiState>,
    ApiPath(name): ApiPath<String>,
    WasmBody(wasm): WasmBody,
) -> Result<axum::Json<UploadOutcome>> {
    let slot = slot(&name)?;
    let (_, toml) = crate::runtime::slot::slot_files(&api.rules.swaps().dir, slot);
    let config_text = tokio::fs::read_to_string(&toml).await.ok();
    let (outcome, report) = match api.rules.propose(slot, wasm.to_vec(), config_text, Source::Upload).await {
        Proposal::Activated(report) => ("activated", Some(report)),
        Proposal::Unchanged => ("unchanged", None),
        Proposal::Rejected(report) => return Err(ApiError::ComponentRejected { report: Box::new(report) }),
    };
    Ok(axum::Json(UploadOutcome { outcome: outcome.into(), report }))
}

/// Sends a slot back to its last known good version (the newest earlier
/// version that was not rolled back for failing), and writes it back to the
/// components folder.
#[utoipa::path(post, path = "/admin/slots/{slot}/rollback", tag = "admin", security(("admin_token" = [])),
    params(("slot" = inline(SlotName), Path, description = "The slot")),
    responses(
        (status = 200, description = "The slot as it is now", body = SlotStatus),
        AdminProblems,
        (status = 404, description = "No such slot, or the admin API is disabled", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No earlier version to go back to", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The request did not finish within REQUEST_TIMEOUT_MS", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    ))]
async fn roll_back(
    _: Admin,
    State(api): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<SlotStatus>> {
    let slot = slot(&name)?;
    api.rules.roll_back(slot, "rolled back by an operator").await.map_err(|error| match error {
        RollbackError::NothingToRestore(_) => ApiError::Conflict { detail: error.to_string() },
    })?;
    let status = api.rules.slot_statuses().into_iter().find(|status| status.slot == slot.name());
    Ok(axum::Json(status.expect("every slot has a status")))
}
