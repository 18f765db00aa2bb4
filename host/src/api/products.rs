//! `/api/v1/products`: the catalogue.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::CatalogWriter;
use super::documented::{BodyProblems, ScopeProblems, Unauthenticated, Unavailable};
use super::extract::{ApiJson, ApiPath, ApiQuery, PathId};
use super::page::{PageQuery, next_cursor};
use super::problem::{ApiError, Problem, Result};
use super::state::ApiState;
use crate::domain::Product;
use crate::domain::input::{CreateProductRequest, UpdateProductRequest};

/// The product routes.
pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(create_product, list_products)).routes(routes!(get_product, update_product))
}

/// A page of products.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProductPage {
    /// The products, by ascending id.
    pub items: Vec<Product>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Adds a product to the catalogue.
#[utoipa::path(post, path = "/products", tag = "products", request_body = CreateProductRequest,
    security(("bearer" = ["catalog:write"])),
    responses(
        (status = 201, description = "Created", body = Product,
            headers(("Location" = String, description = "The product's address")),
            links(
                ("GetProduct" = (operation_id = "get_product", parameters(("id" = "$response.body#/id")))),
                ("UpdateProduct" = (operation_id = "update_product", parameters(("id" = "$response.body#/id")))),
                ("OrderIt" = (operation_id = "create_order",
                    request_body = json!({"user_id": 1, "product_id": "$response.body#/id", "quantity": 1}))),
            )),
        (status = 409, description = "The SKU is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (listed)", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ScopeProblems,
        Unavailable,
    ))]
async fn create_product(
    _: CatalogWriter,
    State(api): State<ApiState>,
    ApiJson(request): ApiJson<CreateProductRequest>,
) -> Result<impl IntoResponse> {
    let product = request.parse(api.orders.default_currency()).map_err(ApiError::violations)?;
    let created = api.orders.create_product(&product).await?;
    let location = format!("/api/v1/products/{}", created.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], axum::Json(created)))
}

/// Lists products by ascending id, a page at a time.
#[utoipa::path(get, path = "/products", tag = "products", params(PageQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page", body = ProductPage),
        (status = 400, description = "A limit or cursor out of its bounds", body = Problem, content_type = "application/problem+json"),
        Unauthenticated,
        Unavailable,
    ))]
async fn list_products(
    State(api): State<ApiState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<axum::Json<ProductPage>> {
    let (limit, after) = query.resolve()?;
    let items = api.orders.list_products(after, limit).await?;
    let next_cursor = next_cursor(&items, limit, |product| product.id);
    Ok(axum::Json(ProductPage { items, next_cursor }))
}

/// The product's id in a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
pub struct ProductId(
    /// The product's id.
    pub i64,
);

/// One product.
#[utoipa::path(get, path = "/products/{id}", tag = "products", params(ProductId), security(("bearer" = [])),
    responses(
        (status = 200, description = "The product", body = Product),
        (status = 400, description = "The id is not a 64-bit integer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        Unauthenticated,
        Unavailable,
    ))]
async fn get_product(State(api): State<ApiState>, ApiPath(PathId(id)): ApiPath<PathId>) -> Result<axum::Json<Product>> {
    Ok(axum::Json(api.orders.product(id).await?))
}

/// Changes a product's name, price, stock or availability; the cached copy is dropped.
#[utoipa::path(patch, path = "/products/{id}", tag = "products", params(ProductId),
    request_body = UpdateProductRequest, security(("bearer" = ["catalog:write"])),
    responses(
        (status = 200, description = "The updated product", body = Product),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Nothing to change, an unknown field, a `null`, or invalid fields (listed)", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
        ScopeProblems,
        Unavailable,
    ))]
async fn update_product(
    _: CatalogWriter,
    State(api): State<ApiState>,
    ApiPath(PathId(id)): ApiPath<PathId>,
    ApiJson(changes): ApiJson<UpdateProductRequest>,
) -> Result<axum::Json<Product>> {
    changes.check().map_err(ApiError::violations)?;
    let updated = api.orders.update_product(id, &changes).await?;
    Ok(axum::Json(updated))
}
