//! The service's settings: command-line options that also read environment
//! variables, with defaults that run the embedded configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

pub use crate::auth::AuthSettings;
pub use crate::fulfillment::{DelayRange, FulfillmentSettings};
use crate::store::{ConnectOptions, Retry};

/// The embedded default database: a SQLite file under `./data`.
pub const EMBEDDED_DATABASE_URL: &str = "sqlite:data/orderly.db";

/// Where the service keeps its data and finds its components.
#[derive(Debug, Clone, Args)]
pub struct BackendSettings {
    /// `postgres://user@host/db` for PostgreSQL, or `sqlite:path` for an
    /// embedded file. Default: a SQLite file under ./data.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// `redis://host:port` for the product cache (and, later, the queue).
    /// Default: an in-process cache.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// A prefix for every Redis key, so several deployments (or tests) can share one Redis.
    #[arg(long, env = "REDIS_NAMESPACE", default_value = "")]
    pub redis_namespace: String,
    /// Most PostgreSQL connections in the pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
    /// Attempts to reach PostgreSQL or Redis at start-up.
    #[arg(long, env = "CONNECT_TRIES", default_value_t = 5)]
    pub connect_tries: u32,
    /// Seconds between start-up attempts.
    #[arg(long, env = "CONNECT_DELAY_SECS", default_value_t = 2.0)]
    pub connect_delay_secs: f64,
    /// Components query PostgreSQL as `<prefix>_<slot>`, logins of their own.
    #[arg(long, env = "COMPONENT_DB_ROLE_PREFIX", default_value = "orderly_rules", value_parser = role_prefix)]
    pub component_db_role_prefix: String,
    /// The password of those logins, where the server asks for one.
    #[arg(long, env = "COMPONENT_DB_PASSWORD", hide_env_values = true)]
    pub component_db_password: Option<String>,
}

/// A role name prefix: a lower-case identifier short enough for `_fulfillment`.
fn role_prefix(text: &str) -> Result<String, String> {
    let mut chars = text.chars();
    let plain = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain && text.len() <= 48 {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} must be a lower-case identifier of at most 48 characters"))
    }
}

impl Default for BackendSettings {
    fn default() -> Self {
        Self {
            database_url: None,
            redis_url: None,
            redis_namespace: String::new(),
            database_max_connections: 16,
            connect_tries: 5,
            connect_delay_secs: 2.0,
            component_db_role_prefix: "orderly_rules".into(),
            component_db_password: None,
        }
    }
}

impl BackendSettings {
    /// How to open the database.
    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            url: self.database_url.clone().unwrap_or_else(|| EMBEDDED_DATABASE_URL.to_owned()),
            max_connections: self.database_max_connections,
            retry: self.retry(),
            component_logins: crate::runtime::capabilities::ComponentLogins {
                prefix: self.component_db_role_prefix.clone(),
                password: self.component_db_password.clone().filter(|password| !password.is_empty()),
            },
        }
    }

    /// How to retry reaching a server at start-up.
    pub fn retry(&self) -> Retry {
        Retry { tries: self.connect_tries, delay: Duration::from_secs_f64(self.connect_delay_secs.max(0.0)) }
    }
}

/// Hot swap: the folder watcher and the automatic rollback.
#[derive(Debug, Clone, Args)]
pub struct SwapSettings {
    /// Watch the components folder and swap in new or changed components.
    #[arg(long, env = "WATCH_COMPONENTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub watch_components: bool,
    /// How long the folder must be quiet before a change is taken, in ms.
    #[arg(long, env = "WATCH_DEBOUNCE_MS", default_value_t = 250)]
    pub watch_debounce_ms: u64,
    /// A new version is judged on this many first calls.
    #[arg(long, env = "ROLLBACK_WINDOW_CALLS", default_value_t = 20)]
    pub rollback_window_calls: u64,
    /// The failure rate over those calls that rolls the slot back by itself.
    #[arg(long, env = "ROLLBACK_FAILURE_RATE", default_value_t = 0.5)]
    pub rollback_failure_rate: f64,
    /// How often the component registry is looked at besides its
    /// notifications (PostgreSQL), in ms: the longest a missed change waits.
    #[arg(long, env = "REGISTRY_RECHECK_MS", default_value_t = 2_000)]
    pub registry_recheck_ms: u64,
    /// How long a process may take to serve a slot's new version before the
    /// admin API flags it as lagging, in ms.
    #[arg(long, env = "CONVERGE_WITHIN_MS", default_value_t = 30_000)]
    pub converge_within_ms: u64,
}

