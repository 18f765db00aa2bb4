//! `/api/v1/admin`: the operator's view of the fulfillment queue. Every
//! admin route needs a token with the `admin` scope: 401 without a valid
//! token, 403 with one that lacks the scope.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::documented::{ScopeProblems, Unavailable};
use super::extract::{ApiPath, ApiQuery};
use super::problem::{ApiError, Problem, Result, correlation_id};
use super::state::ApiState;
use crate::fulfillment::{DeadLetter, QueueDepth};

/// The admin routes.
pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(queue_status)).routes(routes!(dead_letters)).routes(routes!(requeue))
}

/// Proof that the caller is an operator: a token with the `admin` scope.
pub use super::auth::Operator as Admin;

/// Where the fulfillment jobs are.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueStatus {
    /// `redis` or `database` (no Redis configured).
    pub backend: String,
    #[serde(flatten)]
    pub depth: QueueDepth,
}

/// How many fulfillment jobs are queued, held by workers, waiting to retry, and dead.
#[utoipa::path(get, path = "/admin/queue", tag = "admin", security(("bearer" = ["admin"])),
    responses(
        (status = 200, body = QueueStatus),
        ScopeProblems,
        Unavailable,
    ))]
async fn queue_status(_: Admin, State(api): State<ApiState>) -> Result<axum::Json<QueueStatus>> {
    let depth = api.fulfillment.depth().await?;
    Ok(axum::Json(QueueStatus { backend: api.fulfillment.queue().backend().into(), depth }))
}

/// `?limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// At most this many, newest first (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Jobs that failed too often, newest first, with their last error.
#[utoipa::path(get, path = "/admin/dead-letters", tag = "admin", security(("bearer" = ["admin"])), params(DeadLetterQuery),
    responses(
        (status = 200, description = "The dead letters", body = Vec<DeadLetter>),
        (status = 400, description = "A limit out of its bounds", body = Problem, content_type = "application/problem+json"),
        ScopeProblems,
        Unavailable,
    ))]
async fn dead_letters(
    _: Admin,
    State(api): State<ApiState>,
    ApiQuery(query): ApiQuery<DeadLetterQuery>,
) -> Result<axum::Json<Vec<DeadLetter>>> {
    let limit = match query.limit {
        None => 100,
        Some(limit @ 1..=1000) => limit as usize,
        Some(_) => return Err(ApiError::BadRequest { detail: "limit must be from 1 to 1000".into() }),
    };
    Ok(axum::Json(api.fulfillment.dead_letters(limit).await?))
}

/// Puts a dead letter back to work; its held order returns to `processing`.
#[utoipa::path(post, path = "/admin/dead-letters/{id}/requeue", tag = "admin", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "The dead letter's `id`")),
    responses(
        (status = 200, description = "Requeued", body = DeadLetter),
        ScopeProblems,
        (status = 404, description = "No such dead letter", body = Problem, content_type = "application/problem+json"),
        Unavailable,
    ))]
async fn requeue(
    admin: Admin,
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<DeadLetter>> {
    let requeued = api.fulfillment.requeue_dead_letter(&id, &correlation_id()).await?;
    let letter = requeued.ok_or_else(|| ApiError::not_found(format!("no dead letter {id}")))?;
    tracing::info!(dead_letter = %id, order_id = letter.order_id, actor = admin.0.0.actor(), "dead letter requeued");
    Ok(axum::Json(letter))
}
