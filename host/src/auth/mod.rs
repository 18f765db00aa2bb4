//! Who may do what: bearer tokens (OAuth 2.0 JWT access tokens, RFC 9068)
//! verified into a [`Principal`] with scopes, and what each scope reaches.
//! The transports (REST, gRPC, admin) ask [`Credentials`] for the caller of
//! each request and check scopes where the request enters; the orders layer
//! gets the [`OrderAccess`] that follows, so a customer sees only its own.

pub mod issue;
pub mod jwks;
pub mod keys;
pub mod principal;
pub mod settings;
pub mod verify;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

pub use issue::{TokenIssuer, TokenRequest};
pub use principal::{AccessError, OrderAccess, Principal, Scope, Scopes};
pub use settings::{AuthSettings, KeySource, Secret};
pub use verify::{Authenticator, Expectations, Keys, TokenError};

/// Shortest `ADMIN_TOKEN` accepted.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 32;

/// How a process tells who sends each request.
#[derive(Clone)]
pub struct Credentials {
    /// `None` when tokens are off (`AUTH_DISABLED`).
    authenticator: Option<Authenticator>,
    /// The static admin token (a bootstrap credential of the embedded default).
    admin_token: Option<Arc<[u8; 32]>>,
    /// Every caller when tokens are off: all but `admin`.
    anonymous: Arc<Principal>,
}

impl Credentials {
    /// Tokens verified by `authenticator`; with `admin_token`, that token too
    /// stands for an operator (`admin` alone).
    pub fn new(authenticator: Option<Authenticator>, admin_token: Option<&str>) -> Self {
        let anonymous = Principal {
            subject: "anonymous".into(),
            client_id: None,
            scopes: Scopes::of([Scope::Orders, Scope::OrdersAll, Scope::CatalogWrite]),
            expires_at: u64::MAX,
        };
        Self {
            authenticator,
            admin_token: admin_token.map(|token| Arc::new(Sha256::digest(token.as_bytes()).into())),
            anonymous: Arc::new(anonymous),
        }
    }

    /// Tokens verified with `keys` (tests, benchmarks).
    pub fn with_authenticator(authenticator: Authenticator) -> Self {
        Self::new(Some(authenticator), None)
    }

    /// The caller behind an `Authorization` header value (or its absence).
    /// With tokens off, anyone is the anonymous caller, and only the admin
    /// token reaches further.
    pub async fn principal(&self, authorization: Option<&[u8]>) -> Result<Arc<Principal>, TokenError> {
        let token = authorization.map(bearer_token);
        if let Some(Ok(token)) = token
            && self.is_admin_token(token)
        {
            return Ok(Arc::new(Principal {
                subject: "admin-token".into(),
                client_id: None,
                scopes: Scopes::of([Scope::Admin]),
                expires_at: u64::MAX,
            }));
        }
        let Some(authenticator) = &self.authenticator else { return Ok(self.anonymous.clone()) };
        authenticator.authenticate(token.ok_or(TokenError::Missing)??).await
    }

    /// Whether tokens are checked at all.
    pub fn enabled(&self) -> bool {
        self.authenticator.is_some()
    }

    /// The admin token, compared as digests so the time taken says nothing about it.
    fn is_admin_token(&self, token: &str) -> bool {
        let Some(expected) = &self.admin_token else { return false };
        let given: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        given.iter().zip(expected.iter()).fold(0u8, |differs, (a, b)| differs | (a ^ b)) == 0
    }
}

/// The token of `Bearer <token>` (the scheme in any case, RFC 7235 §2.1).
fn bearer_token(header: &[u8]) -> Result<&str, TokenError> {
    let text = std::str::from_utf8(header).map_err(|_| TokenError::Invalid("the Authorization header is not text"))?;
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Missing);
    }
    let token = token.trim();
    if token.is_empty() { Err(TokenError::Missing) } else { Ok(token) }
}

/// What a process found out about its tokens at start.
pub struct Prepared {
    pub credentials: Credentials,
    /// A signer for the embedded default's key (to print a first token).
    pub local_issuer: Option<TokenIssuer>,
    /// The remote JWKS to keep fresh, if any.
    pub remote: Option<Arc<jwks::RemoteJwks>>,
}