impl Default for SwapSettings {
    fn default() -> Self {
        Self {
            watch_components: true,
            watch_debounce_ms: 250,
            rollback_window_calls: 20,
            rollback_failure_rate: 0.5,
            registry_recheck_ms: 2_000,
            converge_within_ms: 30_000,
        }
    }
}

impl SwapSettings {
    /// The automatic rollback's policy.
    pub fn policy(&self) -> crate::rules::RollbackPolicy {
        crate::rules::RollbackPolicy {
            window: self.rollback_window_calls.max(1),
            failure_rate: self.rollback_failure_rate.clamp(0.0, 1.0),
        }
    }
}

/// `host worker`: fulfillment workers without the HTTP API; the components
/// come from the registry.
#[derive(Debug, Clone, Args)]
pub struct WorkerSettings {
    #[command(flatten)]
    pub backend: BackendSettings,
    #[command(flatten)]
    pub fulfillment: FulfillmentSettings,
    /// The rollback policy and how the registry is followed (a worker
    /// watches no folder: its components come from the registry).
    #[command(flatten)]
    pub swap: SwapSettings,
    /// Seconds to let jobs in hand finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

/// `host serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    #[command(flatten)]
    pub backend: BackendSettings,
    #[command(flatten)]
    pub fulfillment: FulfillmentSettings,
    #[command(flatten)]
    pub swap: SwapSettings,
    #[command(flatten)]
    pub auth: AuthSettings,
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,
    /// Address the gRPC API listens on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "GRPC_LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_listen_addr: SocketAddr,
    /// Address the admin API listens on: its own listener, never the
    /// public one (keep it off the public network).
    #[arg(long, env = "ADMIN_LISTEN_ADDR", default_value = "127.0.0.1:8081")]
    pub admin_listen_addr: SocketAddr,
    /// Folder holding `<slot>.wasm` and `<slot>.toml` for each slot.
    #[arg(long, env = "COMPONENTS_DIR", default_value = "data/components")]
    pub components_dir: PathBuf,
    /// A static bearer token for the admin API (at least 32 bytes): a
    /// bootstrap credential of the embedded default, refused beside a
    /// configured issuer (use a token with the `admin` scope).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Connections each listener (REST, admin, gRPC) keeps open at once;
    /// past it, new ones wait until one closes.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long
    /// an idle keep-alive connection stays open, in ms (REST).
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Concurrent HTTP/2 streams per connection (gRPC, and REST over HTTP/2).
    #[arg(long, env = "HTTP2_MAX_STREAMS", default_value_t = 100)]
    pub http2_max_streams: u32,
    /// How often an HTTP/2 connection is pinged, in seconds; a ping
    /// unanswered as long closes it.
    #[arg(long, env = "HTTP2_KEEPALIVE_SECS", default_value_t = 30)]
    pub http2_keepalive_secs: u64,
    /// How long a gRPC connection lives before it is asked to reconnect
    /// (its calls in flight get a minute more), in seconds.
    #[arg(long, env = "GRPC_MAX_CONNECTION_AGE_SECS", default_value_t = 1800)]
    pub grpc_max_connection_age_secs: u64,
    /// Live watch streams (SSE and gRPC) one caller (a token's subject) may
    /// hold at once; past it, 429 / RESOURCE_EXHAUSTED.
    #[arg(long, env = "MAX_WATCHES_PER_CALLER", default_value_t = 8)]
    pub max_watches_per_caller: usize,
    /// Live watch streams all callers together may hold at once.
    #[arg(long, env = "MAX_WATCHES", default_value_t = 1000)]
    pub max_watches: usize,
    /// Keyed orders one caller may have being placed at once.
    #[arg(long, env = "MAX_KEYS_IN_FLIGHT_PER_CALLER", default_value_t = 16)]
    pub max_keys_in_flight_per_caller: usize,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// How long a request may run before it is stopped with a 503, in ms
    /// (event streams excepted). A request waiting for another with its
    /// idempotency key waits at most three quarters of it (and 10 s).
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 15_000)]
    pub request_timeout_ms: u64,
    /// Currency of orders and products that do not name one.
    #[arg(long, env = "DEFAULT_CURRENCY", default_value = "EUR")]
    pub default_currency: String,
    /// How long a completed idempotency key is remembered, in seconds.
    #[arg(long, env = "IDEMPOTENCY_TTL_SECS", default_value_t = 24 * 3600)]
    pub idempotency_ttl_secs: u64,
    /// How long a cached product lives, in seconds.
    #[arg(long, env = "PRODUCT_CACHE_TTL_SECS", default_value_t = 300)]
    pub product_cache_ttl_secs: u64,
    /// Seed demo products into an empty catalogue (on by default for the embedded database).
    #[arg(long, env = "SEED_DEMO_PRODUCTS")]
    pub seed_demo_products: Option<bool>,
    /// Seconds to let requests in flight finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

