//! The keys tokens are checked with, each pinned to one algorithm: a token
//! is verified with the algorithm its key names, never the one its header
//! asks for (a header asking for another is refused).

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// One verification key and the one algorithm it verifies.
#[derive(Clone)]
pub struct VerifyingKey {
    /// The JWKS `kid`; `None` for a shared secret.
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish()
    }
}

/// The keys one deployment trusts.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

/// Why a JWKS or a secret cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the JWKS is not valid JSON of a key set: {0}")]
    Malformed(String),
    #[error("the JWKS holds no signing key this service can use ({0})")]
    NoUsableKey(String),
    #[error("the shared secret must be at least 32 bytes (it has {0})")]
    ShortSecret(usize),
}

/// The shortest shared secret accepted: HS256's own output size (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

impl KeySet {
    /// One HS256 key from a shared secret.
    pub fn shared_secret(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::ShortSecret(secret.len()));
        }
        let key = DecodingKey::from_secret(secret).map_err(|error| KeyError::Malformed(error.to_string()))?;
        Ok(Self { keys: vec![VerifyingKey { kid: None, algorithm: Algorithm::HS256, key }] })
    }

    /// The signing keys of a JWKS document (RFC 7517). Keys for encryption,
    /// symmetric keys (a JWKS is public) and keys of unknown types are
    /// skipped; a set left with none is refused.
    pub fn from_jwks(json: &[u8]) -> Result<Self, KeyError> {
        let set: JwkSet = serde_json::from_slice(json).map_err(|error| KeyError::Malformed(error.to_string()))?;
        let mut skipped = Vec::new();
        let keys: Vec<VerifyingKey> = set
            .keys
            .iter()
            .filter_map(|jwk| match verifying_key(jwk) {
                Ok(key) => Some(key),
                Err(why) => {
                    let kid = jwk.common.key_id.as_deref().unwrap_or("(no kid)");
                    skipped.push(format!("{kid}: {why}"));
                    None
                }
            })
            .collect();
        if !skipped.is_empty() {
            tracing::warn!(skipped = skipped.join("; "), "JWKS keys skipped");
        }
        if keys.is_empty() {
            let why = if skipped.is_empty() { "it is empty".to_owned() } else { skipped.join("; ") };
            return Err(KeyError::NoUsableKey(why));
        }
        Ok(Self { keys })
    }

    /// The key a token's header points at: by `kid`, or, for a token that
    /// names none, the set's only key. Never chosen by algorithm: a token
    /// cannot pick its own verification.
    pub fn find(&self, kid: Option<&str>) -> Option<&VerifyingKey> {
        match kid {
            Some(kid) => self.keys.iter().find(|key| key.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A JWK as a verifying key, with its algorithm: the `alg` it declares, or
/// the one its type and curve allow.
fn verifying_key(jwk: &Jwk) -> Result<VerifyingKey, String> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))) {
        return Err("not a signing key (`use`)".into());
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return Err("an unsupported curve".into()),
        },
        AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        AlgorithmParameters::OctetKey(_) => return Err("a symmetric key has no place in a public key set".into()),
        _ => return Err("an unsupported key type".into()),
    };
    let algorithm = match jwk.common.key_algorithm {
        None => implied,
        Some(declared) => declared_algorithm(declared, implied)?,
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|error| error.to_string())?;
    Ok(VerifyingKey { kid: jwk.common.key_id.clone(), algorithm, key })
}

/// The `alg` a JWK declares, when it fits the key's type (`RS384` on an RSA
/// key, not `HS256` or `ES256` on one).
fn declared_algorithm(declared: KeyAlgorithm, implied: Algorithm) -> Result<Algorithm, String> {
    let algorithm = Algorithm::try_from(declared).map_err(|_| format!("{declared:?} is not a signing algorithm"))?;
    if algorithm.family() == implied.family()
        && (implied.family() != jsonwebtoken::AlgorithmFamily::Ec || algorithm == implied)
    {
        Ok(algorithm)
    } else {
        Err(format!("`alg` {declared:?} does not fit the key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_JWK: &str = r#"{"kty":"RSA","kid":"r1","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}"#;

    fn set(keys: &str) -> Result<KeySet, KeyError> {
        KeySet::from_jwks(format!(r#"{{"keys":[{keys}]}}"#).as_bytes())
    }

    #[test]
    fn an_rsa_key_verifies_rs256_unless_it_declares_another_rsa_algorithm() {
        let keys = set(RSA_JWK).unwrap();
        assert_eq!(keys.find(Some("r1")).unwrap().algorithm, Algorithm::RS256);
        let declared = RSA_JWK.replace(r#""kid":"r1""#, r#""kid":"r1","alg":"PS256""#);
        assert_eq!(set(&declared).unwrap().find(Some("r1")).unwrap().algorithm, Algorithm::PS256);
    }

    #[test]
    fn a_key_declaring_an_algorithm_of_another_family_is_skipped() {
        for alg in ["HS256", "ES256", "RSA-OAEP"] {
            let declared = RSA_JWK.replace(r#""kid":"r1""#, &format!(r#""kid":"r1","alg":"{alg}""#));
            assert!(matches!(set(&declared), Err(KeyError::NoUsableKey(_))), "{alg}");
        }
    }

    #[test]
    fn symmetric_and_encryption_keys_are_not_taken_from_a_jwks() {
        let secret = r#"{"kty":"oct","kid":"s","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}"#;
        assert!(matches!(set(secret), Err(KeyError::NoUsableKey(_))));
        let encryption = RSA_JWK.replace(r#""kid":"r1""#, r#""kid":"r1","use":"enc""#);
        assert!(matches!(set(&encryption), Err(KeyError::NoUsableKey(_))));
        // A usable key beside them is kept, alone.
        let both = set(&format!("{secret},{RSA_JWK}")).unwrap();
        assert_eq!(both.len(), 1);
    }

    #[test]
    fn a_token_without_kid_finds_a_key_only_in_a_set_of_one() {
        let one = set(RSA_JWK).unwrap();
        assert!(one.find(None).is_some());
        let two = set(&format!("{RSA_JWK},{}", RSA_JWK.replace("r1", "r2"))).unwrap();
        assert!(two.find(None).is_none(), "which of two keys is not the token's choice");
        assert!(two.find(Some("r2")).is_some());
        assert!(two.find(Some("r3")).is_none());
    }

    #[test]
    fn malformed_documents_and_short_secrets_are_refused() {
        assert!(matches!(KeySet::from_jwks(b"{}"), Err(KeyError::Malformed(_))));
        assert!(matches!(KeySet::from_jwks(b"[1,2]"), Err(KeyError::Malformed(_))));
        assert!(matches!(set(""), Err(KeyError::NoUsableKey(_))));
        assert!(matches!(KeySet::shared_secret(&[7; 31]), Err(KeyError::ShortSecret(31))));
        assert_eq!(KeySet::shared_secret(&[7; 32]).unwrap().len(), 1);
    }
}
