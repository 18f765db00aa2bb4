//! The REST side of "who may do what": one layer turns the bearer token
//! into the request's [`Caller`] (or answers 401), and handlers take the
//! caller as an extractor and check the scope they need (403).

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::ApiError;
use crate::auth::{AccessError, Credentials, OrderAccess, Principal, Scope};

/// The verified caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>);

impl Caller {
    /// Ok when the caller's token grants `scope`; a 403 otherwise.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        Ok(self.0.require(scope)?)
    }

    /// Whose orders the caller reaches (403 without an order scope).
    pub fn order_access(&self) -> Result<OrderAccess, ApiError> {
        Ok(self.0.order_access()?)
    }
}

/// Authenticates every request it wraps: the caller goes into the
/// request's extensions, or the request is answered 401 unseen by its
/// handler (before its body is read).
pub async fn authenticate(State(credentials): State<Credentials>, mut request: Request, next: Next) -> Response {
    let header = request.headers().get(AUTHORIZATION).map(|value| value.as_bytes());
    match credentials.principal(header).await {
        Ok(principal) => {
            request.extensions_mut().insert(Caller(principal));
            next.run(request).await
        }
        Err(refused) => ApiError::Unauthenticated(refused).into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Every route taking a caller sits behind `authenticate`; one that
        // does not is a bug, answered as one rather than let through.
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("a route taking a caller is not behind the authentication layer"))
        })
    }
}

/// A caller holding one scope, checked as the request's parts are read:
/// before its body, so a caller without the scope learns nothing from the
/// body's checks.
macro_rules! scoped_caller {
    ($(#[$doc:meta])* $name:ident, $scope:expr) => {
        $(#[$doc])*
        pub struct $name(pub Caller);

        impl<S: Send + Sync> FromRequestParts<S> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
                let caller = Caller::from_request_parts(parts, state).await?;
                caller.require($scope)?;
                Ok(Self(caller))
            }
        }
    };
}

scoped_caller!(
    /// A caller that may change the catalogue (`catalog:write`).
    CatalogWriter,
    Scope::CatalogWrite
);
scoped_caller!(
    /// A caller acting for any user (`orders:all`): the back office.
    BackOffice,
    Scope::OrdersAll
);
scoped_caller!(
    /// An operator (`admin`).
    Operator,
    Scope::Admin
);

/// A caller with orders of its own (`orders`) or everyone's (`orders:all`),
/// and which.
pub struct OrderCaller {
    pub caller: Caller,
    pub access: OrderAccess,
}

impl<S: Send + Sync> FromRequestParts<S> for OrderCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let access = caller.order_access()?;
        Ok(Self { caller, access })
    }
}

impl From<AccessError> for ApiError {
    fn from(refused: AccessError) -> Self {
        ApiError::Forbidden(refused)
    }
}
