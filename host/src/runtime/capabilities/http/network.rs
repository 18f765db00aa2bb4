//! Where outbound requests may connect. Names are resolved by an injectable
//! resolver (the system's in production; a fixed map in tests), inside the
//! HTTP client at connect time, and every address is checked there against
//! the grant's allowlist: what is checked is exactly what is connected to,
//! so a name that answers differently the second time (DNS rebinding) gains
//! nothing. A last guard sees every address before a connection is made;
//! tests set it to loopback-only, so that no test can send a packet beyond
//! 127.0.0.0/8 even if the check under test were broken.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;

use crate::runtime::allowlist::Allowlist;

/// Turns a host name into addresses.
#[async_trait]
pub trait NameResolver: Send + Sync {
    /// The addresses of `host`.
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The operating system's resolver.
pub struct SystemResolver;

#[async_trait]
impl NameResolver for SystemResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, 0)).await?.map(|address| address.ip()).collect())
    }
}

/// Whether a connection to an address may be attempted at all.
pub type ConnectGuard = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// How outbound requests find and reach addresses.
#[derive(Clone)]
pub struct Network {
    /// Resolves names.
    pub names: Arc<dyn NameResolver>,
    /// Sees every address last, after the allowlist.
    pub guard: ConnectGuard,
}

impl Network {
    /// The system's resolver, and every address the allowlist admits.
    pub fn system() -> Self {
        Self { names: Arc::new(SystemResolver), guard: Arc::new(|_| true) }
    }
}

/// Why a name led nowhere the component may go.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to addresses the http grant does not allow ({addresses})")]
pub struct Refused {
    host: String,
    addresses: String,
}

/// The guard refused every address the allowlist admitted.
#[derive(Debug, thiserror::Error)]
#[error("no address of {host} may be connected to")]
pub struct Guarded {
    host: String,
}

/// The resolver the HTTP client of one grant uses: resolves, then keeps
/// only the addresses the grant's allowlist (and the guard) admit.
pub struct GrantResolver {
    pub allowlist: Arc<Allowlist>,
    pub network: Network,
}

impl reqwest::dns::Resolve for GrantResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (allowlist, network, host) = (self.allowlist.clone(), self.network.clone(), name.as_str().to_owned());
        Box::pin(async move {
            let found = network.names.resolve(&host).await?;
            let admitted: Vec<IpAddr> =
                found.iter().copied().filter(|address| allowlist.admits_address(*address)).collect();
            if admitted.is_empty() {
                let addresses = found.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
                return Err(Box::new(Refused { host, addresses }) as Box<dyn std::error::Error + Send + Sync>);
            }
            // Told apart from a refusal, so a test sees a broken allowlist
            // fail here instead of passing as a denial.
            let guarded: Vec<SocketAddr> = admitted
                .into_iter()
                .filter(|address| (network.guard)(*address))
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if guarded.is_empty() {
                return Err(Box::new(Guarded { host }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(guarded.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
