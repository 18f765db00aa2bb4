//! How a deployment says where its tokens come from.

use std::path::PathBuf;

use clap::Args;

/// A secret read from the environment or the command line; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

/// Token verification (see the README's "Authentication and authorization").
#[derive(Debug, Clone, Args)]
pub struct AuthSettings {
    /// The `iss` every token must carry. Required with a JWKS; `orderly`
    /// with a shared secret or the embedded default's key.
    #[arg(long, env = "AUTH_ISSUER")]
    pub issuer: Option<String>,
    /// The `aud` every token must carry (this API). Required with a JWKS;
    /// `orderly` otherwise.
    #[arg(long, env = "AUTH_AUDIENCE")]
    pub audience: Option<String>,
    /// The issuer's public keys, as a JWKS file.
    #[arg(long, env = "AUTH_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// The issuer's public keys, as a JWKS URL (fetched at start, every
    /// `AUTH_JWKS_REFRESH_SECS`, and on an unknown key id).
    #[arg(long, env = "AUTH_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// A shared HS256 secret (at least 32 bytes), for simple set-ups.
    #[arg(long, env = "AUTH_HS256_SECRET", hide_env_values = true)]
    pub hs256_secret: Option<Secret>,
    /// The embedded default's signing key, generated on first start when
    /// none of the above is set.
    #[arg(long, env = "AUTH_KEY_FILE", default_value = "data/auth.key")]
    pub key_file: PathBuf,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    #[arg(long, env = "AUTH_LEEWAY_SECS", default_value_t = 30)]
    pub leeway_secs: u64,
    /// How often a JWKS URL is fetched again, in seconds.
    #[arg(long, env = "AUTH_JWKS_REFRESH_SECS", default_value_t = 300)]
    pub jwks_refresh_secs: u64,
    /// The least time between two fetches caused by unknown key ids, in seconds.
    #[arg(long, env = "AUTH_JWKS_MIN_REFETCH_SECS", default_value_t = 30)]
    pub jwks_min_refetch_secs: u64,
    /// Serve without tokens: every caller may do everything but the admin
    /// API. An explicit, logged opt-out.
    #[arg(long, env = "AUTH_DISABLED", default_value_t = false, action = clap::ArgAction::Set)]
    pub disabled: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            jwks_file: None,
            jwks_url: None,
            hs256_secret: None,
            key_file: PathBuf::from("data/auth.key"),
            leeway_secs: 30,
            jwks_refresh_secs: 300,
            jwks_min_refetch_secs: 30,
            disabled: false,
        }
    }
}

/// The `iss` and `aud` of tokens this service signs itself.
pub const DEFAULT_ISSUER: &str = "orderly";
pub const DEFAULT_AUDIENCE: &str = "orderly";

/// Where the keys come from, once the settings are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    JwksFile(PathBuf),
    JwksUrl(String),
    SharedSecret(Secret),
    /// The embedded default's generated key.
    LocalKey(PathBuf),
    Disabled,
}

impl AuthSettings {
    /// The one key source configured; two at once is a mistake worth stopping for.
    pub fn source(&self) -> anyhow::Result<KeySource> {
        let configured: Vec<KeySource> = [
            self.jwks_file.clone().map(KeySource::JwksFile),
            self.jwks_url.clone().filter(|url| !url.is_empty()).map(KeySource::JwksUrl),
            self.hs256_secret.clone().filter(|secret| !secret.0.is_empty()).map(KeySource::SharedSecret),
        ]
        .into_iter()
        .flatten()
        .collect();
        match (self.disabled, configured.len()) {
            (true, 0) => Ok(KeySource::Disabled),
            (true, _) => anyhow::bail!("AUTH_DISABLED=true with keys configured: choose one"),
            (false, 0) => Ok(KeySource::LocalKey(self.key_file.clone())),
            (false, 1) => Ok(configured.into_iter().next().expect("one source")),
            (false, _) => anyhow::bail!("set one of AUTH_JWKS_FILE, AUTH_JWKS_URL and AUTH_HS256_SECRET, not several"),
        }
    }

    /// The issuer and audience expected: configured, or this service's own
    /// for keys it holds. A JWKS (someone else's keys) needs both said.
    pub fn issuer_and_audience(&self, source: &KeySource) -> anyhow::Result<(String, String)> {
        let external = matches!(source, KeySource::JwksFile(_) | KeySource::JwksUrl(_));
        let nonempty = |value: &Option<String>| value.clone().filter(|value| !value.is_empty());
        match (nonempty(&self.issuer), nonempty(&self.audience)) {
            (Some(issuer), Some(audience)) => Ok((issuer, audience)),
            (issuer, audience) if !external => Ok((
                issuer.unwrap_or_else(|| DEFAULT_ISSUER.into()),
                audience.unwrap_or_else(|| DEFAULT_AUDIENCE.into()),
            )),
            _ => anyhow::bail!("a JWKS needs AUTH_ISSUER and AUTH_AUDIENCE: the tokens' `iss` and `aud`"),
        }
    }
}
