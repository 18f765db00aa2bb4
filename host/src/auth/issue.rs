//! Minting access tokens with a key this service holds: the embedded
//! default's generated key or a shared secret (`host token issue`, the token
//! printed at start, and the tests).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::Serialize;

use super::principal::Scopes;

/// Signs access tokens (RFC 9068: `typ` `at+jwt`).
pub struct TokenIssuer {
    key: EncodingKey,
    header: Header,
    issuer: String,
    audience: String,
}

/// What a token says about its holder.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub subject: String,
    pub scopes: Scopes,
    pub lifetime: Duration,
    pub client_id: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    exp: u64,
    iat: u64,
    nbf: u64,
    jti: String,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
}

impl TokenIssuer {
    /// HS256 with `secret`, for `issuer` and `audience`.
    pub fn hs256(secret: &[u8], issuer: &str, audience: &str) -> anyhow::Result<Self> {
        Self::with_key(EncodingKey::from_secret(secret)?, Header::new(Algorithm::HS256), issuer, audience)
    }

    /// Any key (RS256, ES256 … from PEM in tests and benchmarks), with `kid`.
    pub fn with_key(key: EncodingKey, mut header: Header, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        header.typ = Some("at+jwt".into());
        Ok(Self { key, header, issuer: issuer.into(), audience: audience.into() })
    }

    /// A signed token for `request`, valid from now.
    pub fn issue(&self, request: &TokenRequest) -> anyhow::Result<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: &request.subject,
            exp: now + request.lifetime.as_secs(),
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            scope: request.scopes.claim(),
            client_id: request.client_id.as_deref(),
        };
        Ok(encode(&self.header, &claims, &self.key)?)
    }
}

/// The embedded default's signing secret in `path`, made (32 random bytes,
/// readable by the service's user alone) when the file does not exist yet.
pub fn local_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret =
                URL_SAFE_NO_PAD.decode(text.trim()).with_context(|| format!("{} is not base64url", path.display()))?;
            anyhow::ensure!(
                secret.len() >= super::keys::MIN_SECRET_BYTES,
                "{} holds a key shorter than 32 bytes",
                path.display()
            );
            Ok(secret)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => create_secret(path),
        Err(error) => Err(error).with_context(|| format!("cannot read the signing key {}", path.display())),
    }
}

fn create_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut secret = vec![0u8; 32];
    getrandom::fill(&mut secret).map_err(|error| anyhow::anyhow!("no randomness for a signing key: {error}"))?;
    if let Some(folder) = path.parent().filter(|folder| !folder.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
    }
    // Written whole beside, then linked into place: the link fails if the
    // key exists, so two processes starting at once never overwrite each
    // other's key, and neither reads a half-written one.
    let beside = path.with_extension(format!("new-{}", uuid::Uuid::new_v4().simple()));
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&beside)?;
    file.write_all(URL_SAFE_NO_PAD.encode(&secret).as_bytes())?;
    file.sync_all()?;
    let linked = std::fs::hard_link(&beside, path);
    let _ = std::fs::remove_file(&beside);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated the embedded default's signing key");
            Ok(secret)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => local_secret(path),
        Err(error) => Err(error).with_context(|| format!("cannot write the signing key {}", path.display())),
    }
}
