//! Outbound HTTP as a hostile component tries it: names that resolve to
//! loopback, private or cloud-metadata addresses, addresses written in
//! other forms, ports and schemes beside the allowlist, a forged `Host`, a
//! redirect. Names are mapped by the test itself, and the test's network
//! guard refuses every address outside 127.0.0.0/8: no packet leaves the
//! machine even if the check under test were broken.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use host::runtime::capabilities::ReqwestHttp;
use host::runtime::capabilities::http::network::{NameResolver, Network};
use host::runtime::fakes::Fakes;
use host::runtime::{CallContext, Capabilities, Slot};

use crate::helpers::{config, load, order, runtime, serve};

/// Names the test maps itself; any other name does not resolve.
struct TestNames(HashMap<&'static str, Vec<IpAddr>>);

#[async_trait]
impl NameResolver for TestNames {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        self.0.get(host).cloned().ok_or_else(|| std::io::Error::other(format!("{host} is not a test name")))
    }
}

fn test_network() -> Network {
    let names = TestNames(HashMap::from([
        ("rates.test", vec!["127.0.0.1".parse().unwrap()]),
        ("metadata.test", vec!["169.254.169.254".parse().unwrap()]),
        ("metadata6.test", vec!["fd00:ec2::254".parse().unwrap()]),
        ("private.test", vec!["10.0.0.7".parse().unwrap()]),
        ("mapped.test", vec!["::ffff:127.0.0.1".parse().unwrap()]),
        ("mixed.test", vec!["169.254.169.254".parse().unwrap(), "127.0.0.1".parse().unwrap()]),
    ]));
    let guard = |address: IpAddr| match address {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()) || v6.is_loopback(),
    };
    Network { names: Arc::new(names), guard: Arc::new(guard) }
}

/// The probe's `http` report for `url` under `allow_hosts` (and a header).
async fn attempt(allow_hosts: &[String], url: &str, header: Option<&str>) -> (String, String) {
    let http = Arc::new(ReqwestHttp::with_network(test_network()));
    let runtime = runtime(Capabilities { http, ..Fakes::default().capabilities() });
    let hosts: Vec<String> = allow_hosts.iter().map(|entry| format!("{entry:?}")).collect();
    let header = header.map(|line| format!("header = {line:?}\n")).unwrap_or_default();
    let toml = format!(
        "[limits]\ndeadline_ms = 10000\n[grants.http]\nallow_hosts = [{}]\n[config]\nurl = {url:?}\n{header}",
        hosts.join(", ")
    );
    let probe = load(&runtime, "fixtures/forbidden", Slot::Pricing, config(&toml)).await;
    let report = runtime.price(&probe, &CallContext::new("egress"), &order(1)).await.unwrap().value.unwrap_err();
    (report[2].code.clone(), report[2].message.clone())
}

#[tokio::test]
async fn names_leading_to_special_addresses_are_denied_before_any_connection() {
    let (port, seen) = serve("200 OK", "ok".into()).await;
    for name in ["rates.test", "metadata.test", "metadata6.test", "private.test", "mapped.test"] {
        let allow = [format!("http://{name}:{port}")];
        let (code, message) = attempt(&allow, &format!("http://{name}:{port}/"), None).await;
        assert_eq!(code, "http-denied", "{name}: {message}");
        assert!(message.contains("does not allow"), "{name}: {message}");
    }
    assert!(seen.0.lock().unwrap().is_empty(), "nothing reached the server");
}

#[tokio::test]
async fn addresses_are_reached_only_when_an_entry_names_them() {
    let (port, seen) = serve("200 OK", "ok".into()).await;
    // Named by address, the loopback server is reached, and by a name resolving to it.
    let allow = [format!("http://rates.test:{port}"), format!("http://127.0.0.1:{port}")];
    let (code, message) = attempt(&allow, &format!("http://rates.test:{port}/"), None).await;
    assert_eq!(code, "http-ok", "{message}");
    let (code, _) = attempt(&allow, &format!("http://127.0.0.1:{port}/"), None).await;
    assert_eq!(code, "http-ok");
    // A name with several addresses connects only to the admitted one.
    let allow = [format!("http://mixed.test:{port}"), format!("http://127.0.0.1:{port}")];
    let (code, message) = attempt(&allow, &format!("http://mixed.test:{port}/"), None).await;
    assert_eq!(code, "http-ok", "{message}");
    assert_eq!(seen.0.lock().unwrap().len(), 3);
    // An address written another way is still that address.
    let allow = [format!("http://rates.test:{port}")];
    for url in [
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0x7f.1:{port}/"),
    ] {
        let (code, message) = attempt(&allow, &url, None).await;
        assert_eq!(code, "http-denied", "{url}: {message}");
    }
    assert_eq!(seen.0.lock().unwrap().len(), 3, "the denied ones reached nothing");
}

#[tokio::test]
async fn scheme_and_port_are_part_of_the_grant() {
    let (port, seen) = serve("200 OK", "ok".into()).await;
    let allow =
        [format!("https://rates.test:{port}"), "http://rates.test".to_string(), format!("http://127.0.0.1:{port}")];
    for url in [format!("http://rates.test:{}/", port), format!("http://rates.test:{}/", port + 1)] {
        let (code, message) = attempt(&allow, &url, None).await;
        assert_eq!(code, "http-denied", "{url}: {message}");
    }
    assert!(seen.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_host_sets_host_and_follows_no_redirect() {
    let (port, seen) = serve("302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/", "ok".into()).await;
    let allow = [format!("http://rates.test:{port}"), format!("http://127.0.0.1:{port}")];
    let (code, message) =
        attempt(&allow, &format!("http://rates.test:{port}/"), Some("Host: metadata.google.internal")).await;
    assert_eq!(code, "http-ok", "{message}");
    assert!(message.starts_with("(302,"), "the component sees the redirect itself: {message}");
    assert_eq!(*seen.0.lock().unwrap(), [format!("rates.test:{port}")], "the host wrote Host from the URL");
}
