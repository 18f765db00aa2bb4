//! `orderly:platform/http`: outbound requests to allowlisted hosts only, with
//! a timeout, no redirects and a response-size cap.

use async_trait::async_trait;

use crate::runtime::bindings::errors::Error;
use crate::runtime::bindings::http::{Header, Host, Request, Response};
use crate::runtime::call::{CallState, UseOutcome};
use crate::runtime::slot_config::HttpGrant;

/// Performs a request the host has already checked against the allowlist.
#[async_trait]
pub trait HttpBackend: Send + Sync {
    /// Sends `request` to `url`, honouring the grant's timeout and size cap.
    async fn send(&self, url: url::Url, request: Request, grant: &HttpGrant) -> Result<Response, Error>;
}

/// The real client.
pub struct ReqwestHttp {
    client: reqwest::Client,
}

impl ReqwestHttp {
    /// A client that never follows redirects: a redirect could lead off the
    /// allowlist, so the component sees the 3xx and decides itself.
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("building the HTTP client");
        Self { client }
    }
}

impl Default for ReqwestHttp {
    fn default() -> Self {
        Self::new()
    }
}

fn transport_error(error: reqwest::Error) -> Error {
    if error.is_timeout() {
        Error::Timeout
    } else if error.is_builder() {
        Error::Invalid(error.without_url().to_string())
    } else {
        Error::Unavailable(error.without_url().to_string())
    }
}

#[async_trait]
impl HttpBackend for ReqwestHttp {
    async fn send(&self, url: url::Url, request: Request, grant: &HttpGrant) -> Result<Response, Error> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| Error::Invalid(format!("invalid method {:?}", request.method)))?;
        let mut builder = self.client.request(method, url).timeout(grant.timeout());
        for header in &request.headers {
            builder = builder.header(header.name.as_str(), header.value.as_str());
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
        let host = url.host_str().unwrap_or_default();
        if !grant.allows(host, url.port()) {
            return Err(Error::Denied(format!("{host} is not on the {} slot's http allowlist", self.info.slot)));
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
        let outcome = if result.is_ok() { UseOutcome::Ok } else { UseOutcome::Failed };
        self.record("http.send", &target, outcome);
        Ok(result)
    }
}
