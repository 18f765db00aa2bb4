//! Answers many operations share, stated once for the OpenAPI document.
//! Each set matches a part of the request path every such operation goes
//! through (the body extractor, authentication and scopes, the request deadline), so
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

/// A 401 problem with its `WWW-Authenticate` challenge.
fn unauthenticated() -> RefOr<Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
    let challenge = HeaderBuilder::new()
        .schema(Object::with_type(Type::String))
        .description(Some(
            "`Bearer`, with `error=\"invalid_token\"` and the reason when a token came and did not verify",
        ))
        .build();
    ResponseBuilder::new()
        .description(
            "No bearer token, or one that does not verify (expired, another issuer or audience, a bad signature)",
        )
        .content(PROBLEM_JSON, content)
        .header("WWW-Authenticate", challenge)
        .build()
        .into()
}

/// What authentication can answer: 401 (every operation but health and
/// the OpenAPI document).
pub struct Unauthenticated;

impl IntoResponses for Unauthenticated {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([("401".to_owned(), unauthenticated())])
    }
}

/// What authentication and a scope check can answer: 401 and 403.
pub struct ScopeProblems;

impl IntoResponses for ScopeProblems {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut problems = answers(&[(
            403,
            "The token lacks the scope the operation needs (named in `required_scope`), or acts for another user",
        )]);
        problems.insert("401".to_owned(), unauthenticated());
        problems
    }
}

/// What a caller holding too much at once is answered: 429, with `Retry-After`.
pub struct TooMany;

impl IntoResponses for TooMany {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let description = "The caller holds as many live streams (or keyed orders being placed) as it may at \
                           once, or the service does; retry after `Retry-After` seconds";
        BTreeMap::from([("429".to_owned(), unavailable(description))])
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
