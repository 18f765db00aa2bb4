//! Every way a token should be refused, tried as an attacker would.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;
use crate::auth::keys::KeySet;
use crate::auth::principal::Scope;

const SECRET: &[u8] = b"a shared secret of thirty-two bytes or more";
const JWKS: &str = include_str!("../../tests/keys/jwks.json");
const RSA_1: &str = include_str!("../../tests/keys/rsa-1.pem");
const RSA_2: &str = include_str!("../../tests/keys/rsa-2.pem");
const RSA_1_PUBLIC: &str = include_str!("../../tests/keys/rsa-1.public.pem");
const EC_1: &str = include_str!("../../tests/keys/ec-1.pem");

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn expect(leeway: u64) -> Expectations {
    Expectations {
        issuer: "https://issuer.test".into(),
        audience: "orderly-api".into(),
        leeway: Duration::from_secs(leeway),
    }
}

fn shared() -> Authenticator {
    Authenticator::new(Keys::Fixed(Arc::new(KeySet::shared_secret(SECRET).unwrap())), expect(30))
}

fn jwks() -> Authenticator {
    Authenticator::new(Keys::Fixed(Arc::new(KeySet::from_jwks(JWKS.as_bytes()).unwrap())), expect(30))
}

/// Claims that pass, to be spoilt one at a time.
fn claims() -> Value {
    json!({"iss": "https://issuer.test", "aud": "orderly-api", "sub": "42", "exp": now() + 300,
        "iat": now(), "nbf": now(), "scope": "orders catalog:write", "client_id": "web"})
}

fn hs256(claims: &Value) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET).unwrap()).unwrap()
}

fn signed(algorithm: Algorithm, kid: &str, pem: &str, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.into());
    let key = match algorithm {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    encode(&header, claims, &key).unwrap()
}

/// A token put together by hand: any header, any claims, any signature.
fn forged(header: &Value, claims: &Value, signature: &[u8]) -> String {
    let part = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
    format!("{}.{}.{}", part(header), part(claims), URL_SAFE_NO_PAD.encode(signature))
}

async fn refused(authenticator: &Authenticator, token: &str) -> &'static str {
    match authenticator.authenticate(token).await {
        Err(TokenError::Invalid(why)) => why,
        other => panic!("accepted or refused for another reason: {other:?}"),
    }
}

#[tokio::test]
async fn a_good_token_gives_its_subject_scopes_and_client() {
    let principal = shared().authenticate(&hs256(&claims())).await.unwrap();
    assert_eq!((principal.subject.as_str(), principal.client_id.as_deref()), ("42", Some("web")));
    assert!(principal.has(Scope::Orders) && principal.has(Scope::CatalogWrite));
    assert!(!principal.has(Scope::OrdersAll) && !principal.has(Scope::Admin));
    for (algorithm, kid, pem) in
        [(Algorithm::RS256, "rsa-1", RSA_1), (Algorithm::RS256, "rsa-2", RSA_2), (Algorithm::ES256, "ec-1", EC_1)]
    {
        let principal = jwks().authenticate(&signed(algorithm, kid, pem, &claims())).await;
        assert_eq!(principal.expect(kid).subject, "42");
    }
}

#[tokio::test]
async fn alg_none_is_refused() {
    for alg in ["none", "None", "NONE"] {
        let token = forged(&json!({"alg": alg, "typ": "JWT"}), &claims(), b"");
        assert_eq!(refused(&shared(), &token).await, "it is not a well-formed JWT", "{alg}");
        let with_kid = forged(&json!({"alg": alg, "kid": "rsa-1"}), &claims(), b"");
        assert_eq!(refused(&jwks(), &with_kid).await, "it is not a well-formed JWT", "{alg}");
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The classic confusion: a verifier that takes the algorithm from the
    // header would check this HMAC with the public key's bytes as the secret.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let token = encode(&header, &claims(), &EncodingKey::from_secret(RSA_1_PUBLIC.as_bytes()).unwrap()).unwrap();
    assert_eq!(refused(&jwks(), &token).await, "its algorithm is not its key's");
    // Nor does a token switch an EC key to RSA, or RSA to PSS.
    let rsa_on_ec = signed(Algorithm::RS256, "ec-1", RSA_1, &claims());
    assert_eq!(refused(&jwks(), &rsa_on_ec).await, "its algorithm is not its key's");
    let pss = signed(Algorithm::PS256, "rsa-1", RSA_1, &claims());
    assert_eq!(refused(&jwks(), &pss).await, "its algorithm is not its key's");
}

#[tokio::test]
async fn a_tampered_payload_or_another_keys_signature_is_refused() {
    let token = hs256(&claims());
    let (head, rest) = token.split_once('.').unwrap();
    let signature = rest.split_once('.').unwrap().1;
    let mut promoted = claims();
    promoted["scope"] = json!("orders orders:all admin");
    promoted["sub"] = json!("1");
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&promoted).unwrap());
    assert_eq!(refused(&shared(), &format!("{head}.{payload}.{signature}")).await, "its signature does not verify");
    // Signed by rsa-2, claiming to be rsa-1's.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let token = encode(&header, &claims(), &EncodingKey::from_rsa_pem(RSA_2.as_bytes()).unwrap()).unwrap();
    assert_eq!(refused(&jwks(), &token).await, "its signature does not verify");
    // The right key, another secret.
    let other =
        encode(&Header::new(Algorithm::HS256), &claims(), &EncodingKey::from_secret(&[9; 32]).unwrap()).unwrap();
    assert_eq!(refused(&shared(), &other).await, "its signature does not verify");
}

