//! Extractors that answer rejections as problems: axum's own rejections are
//! plain text, which our clients must never see.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::problem::ApiError;

/// `axum::Json`, with problem answers: 400 bad syntax, 413 too large,
/// 415 not JSON, 422 wrong shape.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(error) => ApiError::Unprocessable { detail: error.body_text() },
        JsonRejection::JsonSyntaxError(error) => ApiError::BadRequest { detail: error.body_text() },
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType { detail: "send the body as Content-Type: application/json".into() }
        }
        JsonRejection::BytesRejection(error) if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge { detail: "the request body exceeds the size limit".into() }
        }
        other => ApiError::BadRequest { detail: other.body_text() },
    }
}

/// `axum::extract::Path`, with problem answers (400).
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

/// An id in a path, read as JSON Schema counts integers (the document says
/// `integer`): `3`, or `3.0` with a zero fraction, as a JSON body may write
/// it too. Anything else, or past 64 bits, is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathId(pub i64);

impl<'de> serde::Deserialize<'de> for PathId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let digits = match text.split_once('.') {
            Some((whole, fraction)) if !fraction.is_empty() && fraction.bytes().all(|byte| byte == b'0') => whole,
            Some(_) => return Err(serde::de::Error::custom(format!("{text} is not a whole number"))),
            None => &text,
        };
        digits.parse().map(PathId).map_err(|_| serde::de::Error::custom(format!("{text} is not a 64-bit integer")))
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::BadRequest { detail: rejection.body_text() }
}

/// `axum::extract::Query`, with problem answers (400).
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::BadRequest { detail: rejection.body_text() }
}

/// A component's bytes: the body sent as `application/wasm`, with problem
/// answers (415 for another media type, 413 over the upload limit).
pub struct WasmBody(pub axum::body::Bytes);

/// The media type of an uploaded component.
pub const WASM: &str = "application/wasm";

impl<S: Send + Sync> FromRequest<S> for WasmBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let media_type = request.headers().get(axum::http::header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
        let essence = media_type.and_then(|value| value.split(';').next()).map(str::trim);
        if !essence.is_some_and(|essence| essence.eq_ignore_ascii_case(WASM)) {
            return Err(ApiError::UnsupportedMediaType {
                detail: format!("send the component as Content-Type: {WASM}"),
            });
        }
        match axum::body::Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::TooLarge { detail: "the component exceeds the upload limit".into() })
            }
            Err(rejection) => Err(ApiError::BadRequest { detail: rejection.body_text() }),
        }
    }
}

/// A `multipart/form-data` body, with problem answers: 415 for another
/// media type, 400 for a malformed body, 413 over the upload limit.
pub struct FormBody(pub axum::extract::Multipart);

impl<S: Send + Sync> FromRequest<S> for FormBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let media_type = request.headers().get(axum::http::header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
        let essence = media_type.and_then(|value| value.split(';').next()).map(str::trim);
        if !essence.is_some_and(|essence| essence.eq_ignore_ascii_case("multipart/form-data")) {
            return Err(ApiError::UnsupportedMediaType {
                detail: "send the version as Content-Type: multipart/form-data".into(),
            });
        }
        match axum::extract::Multipart::from_request(request, state).await {
            Ok(form) => Ok(Self(form)),
            Err(rejection) => Err(ApiError::BadRequest { detail: rejection.body_text() }),
        }
    }
}

/// The problem answer to a part of a form that could not be read.
pub fn form_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge { detail: "the version exceeds the upload limit".into() }
    } else {
        ApiError::BadRequest { detail: error.body_text() }
    }
}

#[cfg(test)]
mod tests {
    use super::PathId;

    fn id(text: &str) -> Option<i64> {
        serde_json::from_value::<PathId>(serde_json::Value::String(text.into())).ok().map(|PathId(id)| id)
    }

    #[test]
    fn path_ids_are_integers_as_json_schema_counts_them() {
        assert_eq!((id("3"), id("3.0"), id("3.000"), id("-2")), (Some(3), Some(3), Some(3), Some(-2)));
        for refused in ["3.5", "3.", ".0", "abc", "1e3", "", "99999999999999999999", "3.0.0", "+"] {
            assert_eq!(id(refused), None, "{refused:?}");
        }
    }
}
