//! Start-up decisions: which keys, whether the service may start at all,
//! and the credentials a request presents.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn settings(configure: impl FnOnce(&mut AuthSettings)) -> AuthSettings {
    let mut settings = AuthSettings::default();
    configure(&mut settings);
    settings
}

fn local(dir: &tempfile::TempDir) -> AuthSettings {
    settings(|settings| settings.key_file = dir.path().join("auth.key"))
}

const LOOPBACK: &[SocketAddr] = &[];

#[tokio::test]
async fn the_embedded_default_makes_a_private_key_once_and_signs_what_it_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let prepared = prepare(&local(&dir), LOOPBACK, None).await.unwrap();
    let path = dir.path().join("auth.key");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "readable by the service alone");
    let first = std::fs::read(&path).unwrap();
    let issuer = prepared.local_issuer.expect("a signer for the local key");
    let request = TokenRequest {
        subject: "42".into(),
        scopes: Scopes::all(),
        lifetime: Duration::from_secs(60),
        client_id: None,
    };
    let token = issuer.issue(&request).unwrap();
    let principal = prepared.credentials.principal(Some(format!("Bearer {token}").as_bytes())).await.unwrap();
    assert_eq!(principal.subject, "42");
    // A second start (and `host token issue`) uses the same key.
    let again = prepare(&local(&dir), LOOPBACK, None).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), first);
    assert!(again.credentials.principal(Some(format!("bearer {token}").as_bytes())).await.is_ok());
    let minted = issuer_for(&local(&dir)).unwrap().issue(&request).unwrap();
    assert!(again.credentials.principal(Some(format!("Bearer {minted}").as_bytes())).await.is_ok());
}

#[tokio::test]
async fn processes_starting_at_once_agree_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.key");
    let secrets: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let starts: Vec<_> = (0..8).map(|_| scope.spawn(|| issue::local_secret(&path).unwrap())).collect();
        starts.into_iter().map(|start| start.join().unwrap()).collect()
    });
    assert!(secrets.windows(2).all(|pair| pair[0] == pair[1]), "every process read the one key written");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no stray files beside it");
}

#[tokio::test]
async fn an_exposed_address_without_an_issuer_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let exposed: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let error = prepare(&local(&dir), &[exposed], None).await.err().expect("refused").to_string();
    assert!(
        error.contains("0.0.0.0:8080") && error.contains("AUTH_JWKS_URL") && error.contains("AUTH_DISABLED"),
        "{error}"
    );
    let secret = settings(|settings| settings.hs256_secret = Some(Secret("s".repeat(32))));
    assert!(prepare(&secret, &[exposed], None).await.is_ok(), "a configured secret may serve anywhere");
    let disabled = settings(|settings| settings.disabled = true);
    let open = prepare(&disabled, &[exposed], None).await.unwrap();
    assert!(!open.credentials.enabled());
}

#[tokio::test]
async fn key_settings_that_contradict_each_other_refuse_to_start() {
    let secret = Some(Secret("s".repeat(32)));
    let both = settings(|settings| {
        settings.hs256_secret = secret.clone();
        settings.jwks_file = Some("jwks.json".into());
    });
    assert!(prepare(&both, LOOPBACK, None).await.is_err());
    let disabled_with_keys = settings(|settings| {
        settings.hs256_secret = secret.clone();
        settings.disabled = true;
    });
    assert!(prepare(&disabled_with_keys, LOOPBACK, None).await.is_err());
    let short = settings(|settings| settings.hs256_secret = Some(Secret("short".into())));
    assert!(prepare(&short, LOOPBACK, None).await.is_err(), "a secret under 32 bytes");
    let jwks_without_issuer = settings(|settings| settings.jwks_file = Some("tests/keys/jwks.json".into()));
    let error = prepare(&jwks_without_issuer, LOOPBACK, None).await.err().expect("refused").to_string();
    assert!(error.contains("AUTH_ISSUER"), "{error}");
}

#[tokio::test]
async fn the_admin_token_is_a_long_bootstrap_credential_of_the_embedded_default_only() {
    let dir = tempfile::tempdir().unwrap();
    let long = "an admin token of at least thirty-two bytes";
    assert!(prepare(&local(&dir), LOOPBACK, Some("too-short-token")).await.is_err());
    let secret = settings(|settings| settings.hs256_secret = Some(Secret("s".repeat(32))));
    assert!(prepare(&secret, LOOPBACK, Some(long)).await.is_err(), "beside a configured issuer");
    let prepared = prepare(&local(&dir), LOOPBACK, Some(long)).await.unwrap();
    let admin = prepared.credentials.principal(Some(format!("Bearer {long}").as_bytes())).await.unwrap();
    assert!(admin.has(Scope::Admin) && !admin.has(Scope::Orders) && !admin.has(Scope::OrdersAll));
    let almost = format!("Bearer {}", &long[..long.len() - 1]);
    assert!(prepared.credentials.principal(Some(almost.as_bytes())).await.is_err());
    // With tokens off, the admin token is still the only way to `admin`.
    let off = prepare(&settings(|settings| settings.disabled = true), LOOPBACK, Some(long)).await.unwrap();
    assert!(!off.credentials.principal(None).await.unwrap().has(Scope::Admin));
    assert!(off.credentials.principal(Some(format!("Bearer {long}").as_bytes())).await.unwrap().has(Scope::Admin));
}

#[tokio::test]
async fn only_bearer_credentials_count() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = prepare(&local(&dir), LOOPBACK, None).await.unwrap().credentials;
    for header in [&b""[..], b"Bearer", b"Bearer ", b"Basic dXNlcjpwYXNz", b"Token abc"] {
        assert_eq!(credentials.principal(Some(header)).await, Err(TokenError::Missing), "{header:?}");
    }
    assert_eq!(credentials.principal(None).await, Err(TokenError::Missing));
    assert!(matches!(credentials.principal(Some(b"Bearer \xff\xfe")).await, Err(TokenError::Invalid(_))));
    assert!(matches!(credentials.principal(Some(b"Bearer not-a-jwt")).await, Err(TokenError::Invalid(_))));
}
