//! Answers many operations share, stated once for the OpenAPI document.
//! Each set matches a part of the request path every such operation goes
//! through (the body extractor, the admin check, the request deadline), so
//! listing a set on an operation says what that part can answer.

use std::collections::BTreeMap;

use utoipa::IntoResponses;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{ContentBuilder, Object, Ref, RefOr, ResponseBuilder, Type, response::Response};

/// The problem media type every error is answered in.
pub const PROBLEM_JSON: &str = "application/problem+json";

fn problem(description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
    ResponseBuilder::new().description(description).content(PROBLEM_JSON, content).build().into()
}

fn answers(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    list.iter().map(|(status, description)| (status.to_string(), problem(description))).collect()
}

/// A 503 problem with its `Retry-After` header.
fn unavailable(description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
    let retry_after = HeaderBuilder::new()
        .schema(Object::with_type(Type::Integer))
        .description(Some("Seconds to wait before retrying"))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, content)
        .header("Retry-After", retry_after)
        .build()
        .into()
}

/// What reading a JSON body can answer: 400, 413, 415.
pub struct BodyProblems;

impl IntoResponses for BodyProblems {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        answers(&[
            (400, "The request could not be read: malformed JSON, or a path, query or header value of the wrong form"),
            (413, "The body is larger than the limit (MAX_BODY_BYTES)"),
            (415, "The body is not sent as `Content-Type: application/json`"),
        ])
    }
}

/// What the admin check can answer: 401 and 403.
pub struct AdminProblems;

impl IntoResponses for AdminProblems {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        answers(&[(401, "No admin token (`Authorization: Bearer <token>`)"), (403, "The admin token is not valid")])
    }
}

/// What every operation that waits on a backing service can answer: 503
/// when the database or Redis is down, or the request ran out of time.
pub struct Unavailable;

impl IntoResponses for Unavailable {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let description = "A backing service is down, restarting or busy, or the request did not finish within \
                           REQUEST_TIMEOUT_MS; retry after `Retry-After` seconds";
        BTreeMap::from([("503".to_owned(), unavailable(description))])
    }
}
