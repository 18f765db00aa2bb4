//! `orderly:platform/http`: outbound requests where the grant's allowlist
//! says (scheme, host and port), to addresses it admits, with a timeout, no
//! redirects, no proxy, a response-size cap, and the `Host` header set by
//! the host from the URL.

pub mod network;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::runtime::allowlist::{Allowlist, Destination};
use crate::runtime::bindings::errors::Error;
use crate::runtime::bindings::http::{Header, Host, Request, Response};
use crate::runtime::call::{CallState, UseOutcome};
use crate::runtime::slot_config::HttpGrant;
use network::{GrantResolver, Network, Refused};

/// Headers the host sets itself or that would change how the connection
/// behaves; a component's own values for them are dropped.
const HOST_HEADERS: [&str; 10] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];
/// Clients kept, one per distinct allowlist; past this the cache starts afresh.
const CLIENTS: usize = 16;

/// Performs a request the host has already checked against the allowlist.
#[async_trait]
pub trait HttpBackend: Send + Sync {
    /// Sends `request` to `url`, honouring the grant's allowlist for the
    /// addresses it connects to, its timeout and its size cap.
    async fn send(&self, url: url::Url, request: Request, grant: &HttpGrant) -> Result<Response, Error>;
}

/// The real client: one per allowlist, each resolving through the grant.
pub struct ReqwestHttp {
    network: Network,
    clients: Mutex<HashMap<Vec<String>, reqwest::Client>>,
}

impl ReqwestHttp {
    /// Resolves with the system's resolver.
    pub fn new() -> Self {
        Self::with_network(Network::system())
    }

    /// Resolves and connects through `network` (tests map names themselves
    /// and allow loopback only).
    pub fn with_network(network: Network) -> Self {
        Self { network, clients: Mutex::default() }
    }

    /// The client for `grant`'s allowlist. It follows no redirects (one
    /// could lead off the allowlist: the component sees the 3xx) and uses no
    /// proxy from the environment (a proxy would resolve names itself).
    fn client(&self, grant: &HttpGrant) -> Result<reqwest::Client, Error> {
        let mut clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = clients.get(&grant.allow_hosts) {
            return Ok(client.clone());
        }
        let allowlist = Arc::new(grant.allowlist().map_err(Error::Invalid)?);
        let resolver = GrantResolver { allowlist, network: self.network.clone() };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(resolver))
            .build()
            .map_err(|error| Error::Unavailable(error.to_string()))?;
        if clients.len() >= CLIENTS {
            clients.clear();
        }
        clients.insert(grant.allow_hosts.clone(), client.clone());
        Ok(client)
    }
}

impl Default for ReqwestHttp {
    fn default() -> Self {
        Self::new()
    }
}

fn transport_error(error: reqwest::Error) -> Error {
    if let Some(refused) = cause::<Refused>(&error) {
        return Error::Denied(refused.to_string());
    }
    if error.is_timeout() {
        Error::Timeout
    } else if error.is_builder() {
        Error::Invalid(error.without_url().to_string())
    } else {
        Error::Unavailable(error.without_url().to_string())
    }
}

/// The first error of type `T` in `error`'s chain of causes.
fn cause<'a, T: std::error::Error + 'static>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<T>() {
            return Some(found);
        }
        next = current.source();
    }
    None
}

#[async_trait]
impl HttpBackend for ReqwestHttp {
    async fn send(&self, url: url::Url, request: Request, grant: &HttpGrant) -> Result<Response, Error> {
        // A URL naming an address is not resolved: the guard sees it here.
        let literal = match url.host() {
            Some(url::Host::Ipv4(address)) => Some(std::net::IpAddr::V4(address)),
            Some(url::Host::Ipv6(address)) => Some(std::net::IpAddr::V6(address)),
            _ => None,
        };
        if literal.is_some_and(|address| !(self.network.guard)(address)) {
            let host = url.host_str().unwrap_or_default();
            return Err(Error::Unavailable(format!("no address of {host} may be connected to")));
        }
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| Error::Invalid(format!("invalid method {:?}", request.method)))?;
        let mut builder = self.client(grant)?.request(method, url).timeout(grant.timeout());
        for header in &request.headers {
            if !HOST_HEADERS.contains(&header.name.to_ascii_lowercase().as_str()) {
                builder = builder.header(header.name.as_str(), header.value.as_str());
            }
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let mut response = builder.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some(Header { name: name.as_str().to_string(), value: value.to_str().ok()?.to_string() })
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > grant.max_response_bytes {
                return Err(Error::LimitExceeded(format!(
                    "the response body is larger than {} bytes",
                    grant.max_response_bytes
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response { status, headers, body })
    }
}

/// The methods a component may use.
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

impl CallState {
    /// Parses the URL and checks it against the allowlist before any I/O.
    fn http_target(&self, request: &Request) -> Result<url::Url, Error> {
        let Some(grant) = &self.config.grants.http else {
            return Err(Error::Denied(format!("the {} slot has no http grant", self.info.slot)));
        };
        let url = url::Url::parse(&request.url).map_err(|error| Error::Invalid(format!("invalid URL: {error}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Invalid(format!("unsupported scheme {:?}", url.scheme())));
        }
        if !METHODS.contains(&request.method.as_str()) {
            return Err(Error::Invalid(format!("unsupported method {:?}", request.method)));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::Invalid("credentials in the URL are not accepted; send a header".into()));
        }
        let allowlist: Allowlist = grant.allowlist().map_err(Error::Invalid)?;
        let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
            return Err(Error::Invalid("the URL names no host".into()));
        };
        if !allowlist.admits(Destination { scheme: url.scheme(), host: &host, port }) {
            let target = format!("{}://{}:{port}", url.scheme(), url.host_str().unwrap_or_default());
            return Err(Error::Denied(format!("{target} is not on the {} slot's http allowlist", self.info.slot)));
        }
        Ok(url)
    }
}

impl Host for CallState {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, Error>> {
        let target = request.url.clone();
        let url = match self.http_target(&request) {
            Ok(url) => url,
            Err(error) => {
                let outcome = if matches!(error, Error::Denied(_)) { UseOutcome::Denied } else { UseOutcome::Failed };
                self.record("http.send", &target, outcome);
                return Ok(Err(error));
            }
        };
        let grant = self.config.grants.http.clone().unwrap_or_default();
        let http = self.capabilities.http.clone();
        let result = http.send(url, request, &grant).await;
        let outcome = match &result {
            Ok(_) => UseOutcome::Ok,
            Err(Error::Denied(_)) => UseOutcome::Denied,
            Err(_) => UseOutcome::Failed,
        };
        self.record("http.send", &target, outcome);
        Ok(result)
    }
}
