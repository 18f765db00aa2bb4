//! Turning a bearer token into a [`Principal`]: the signature with the key
//! its `kid` names (at that key's algorithm), then `iss`, `aud`, `exp`,
//! `nbf` and `iat` with a small leeway (RFC 9068 §4). A token verified once
//! is remembered until it expires, so a client that reuses its token (as a
//! gateway does) pays for the signature once.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde::Deserialize;

use super::jwks::RemoteJwks;
use super::keys::{KeySet, VerifyingKey};
use super::principal::{Principal, Scopes};

/// Longest token looked at; a longer one is refused unparsed.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// How many verified tokens are remembered.
const CACHED_TOKENS: usize = 10_000;

/// Why a bearer token was refused (the `error_description` of RFC 6750).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization: Bearer` credentials at all.
    #[error("no bearer token: send `Authorization: Bearer <access token>`")]
    Missing,
    /// Credentials that are not a valid token, and why.
    #[error("the access token is not valid: {0}")]
    Invalid(&'static str),
}

/// Where the keys come from.
#[derive(Clone)]
pub enum Keys {
    /// A fixed set: a shared secret, the embedded default's key, a JWKS file.
    Fixed(Arc<KeySet>),
    /// A JWKS fetched from its URL and refreshed.
    Remote(Arc<RemoteJwks>),
}

/// Who tokens must come from and be for.
#[derive(Debug, Clone)]
pub struct Expectations {
    pub issuer: String,
    pub audience: String,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
}

/// Verifies bearer tokens; cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    keys: Keys,
    expect: Arc<Expectations>,
    verified: Option<Arc<quick_cache::sync::Cache<Box<str>, Arc<Principal>>>>,
}

/// The claims read from a verified token (the registered ones are checked
/// by `jsonwebtoken` as well).
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    iat: Option<u64>,
    scope: Option<String>,
    client_id: Option<String>,
}

impl Authenticator {
    pub fn new(keys: Keys, expect: Expectations) -> Self {
        let verified = Some(Arc::new(quick_cache::sync::Cache::new(CACHED_TOKENS)));
        Self { keys, expect: Arc::new(expect), verified }
    }

    /// The same, remembering nothing: every token is verified in full (to
    /// measure a first verification).
    pub fn without_cache(mut self) -> Self {
        self.verified = None;
        self
    }

    /// The principal `token` speaks for, or why it is refused.
    pub async fn authenticate(&self, token: &str) -> Result<Arc<Principal>, TokenError> {
        if let Some(principal) = self.remembered(token) {
            return Ok(principal);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid("it is longer than 8 KiB"));
        }
        let header = decode_header(token).map_err(|_| TokenError::Invalid("it is not a well-formed JWT"))?;
        check_type(header.typ.as_deref())?;
        let key = self.key_for(header.kid.as_deref()).await?;
        let principal = Arc::new(self.verify_with(token, &key)?);
        if let Some(verified) = &self.verified {
            verified.insert(token.into(), principal.clone());
        }
        Ok(principal)
    }

    /// A token verified before and not expired since.
    fn remembered(&self, token: &str) -> Option<Arc<Principal>> {
        let principal = self.verified.as_ref()?.get(token)?;
        let valid_until = principal.expires_at.saturating_add(self.expect.leeway.as_secs());
        (jsonwebtoken::get_current_timestamp() <= valid_until).then_some(principal)
    }

    /// The key a token names; an unknown `kid` makes a remote set look
    /// again (at a bounded rate: a flood of made-up ids fetches nothing more).
    async fn key_for(&self, kid: Option<&str>) -> Result<VerifyingKey, TokenError> {
        let unknown = || {
            TokenError::Invalid(if kid.is_some() { "its key id (kid) is unknown" } else { "it names no key id (kid)" })
        };
        match &self.keys {
            Keys::Fixed(keys) => keys.find(kid).cloned().ok_or_else(unknown),
            Keys::Remote(remote) => {
                if let Some(key) = remote.keys().find(kid).cloned() {
                    return Ok(key);
                }
                if kid.is_some() {
                    remote.refresh_for_unknown_key().await;
                }
                remote.keys().find(kid).cloned().ok_or_else(unknown)
            }
        }
    }

    fn verify_with(&self, token: &str, key: &VerifyingKey) -> Result<Principal, TokenError> {
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.expect.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[&self.expect.issuer]);
        validation.set_audience(&[&self.expect.audience]);
        let claims = decode::<Claims>(token, &key.key, &validation).map_err(|error| refusal(error.kind()))?.claims;
        if claims.iat.is_some_and(|iat| iat > jsonwebtoken::get_current_timestamp() + validation.leeway) {
            return Err(TokenError::Invalid("it was issued in the future (iat)"));
        }
        Ok(Principal {
            subject: claims.sub,
            client_id: claims.client_id,
            scopes: Scopes::parse(claims.scope.as_deref().unwrap_or_default()),
            expires_at: claims.exp,
        })
    }
}

/// `typ`: an access token (RFC 9068 §2.1), or a plain JWT as many issuers
/// still send; any other type (an ID token, a logout token) is refused.
fn check_type(typ: Option<&str>) -> Result<(), TokenError> {
    match typ.map(str::to_ascii_lowercase).as_deref() {
        None | Some("jwt" | "at+jwt" | "application/at+jwt") => Ok(()),
        Some(_) => Err(TokenError::Invalid("it is not an access token (typ)")),
    }
}

/// The reason a verification failure is given to the client: what is wrong
/// with the token, never anything about the keys.
fn refusal(kind: &ErrorKind) -> TokenError {
    TokenError::Invalid(match kind {
        ErrorKind::ExpiredSignature => "it has expired",
        ErrorKind::ImmatureSignature => "it is not valid yet (nbf)",
        ErrorKind::InvalidIssuer => "it is from another issuer",
        ErrorKind::InvalidAudience => "it is for another audience",
        ErrorKind::InvalidSignature => "its signature does not verify",
        ErrorKind::InvalidAlgorithm => "its algorithm is not its key's",
        ErrorKind::MissingRequiredClaim(_) => "it lacks a required claim (exp, iss, aud, sub)",
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            "it is not a well-formed JWT"
        }
        _ => "it cannot be verified",
    })
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