#[tokio::test]
async fn an_unknown_or_missing_kid_is_refused() {
    let token = signed(Algorithm::RS256, "rsa-9", RSA_1, &claims());
    assert_eq!(refused(&jwks(), &token).await, "its key id (kid) is unknown");
    let no_kid =
        encode(&Header::new(Algorithm::RS256), &claims(), &EncodingKey::from_rsa_pem(RSA_1.as_bytes()).unwrap())
            .unwrap();
    assert_eq!(refused(&jwks(), &no_kid).await, "it names no key id (kid)");
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("anything".into());
    let with_kid = encode(&header, &claims(), &EncodingKey::from_secret(SECRET).unwrap()).unwrap();
    assert_eq!(refused(&shared(), &with_kid).await, "its key id (kid) is unknown");
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused_beyond_the_leeway() {
    let with = |field: &str, value: u64| {
        let mut claims = claims();
        claims[field] = json!(value);
        hs256(&claims)
    };
    assert_eq!(refused(&shared(), &with("exp", now() - 120)).await, "it has expired");
    assert!(shared().authenticate(&with("exp", now() - 10)).await.is_ok(), "10 s late is within the leeway");
    assert_eq!(refused(&shared(), &with("nbf", now() + 120)).await, "it is not valid yet (nbf)");
    assert!(shared().authenticate(&with("nbf", now() + 10)).await.is_ok(), "10 s early is within the leeway");
    assert_eq!(refused(&shared(), &with("iat", now() + 120)).await, "it was issued in the future (iat)");
}

#[tokio::test]
async fn another_issuer_or_audience_is_refused() {
    let with = |field: &str, value: Value| {
        let mut claims = claims();
        claims[field] = value;
        hs256(&claims)
    };
    assert_eq!(refused(&shared(), &with("iss", json!("https://evil.test"))).await, "it is from another issuer");
    assert_eq!(refused(&shared(), &with("aud", json!("another-api"))).await, "it is for another audience");
    assert!(
        shared().authenticate(&with("aud", json!(["another-api", "orderly-api"]))).await.is_ok(),
        "one of several audiences"
    );
    assert_eq!(refused(&shared(), &with("aud", json!(["another-api"]))).await, "it is for another audience");
}

#[tokio::test]
async fn a_token_lacking_a_required_claim_is_refused() {
    for claim in ["exp", "iss", "aud", "sub"] {
        let mut claims = claims();
        claims.as_object_mut().unwrap().remove(claim);
        assert!(!refused(&shared(), &hs256(&claims)).await.is_empty(), "without {claim}");
    }
    // Claims of the wrong type are no better than missing ones.
    for (claim, value) in [("sub", json!(42)), ("exp", json!("soon")), ("scope", json!(["admin"]))] {
        let mut claims = claims();
        claims[claim] = value;
        assert!(shared().authenticate(&hs256(&claims)).await.is_err(), "{claim} of the wrong type");
    }
}

#[tokio::test]
async fn only_access_tokens_are_taken() {
    for typ in ["at+jwt", "application/at+JWT", "JWT"] {
        let token = forged(&json!({"alg": "HS256", "typ": typ}), &claims(), b"");
        // Well-typed: refused only for its (empty) signature.
        assert_eq!(refused(&shared(), &token).await, "its signature does not verify", "{typ}");
    }
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("id_token+jwt".into());
    let token = encode(&header, &claims(), &EncodingKey::from_secret(SECRET).unwrap()).unwrap();
    assert_eq!(refused(&shared(), &token).await, "it is not an access token (typ)");
}

#[tokio::test]
async fn garbage_and_oversized_tokens_are_refused_unparsed() {
    for token in ["", "a", "a.b", "a.b.c", "....", "\u{0}.\u{0}.\u{0}"] {
        assert_eq!(refused(&shared(), token).await, "it is not a well-formed JWT", "{token:?}");
    }
    assert!(shared().authenticate("eyJhbGciOiJIUzI1NiJ9..").await.is_err(), "a header alone");
    let mut claims = claims();
    claims["padding"] = json!("x".repeat(9000));
    assert_eq!(refused(&shared(), &hs256(&claims)).await, "it is longer than 8 KiB");
}

#[tokio::test]
async fn a_remembered_token_is_refused_once_it_expires() {
    let authenticator = Authenticator::new(Keys::Fixed(Arc::new(KeySet::shared_secret(SECRET).unwrap())), expect(0));
    let mut claims = claims();
    claims["exp"] = json!(now() + 1);
    let token = hs256(&claims);
    assert!(authenticator.authenticate(&token).await.is_ok());
    assert!(authenticator.authenticate(&token).await.is_ok(), "remembered");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(refused(&authenticator, &token).await, "it has expired");
}

#[tokio::test]
async fn a_remembered_token_is_the_exact_token() {
    // A token verified once must not vouch for a variant of itself.
    let authenticator = shared();
    let token = hs256(&claims());
    authenticator.authenticate(&token).await.unwrap();
    let mut altered = token.clone();
    altered.push('A');
    assert!(authenticator.authenticate(&altered).await.is_err());
}

/// A JWKS server on loopback whose document can be changed, counting fetches.
struct Issuer {
    url: String,
    document: Arc<std::sync::Mutex<String>>,
    fetches: Arc<std::sync::atomic::AtomicU64>,
}

impl Issuer {
    async fn start(document: &str) -> Self {
        use std::sync::atomic::Ordering;
        let document = Arc::new(std::sync::Mutex::new(document.to_owned()));
        let fetches = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let serve = {
            let (document, fetches) = (document.clone(), fetches.clone());
            move || {
                fetches.fetch_add(1, Ordering::SeqCst);
                let body = document.lock().unwrap().clone();
                async move { body }
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let router = axum::Router::new().route("/jwks.json", axum::routing::get(serve));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, document, fetches }
    }

    fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_its_first_token_and_made_up_kids_fetch_at_a_bounded_rate() {
    let issuer = Issuer::start(include_str!("../../tests/keys/jwks-without-rsa-2.json")).await;
    let remote = Arc::new(crate::auth::jwks::RemoteJwks::fetch(&issuer.url, Duration::from_millis(400)).await.unwrap());
    let authenticator = Authenticator::new(Keys::Remote(remote.clone()), expect(30));
    assert_eq!(issuer.fetches(), 1);
    assert!(authenticator.authenticate(&signed(Algorithm::RS256, "rsa-1", RSA_1, &claims())).await.is_ok());
    // The issuer rotates in rsa-2 and signs with it at once.
    *issuer.document.lock().unwrap() = JWKS.to_owned();
    tokio::time::sleep(Duration::from_millis(450)).await;
    let rotated = signed(Algorithm::RS256, "rsa-2", RSA_2, &claims());
    assert!(authenticator.authenticate(&rotated).await.is_ok(), "the unknown kid fetched the set again");
    assert_eq!(issuer.fetches(), 2);
    // A flood of made-up key ids, concurrently: at most one fetch per interval.
    let flood: Vec<_> = (0..50)
        .map(|n| {
            let (authenticator, token) =
                (authenticator.clone(), signed(Algorithm::RS256, &format!("made-up-{n}"), RSA_1, &claims()));
            tokio::spawn(async move { authenticator.authenticate(&token).await })
        })
        .collect();
    for attempt in flood {
        assert!(attempt.await.unwrap().is_err());
    }
    assert_eq!(issuer.fetches(), 2, "made-up ids right after a fetch fetch nothing");
    tokio::time::sleep(Duration::from_millis(450)).await;
    for n in 0..20 {
        let _ = authenticator.authenticate(&signed(Algorithm::RS256, &format!("again-{n}"), RSA_1, &claims())).await;
    }
    assert_eq!(issuer.fetches(), 3, "one fetch for the next interval, whatever the number of tokens");
    assert_eq!(remote.fetches(), 3);
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_keys_held() {
    let issuer = Issuer::start(JWKS).await;
    let remote = Arc::new(crate::auth::jwks::RemoteJwks::fetch(&issuer.url, Duration::ZERO).await.unwrap());
    let authenticator = Authenticator::new(Keys::Remote(remote), expect(30)).without_cache();
    *issuer.document.lock().unwrap() = "not a key set".into();
    let _ = authenticator.authenticate(&signed(Algorithm::RS256, "unknown", RSA_1, &claims())).await;
    assert_eq!(issuer.fetches(), 2, "the unknown kid fetched, and got garbage");
    assert!(authenticator.authenticate(&signed(Algorithm::RS256, "rsa-1", RSA_1, &claims())).await.is_ok());
}
