//! Authentication for gRPC calls, as for REST requests: the `authorization`
//! metadata (`Bearer <token>`) becomes the call's [`Caller`], or the call is
//! answered UNAUTHENTICATED before any service sees it. `grpc.health.v1`
//! stays open, as `/health` and `/ready` do; reflection needs a token.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::codegen::http::header::AUTHORIZATION;
use tonic::codegen::http::{Request, Response};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use super::status::DOMAIN;
use crate::auth::{AccessError, Credentials, OrderAccess, Principal, Scope, TokenError};

/// The verified caller of a call, in the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>);

impl Caller {
    /// The caller of `request`; a call that reached a service without one
    /// was let through by mistake, and is refused.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Self, Status> {
        request.extensions().get::<Caller>().cloned().ok_or_else(|| {
            tracing::error!(target: "grpc", "a call reached the order service without an authenticated caller");
            unauthenticated(&TokenError::Missing)
        })
    }

    pub fn require(&self, scope: Scope) -> Result<(), Status> {
        self.0.require(scope).map_err(|refused| permission_denied(&refused))
    }

    pub fn order_access(&self) -> Result<OrderAccess, Status> {
        self.0.order_access().map_err(|refused| permission_denied(&refused))
    }
}

/// The services a call may reach without a token.
const OPEN_PREFIXES: [&str; 1] = ["/grpc.health.v1.Health/"];

/// Authenticates every call but the open ones.
#[derive(Clone)]
pub struct AuthLayer {
    pub credentials: Credentials,
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated { inner, credentials: self.credentials.clone() }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    credentials: Credentials,
}

impl<S, B> Service<Request<B>> for Authenticated<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The service that was polled ready serves this call; a fresh clone waits for the next.
        let mut inner = self.inner.clone();
        std::mem::swap(&mut inner, &mut self.inner);
        let credentials = self.credentials.clone();
        Box::pin(async move {
            let path = request.uri().path();
            if OPEN_PREFIXES.iter().any(|prefix| path.starts_with(prefix)) {
                return inner.call(request).await;
            }
            let header = request.headers().get(AUTHORIZATION).map(|value| value.as_bytes().to_vec());
            match credentials.principal(header.as_deref()).await {
                Ok(principal) => {
                    request.extensions_mut().insert(Caller(principal));
                    inner.call(request).await
                }
                Err(refused) => Ok(unauthenticated(&refused).into_http()),
            }
        })
    }
}

/// UNAUTHENTICATED, with the reason the REST API gives as its problem type.
pub fn unauthenticated(refused: &TokenError) -> Status {
    let mut details = ErrorDetails::new();
    let reason = match refused {
        TokenError::Missing => "unauthorized",
        TokenError::Invalid(_) => "invalid-token",
    };
    details.set_error_info(reason, DOMAIN, HashMap::new());
    Status::with_error_details(Code::Unauthenticated, refused.to_string(), details)
}

/// PERMISSION_DENIED, naming the scope that is missing when one is.
pub fn permission_denied(refused: &AccessError) -> Status {
    let mut details = ErrorDetails::new();
    let metadata = match refused {
        AccessError::MissingScope(scope) => HashMap::from([("required_scope".to_owned(), scope.name().to_owned())]),
        _ => HashMap::new(),
    };
    details.set_error_info("forbidden", DOMAIN, metadata);
    Status::with_error_details(Code::PermissionDenied, refused.to_string(), details)
}