/// Reads `settings` into credentials. `exposed` lists the listen addresses
/// that are not loopback: without configured keys (or the explicit
/// `AUTH_DISABLED`) those refuse to start.
pub async fn prepare(
    settings: &AuthSettings,
    exposed: &[SocketAddr],
    admin_token: Option<&str>,
) -> anyhow::Result<Prepared> {
    let source = settings.source()?;
    let admin_token = admin_token.filter(|token| !token.is_empty());
    check_admin_token(&source, admin_token)?;
    if let (KeySource::LocalKey(_), Some(address)) = (&source, exposed.first()) {
        anyhow::bail!(
            "{address} is reachable from other machines, but no token issuer is configured: set AUTH_JWKS_URL, \
             AUTH_JWKS_FILE or AUTH_HS256_SECRET (with AUTH_ISSUER and AUTH_AUDIENCE), or AUTH_DISABLED=true to serve without tokens"
        );
    }
    if source == KeySource::Disabled {
        tracing::warn!("AUTH_DISABLED=true: requests are not authenticated; every caller may act for any user");
        let credentials = Credentials::new(None, admin_token);
        return Ok(Prepared { credentials, local_issuer: None, remote: None });
    }
    let (issuer, audience) = settings.issuer_and_audience(&source)?;
    let expect = Expectations {
        issuer: issuer.clone(),
        audience: audience.clone(),
        leeway: Duration::from_secs(settings.leeway_secs),
    };
    let (keys, local_issuer, remote) = match &source {
        KeySource::JwksFile(path) => {
            let json = std::fs::read(path).with_context(|| format!("cannot read AUTH_JWKS_FILE {}", path.display()))?;
            let keys = keys::KeySet::from_jwks(&json).with_context(|| format!("AUTH_JWKS_FILE {}", path.display()))?;
            (Keys::Fixed(Arc::new(keys)), None, None)
        }
        KeySource::JwksUrl(url) => {
            let min_interval = Duration::from_secs(settings.jwks_min_refetch_secs);
            let remote = Arc::new(jwks::RemoteJwks::fetch(url, min_interval).await?);
            (Keys::Remote(remote.clone()), None, Some(remote))
        }
        KeySource::SharedSecret(secret) => {
            let keys = keys::KeySet::shared_secret(secret.0.as_bytes()).context("AUTH_HS256_SECRET")?;
            (Keys::Fixed(Arc::new(keys)), None, None)
        }
        KeySource::LocalKey(path) => {
            let secret = issue::local_secret(path)?;
            let keys = keys::KeySet::shared_secret(&secret)?;
            (Keys::Fixed(Arc::new(keys)), Some(TokenIssuer::hs256(&secret, &issuer, &audience)?), None)
        }
        KeySource::Disabled => unreachable!("answered above"),
    };
    let credentials = Credentials::new(Some(Authenticator::new(keys, expect)), admin_token);
    Ok(Prepared { credentials, local_issuer, remote })
}

/// `ADMIN_TOKEN` only beside the embedded default's key (or with tokens
/// off), and long enough not to be guessed.
fn check_admin_token(source: &KeySource, admin_token: Option<&str>) -> anyhow::Result<()> {
    let Some(token) = admin_token else { return Ok(()) };
    anyhow::ensure!(
        matches!(source, KeySource::LocalKey(_) | KeySource::Disabled),
        "ADMIN_TOKEN is a bootstrap credential of the embedded default: with a configured issuer, use a token with the `admin` scope"
    );
    anyhow::ensure!(
        token.len() >= MIN_ADMIN_TOKEN_BYTES,
        "ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_BYTES} bytes (it has {})",
        token.len()
    );
    Ok(())
}

/// A signer for the keys this service holds (a shared secret, or the
/// embedded default's key, made if missing), for `host token issue`.
pub fn issuer_for(settings: &AuthSettings) -> anyhow::Result<TokenIssuer> {
    let source = settings.source()?;
    let (issuer, audience) = settings.issuer_and_audience(&source)?;
    match source {
        KeySource::SharedSecret(secret) => {
            keys::KeySet::shared_secret(secret.0.as_bytes()).context("AUTH_HS256_SECRET")?;
            TokenIssuer::hs256(secret.0.as_bytes(), &issuer, &audience)
        }
        KeySource::LocalKey(path) => TokenIssuer::hs256(&issue::local_secret(&path)?, &issuer, &audience),
        KeySource::JwksFile(_) | KeySource::JwksUrl(_) => {
            anyhow::bail!("with a JWKS, tokens come from its issuer: this service holds no private key")
        }
        KeySource::Disabled => anyhow::bail!("AUTH_DISABLED=true: no tokens are needed or checked"),
    }
}

#[cfg(test)]
mod tests;
