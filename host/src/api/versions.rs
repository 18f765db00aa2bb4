//! `/api/v1/admin/slots/{slot}/versions`: publishing a whole version (its
//! `.wasm`, its own `.toml` and golden fixtures, in one form) to the
//! component registry, and activating a stored version. Every process of
//! the deployment follows the registry. Behind the admin token.

use axum::extract::multipart::Field;
use axum::extract::{DefaultBodyLimit, State};
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::admin::Admin;
use super::documented::{ScopeProblems, Unavailable};
use super::extract::{ApiPath, FormBody, PathId, form_error};
use super::problem::{ApiError, Problem, Result};
use super::slots::{SlotName, UploadOutcome, slot, swap_problem};
use super::state::ApiState;
use crate::rules::swap::gate::{Fixtures, MAX_COMPONENT_BYTES};
use crate::rules::swap::{Candidate, Change, Proposal, SlotStatus, Source};

/// The version routes.
pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(publish_version).layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)))
        .routes(routes!(activate_version))
}

/// A version as a form (for the document: the handler reads the parts,
/// and refuses any other).
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct VersionForm {
    /// The component's `.wasm`.
    #[schema(value_type = String, format = Binary)]
    component: Vec<u8>,
    /// Its `.toml` (name, version, limits, grants, settings).
    // Optional parts, never `null`: a part sent holds a value.
    #[schema(nullable = false)]
    config: Option<String>,
    /// Its golden fixtures: files named `<case>.input.json` and `<case>.expected.json`.
    #[schema(value_type = Option<Vec<String>>, format = Binary, nullable = false)]
    fixtures: Option<Vec<Vec<u8>>>,
    /// Whether it becomes the active version at once (default `true`).
    #[schema(nullable = false)]
    activate: Option<bool>,
}

/// What the form held.
struct VersionUpload {
    candidate: Candidate,
    activate: bool,
}

/// Publishes a version with its own `.toml` and golden fixtures: judged by
/// the gate against those fixtures (so a rule that decides differently on
/// purpose can go live), stored in the registry, and with `activate` (the
/// default) made the active version, which every process then serves.
#[utoipa::path(post, path = "/admin/slots/{slot}/versions", tag = "admin", security(("bearer" = ["admin"])),
    params(("slot" = inline(SlotName), Path, description = "The slot")),
    request_body(content = inline(VersionForm), content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Activated, stored, or already the active version", body = UploadOutcome),
        (status = 400, description = "The form could not be read", body = Problem, content_type = "application/problem+json"),
        ScopeProblems,
        (status = 404, description = "No such slot", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than 32 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not sent as `multipart/form-data`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A part is missing or wrong, or the gate rejected the version (the problem's `report` says why)", body = Problem, content_type = "application/problem+json"),
        Unavailable,
    ))]
async fn publish_version(
    Admin(operator): Admin,
    State(api): State<ApiState>,
    ApiPath(name): ApiPath<String>,
    FormBody(mut form): FormBody,
) -> Result<axum::Json<UploadOutcome>> {
    let slot = slot(&name)?;
    let upload = read_form(&mut form).await?;
    let change = Change::by(Source::Upload, operator.0.actor());
    let published = api.rules.publish(slot, upload.candidate, change, upload.activate).await;
    let outcome = match published.map_err(swap_problem)? {
        Proposal::Activated(report) => UploadOutcome::new("activated", None, Some(report)),
        Proposal::Stored { version_id, report } => UploadOutcome::new("stored", Some(version_id), Some(report)),
        Proposal::Unchanged => UploadOutcome::new("unchanged", None, None),
        Proposal::Rejected(report) => return Err(ApiError::ComponentRejected { report: Box::new(report) }),
    };
    tracing::info!(slot = slot.name(), outcome = %outcome.outcome, actor = operator.0.actor(), "version published");
    Ok(axum::Json(outcome))
}

/// Makes a stored version the slot's active version; every process follows.
#[utoipa::path(post, path = "/admin/slots/{slot}/versions/{id}/activate", tag = "admin", security(("bearer" = ["admin"])),
    params(("slot" = inline(SlotName), Path, description = "The slot"), ("id" = i64, Path, description = "The version's id in the registry")),
    responses(
        (status = 200, description = "The slot as it is now", body = SlotStatus),
        (status = 400, description = "The id is not a number", body = Problem, content_type = "application/problem+json"),
        ScopeProblems,
        (status = 404, description = "No such slot or version", body = Problem, content_type = "application/problem+json"),
        Unavailable,
    ))]
async fn activate_version(
    Admin(operator): Admin,
    State(api): State<ApiState>,
    ApiPath((name, id)): ApiPath<(String, PathId)>,
) -> Result<axum::Json<SlotStatus>> {
    let (slot, PathId(id)) = (slot(&name)?, id);
    api.rules.activate_version(slot, id, Change::by(Source::Upload, operator.0.actor())).await.map_err(swap_problem)?;
    tracing::info!(slot = slot.name(), version_id = id, actor = operator.0.actor(), "version activated");
    let statuses = api.rules.slot_statuses().await.map_err(|error| swap_problem(error.into()))?;
    let status = statuses.into_iter().find(|status| status.slot == slot.name());
    Ok(axum::Json(status.expect("every slot has a status")))
}

/// Reads the form's parts: `component` (required), `config`, any number of
/// `fixtures` files, `activate`.
async fn read_form(form: &mut axum::extract::Multipart) -> Result<VersionUpload> {
    let (mut wasm, mut config_text, mut files, mut activate) = (None, None, Vec::new(), true);
    while let Some(field) = form.next_field().await.map_err(form_error)? {
        let part = field.name().unwrap_or_default().to_owned();
        match part.as_str() {
            "component" => wasm = Some(bytes(field).await?),
            "config" => config_text = Some(text(field, "config").await?),
            "fixtures" => files.push(fixture(field).await?),
            "activate" => activate = flag(&text(field, "activate").await?)?,
            other => {
                return Err(unprocessable(format!(
                    "unknown part `{other}`: send component, config, fixtures, activate"
                )));
            }
        }
    }
    let wasm = wasm.ok_or_else(|| unprocessable("the form needs a `component` part: the .wasm".into()))?;
    let fixtures = if files.is_empty() { Fixtures::None } else { Fixtures::Files(files.into()) };
    Ok(VersionUpload { candidate: Candidate { wasm, config_text, fixtures }, activate })
}

async fn bytes(field: Field<'_>) -> Result<Vec<u8>> {
    Ok(field.bytes().await.map_err(form_error)?.to_vec())
}

async fn text(field: Field<'_>, part: &str) -> Result<String> {
    String::from_utf8(bytes(field).await?).map_err(|_| unprocessable(format!("`{part}` must be UTF-8 text")))
}

/// A fixture file: its name says which case and which side it is.
async fn fixture(field: Field<'_>) -> Result<(String, Vec<u8>)> {
    let name = field.file_name().unwrap_or_default().to_owned();
    let plain = !name.contains(['/', '\\']) && !name.starts_with('.');
    let stem = name.strip_suffix(".input.json").or_else(|| name.strip_suffix(".expected.json"));
    if !plain || stem.is_none_or(str::is_empty) {
        let detail = format!("fixture file `{name}`: name it <case>.input.json or <case>.expected.json");
        return Err(unprocessable(detail));
    }
    Ok((name, bytes(field).await?))
}

fn flag(value: &str) -> Result<bool> {
    match value.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(unprocessable(format!("`activate` must be true or false, not `{other}`"))),
    }
}

fn unprocessable(detail: String) -> ApiError {
    ApiError::Unprocessable { detail }
}
