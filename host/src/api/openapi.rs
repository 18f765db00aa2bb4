//! The OpenAPI document's frame and the last touches the derive macros
//! cannot make; paths come from the routers themselves, so the document
//! lists exactly the routes that are served.

use serde_json::Value;
use utoipa::OpenApi;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};

/// The public API's document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Orderly", description = "An order service whose business rules are WebAssembly components."),
    tags(
        (name = "products", description = "The catalogue"),
        (name = "orders", description = "Placing and following orders"),
        (name = "health", description = "Liveness and readiness"),
    ),
    modifiers(&BearerToken)
)]
pub struct ApiDoc;

/// The admin API's document, served on the admin listener.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Orderly admin",
        description = "The operator's API (a token with the `admin` scope), on its own listener: components, slots, the fulfillment queue."
    ),
    tags(
        (name = "admin", description = "The operator's view"),
        (name = "health", description = "Liveness and readiness"),
    ),
    modifiers(&BearerToken)
)]
pub struct AdminDoc;

/// Declares the bearer token every operation but health and this document
/// needs: an OAuth 2.0 JWT access token; each operation lists the scopes
/// it needs (`orders`, `orders:all`, `catalog:write`, `admin`).
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some("An OAuth 2.0 JWT access token (RFC 9068); its `scope` claim says what it may do"))
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// `PATCH /products/{id}` needs at least one field. Set on the finished
/// document (the routers add their schemas after the frame's modifiers
/// run), and not by attribute: utoipa 5.5's `min_properties` writes
/// `maxProperties`.
fn at_least_one_change(document: &mut Document) {
    let schemas = document.components.as_mut().map(|components| &mut components.schemas);
    if let Some(RefOr::T(Schema::Object(change))) = schemas.and_then(|schemas| schemas.get_mut("UpdateProductRequest"))
    {
        change.min_properties = Some(1);
    }
}

/// The two shapes of an order exclude each other's fields, as the handler
/// does (a body with `items` and `product_id` or `quantity` is refused): so
/// a body carrying both is valid as neither, not as the one whose extra
/// members go unchecked.
fn exclusive_order_shapes(json: &mut Value) {
    let schemas = &mut json["components"]["schemas"];
    if let Some(items) = schemas.get_mut("OrderOfItems").and_then(Value::as_object_mut) {
        let shorthand = serde_json::json!({"anyOf": [{"required": ["product_id"]}, {"required": ["quantity"]}]});
        items.insert("not".into(), shorthand);
    }
    if let Some(line) = schemas.get_mut("OrderOfOneLine").and_then(Value::as_object_mut) {
        line.insert("not".into(), serde_json::json!({"required": ["items"]}));
    }
}

/// The document as served. utoipa 5.5 writes a link's members in snake case
/// (`operation_id`); OpenAPI spells them in camel case, and a client that
/// follows links (schemathesis's stateful phase among them) reads only that.
pub fn render(mut document: Document) -> String {
    at_least_one_change(&mut document);
    let mut json = serde_json::to_value(&document).unwrap_or_default();
    exclusive_order_shapes(&mut json);
    if let Some(paths) = json.get_mut("paths").and_then(Value::as_object_mut) {
        let operations = paths.values_mut().filter_map(Value::as_object_mut).flat_map(|path| path.values_mut());
        let responses = operations.filter_map(|operation| operation.get_mut("responses")?.as_object_mut());
        for response in responses.flat_map(|responses| responses.values_mut()) {
            let links = response.get_mut("links").and_then(Value::as_object_mut);
            for link in links.into_iter().flat_map(|links| links.values_mut()).filter_map(Value::as_object_mut) {
                for (snake, camel) in [
                    ("operation_id", "operationId"),
                    ("operation_ref", "operationRef"),
                    ("request_body", "requestBody"),
                ] {
                    if let Some(value) = link.remove(snake) {
                        link.insert(camel.into(), value);
                    }
                }
            }
        }
    }
    serde_json::to_string_pretty(&json).unwrap_or_default()
}