impl ServeSettings {
    /// The addresses it listens on that other machines can reach.
    pub fn exposed_addresses(&self) -> Vec<SocketAddr> {
        [self.listen_addr, self.grpc_listen_addr, self.admin_listen_addr]
            .into_iter()
            .filter(|address| !address.ip().is_loopback())
            .collect()
    }

    /// The bounds on every connection.
    pub fn edge_limits(&self) -> crate::api::serve::EdgeLimits {
        crate::api::serve::EdgeLimits {
            max_connections: self.max_connections.max(1),
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
            http2_max_streams: self.http2_max_streams.max(1),
            http2_keepalive: Duration::from_secs(self.http2_keepalive_secs.max(1)),
        }
    }

    /// How long a request may run.
    pub fn time_limit(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            backend: BackendSettings::default(),
            fulfillment: FulfillmentSettings::default(),
            swap: SwapSettings::default(),
            auth: AuthSettings::default(),
            listen_addr: "127.0.0.1:8080".parse().expect("a valid address"),
            grpc_listen_addr: "127.0.0.1:50051".parse().expect("a valid address"),
            admin_listen_addr: "127.0.0.1:8081".parse().expect("a valid address"),
            components_dir: PathBuf::from("data/components"),
            admin_token: None,
            max_connections: 1024,
            max_watches_per_caller: 8,
            max_watches: 1000,
            max_keys_in_flight_per_caller: 16,
            header_read_timeout_ms: 10_000,
            http2_max_streams: 100,
            http2_keepalive_secs: 30,
            grpc_max_connection_age_secs: 1800,
            max_body_bytes: 64 * 1024,
            request_timeout_ms: 15_000,
            default_currency: "EUR".into(),
            idempotency_ttl_secs: 24 * 3600,
            product_cache_ttl_secs: 300,
            seed_demo_products: None,
            shutdown_grace_secs: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        serve: ServeSettings,
    }

    #[test]
    fn command_line_defaults_match_default() {
        // Only meaningful when the environment sets none of the variables.
        if std::env::vars().any(|(name, _)| name == "DATABASE_URL" || name == "LISTEN_ADDR") {
            return;
        }
        let parsed = Probe::try_parse_from(["host"]).unwrap().serve;
        let default = ServeSettings::default();
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
    }

    #[test]
    fn the_embedded_database_is_the_default() {
        assert_eq!(BackendSettings::default().connect_options().url, EMBEDDED_DATABASE_URL);
    }
}
