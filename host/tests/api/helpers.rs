//! Spawning the service for a test: on port 0, on the embedded backend (a
//! SQLite file in a temporary folder, in-process caches) or on PostgreSQL
//! (a fresh database) and Redis (a namespace of its own), with the default
//! components copied into a temporary components folder.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use host::app::App;
use host::auth::{AuthSettings, Scope, Scopes, Secret, TokenIssuer, TokenRequest};
use host::config::{BackendSettings, FulfillmentSettings, ServeSettings, SwapSettings};
use host::grpc::proto::order_service_client::OrderServiceClient;
use host::runtime::{Capabilities, EngineSettings, Runtime, Slot};
use host::startup::Application;
use serde_json::{Value, json};

#[path = "../common/database.rs"]
mod database;
#[path = "../common/postgres_server.rs"]
mod postgres_server;
#[path = "../common/redis_server.rs"]
mod redis_server;
pub use database::{TestDatabase, postgres_url, redis_url};
pub use postgres_server::PrivatePostgres;
pub use redis_server::PrivateRedis;

/// The shared secret every test service verifies tokens with
/// (`AUTH_HS256_SECRET` for the processes a test starts).
pub const TEST_SECRET: &str = "the tests' shared secret, at least thirty-two bytes";

/// A token for `subject` with `scopes` (space-separated), valid for an hour.
pub fn token(subject: &str, scopes: &str) -> String {
    client_token(subject, scopes, None)
}

/// [`token`], naming the client it was issued to (`client_id`).
pub fn client_token(subject: &str, scopes: &str, client_id: Option<&str>) -> String {
    let issuer = TokenIssuer::hs256(TEST_SECRET.as_bytes(), "orderly", "orderly").expect("a signer");
    let scopes = Scopes::of(scopes.split_whitespace().map(|name| Scope::parse(name).expect("a known scope")));
    let lifetime = std::time::Duration::from_secs(3600);
    let request = TokenRequest { subject: subject.into(), scopes, lifetime, client_id: client_id.map(str::to_owned) };
    issuer.issue(&request).expect("a token")
}

/// What the tests' default client sends: the back office and an operator
/// at once (`orders:all catalog:write admin`), so a test about something
/// else is not a test about scopes.
pub fn back_office_token() -> String {
    token("back-office", "orders:all catalog:write admin")
}

/// An operator's token (`admin` alone).
pub fn admin_token() -> String {
    token("operator", "admin")
}

/// The environment a `host` process a test starts verifies tokens with.
pub const AUTH_ENV: (&str, &str) = ("AUTH_HS256_SECRET", TEST_SECRET);

/// A client that sends `token` with every request.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().expect("a header value"));
    reqwest::Client::builder().default_headers(headers).build().expect("a client")
}

/// Which backing servers a test app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file and in-process caches: what `just run` starts.
    Embedded,
    /// The real PostgreSQL and Redis.
    Postgres,
}

/// One engine for every app in this test process, so each component is
/// compiled once rather than once per test.
fn engine() -> &'static Runtime {
    static ENGINE: OnceLock<Runtime> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let settings = EngineSettings { max_calls_per_slot: 64, ..EngineSettings::default() };
        Runtime::new(&settings, Capabilities::embedded()).expect("engine starts")
    })
}

/// The built `.wasm` of `components/<dir>`.
pub fn wasm(dir: &str) -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../components").join(dir);
    component_testkit::component_wasm(&manifest_dir.canonicalize().expect("component dir exists"))
}

/// `components/<dir>`.
pub fn component_dir(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../components").join(dir)
}

/// Copies the files of `from` into a new folder `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The default component of each slot: (slot, crate folder).
pub const DEFAULTS: [(Slot, &str); 3] =
    [(Slot::Validation, "order-validation"), (Slot::Pricing, "pricing"), (Slot::Fulfillment, "fulfillment-standard")];

/// Copies the default components (except `skip`) into `dir`, as `just build` installs them.
pub fn install_components(dir: &Path, skip: Option<Slot>) {
    std::fs::create_dir_all(dir).unwrap();
    for (slot, crate_dir) in DEFAULTS.into_iter().filter(|(slot, _)| Some(*slot) != skip) {
        std::fs::copy(wasm(crate_dir), dir.join(format!("{slot}.wasm"))).unwrap();
        let toml =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../components").join(crate_dir).join(format!("{slot}.toml"));
        std::fs::copy(toml, dir.join(format!("{slot}.toml"))).unwrap();
    }
}

/// Every log line the process wrote, for tests that check what was logged.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stdout().write_all(bytes)?;
        }
        LOGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured log lines that carry `correlation_id`.
pub fn logs_of(correlation_id: &str) -> Vec<Value> {
    let logs = LOGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    String::from_utf8_lossy(&logs)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["correlation_id"] == correlation_id)
        .collect()
}

/// The captured log lines whose message is `message`.
pub fn logs_of_message(message: &str) -> Vec<Value> {
    let logs = LOGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    String::from_utf8_lossy(&logs)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == message)
        .collect()
}

/// A running service and a client for it.
pub struct TestApp {
    pub address: SocketAddr,
    /// Where its gRPC API listens.
    pub grpc_address: SocketAddr,
    /// Where its admin API listens.
    pub admin_address: SocketAddr,
    pub client: reqwest::Client,
    pub service: Arc<App>,
    pub backend: Backend,
    /// Prefix of this app's Redis keys.
    pub namespace: String,
    /// The Redis server it uses, if any.
    pub redis_url: Option<String>,
    /// Its components folder (a `host worker` started by a test loads the same).
    pub components_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Its database's URL.
    pub database_url: String,
    _database: Option<TestDatabase>,
    _dir: tempfile::TempDir,
}

/// Fulfillment as the tests run it: `workers` workers, short waits and
/// backoff, so failures and retries play out in well under a second.
pub fn fast_fulfillment(workers: usize) -> FulfillmentSettings {
    FulfillmentSettings {
        workers,
        claim_wait_ms: 200,
        retry_backoff_ms: 50,
        max_attempts: 3,
        visibility_timeout_ms: 10_000,
        ..FulfillmentSettings::default()
    }
}

/// Options for [`TestApp::spawn_with`].
#[derive(Default)]
pub struct Options {
    /// A slot left empty.
    pub without: Option<Slot>,
    /// The body cap, when not the default.
    pub max_body_bytes: Option<usize>,
    /// How long idempotency keys live, when not the default.
    pub idempotency_ttl_secs: Option<u64>,
    /// Fulfillment settings; by default no workers run, so orders stay
    /// `pending` unless a test moves them.
    pub fulfillment: Option<FulfillmentSettings>,
    /// Components to install instead of the defaults: (slot, crate folder).
    pub components: Vec<(Slot, &'static str)>,
    /// The Redis server, when not the shared one.
    pub redis_url: Option<String>,
    /// The PostgreSQL database, when not a fresh one on the shared server.
    pub database_url: Option<String>,
    /// Install each default component's golden fixtures as `<slot>.fixtures/`.
    pub fixtures: bool,
    /// Hot-swap settings, when not the default.
    pub swap: Option<SwapSettings>,
    /// `<slot>.toml` texts replacing the installed ones.
    pub configs: Vec<(Slot, String)>,
    /// The server's request time limit in ms, when not the default.
    pub request_timeout_ms: Option<u64>,
    /// Edge limits, when not the defaults: connections per listener, the
    /// header-read (and keep-alive idle) timeout in ms, HTTP/2 streams per connection.
    pub max_connections: Option<usize>,
    pub header_read_timeout_ms: Option<u64>,
    pub http2_max_streams: Option<u32>,
    /// Quotas, when not the defaults: watch streams per caller and in all,
    /// keyed orders in flight per caller.
    pub max_watches_per_caller: Option<usize>,
    pub max_watches: Option<usize>,
    pub max_keys_in_flight_per_caller: Option<usize>,
    /// Serve without tokens (`AUTH_DISABLED`).
    pub auth_disabled: bool,
    /// Token settings replacing the tests' shared secret.
    pub auth: Option<AuthSettings>,
}

impl TestApp {
    /// The service on `backend` with the default components.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, Options::default()).await
    }

    /// The service on `backend`, adjusted by `options`.
    pub async fn spawn_with(backend: Backend, options: Options) -> Self {
        host::telemetry::init_with(|| Capture, "info,component=debug");
        let dir = tempfile::tempdir().unwrap();
        let components = dir.path().join("components");
        install_components(&components, options.without);
        if options.fixtures {
            for (slot, crate_dir) in DEFAULTS {
                copy_dir(&component_dir(crate_dir).join("fixtures"), &components.join(format!("{slot}.fixtures")));
            }
        }
        for (slot, crate_dir) in &options.components {
            std::fs::copy(wasm(crate_dir), components.join(format!("{slot}.wasm"))).unwrap();
        }
        for (slot, toml) in &options.configs {
            std::fs::write(components.join(format!("{slot}.toml")), toml).unwrap();
        }
        let namespace = format!("test:{}:", uuid::Uuid::new_v4().simple());
        let (database, backend_settings) = match backend {
            Backend::Embedded => {
                let url = format!("sqlite:{}", dir.path().join("orderly.db").display());
                (None, BackendSettings { database_url: Some(url), ..BackendSettings::default() })
            }
            Backend::Postgres => {
                let database = match &options.database_url {
                    Some(_) => None,
                    None => Some(TestDatabase::create().await),
                };
                let url = options.database_url.clone().or_else(|| database.as_ref().map(|db| db.url().to_owned()));
                let settings = BackendSettings {
                    database_url: url,
                    redis_url: Some(options.redis_url.clone().unwrap_or_else(redis_url)),
                    redis_namespace: namespace.clone(),
                    database_max_connections: 8,
                    ..BackendSettings::default()
                };
                (database, settings)
            }
        };
        let backend_redis_url = backend_settings.redis_url.clone();
        let database_url = backend_settings.database_url.clone().unwrap_or_default();
        let settings = ServeSettings {
            backend: BackendSettings { connect_tries: 1, ..backend_settings },
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            grpc_listen_addr: "127.0.0.1:0".parse().unwrap(),
            admin_listen_addr: "127.0.0.1:0".parse().unwrap(),
            components_dir: components,
            max_body_bytes: options.max_body_bytes.unwrap_or(64 * 1024),
            seed_demo_products: Some(false),
            idempotency_ttl_secs: options.idempotency_ttl_secs.unwrap_or(24 * 3600),
            fulfillment: options
                .fulfillment
                .unwrap_or(FulfillmentSettings { workers: 0, ..FulfillmentSettings::default() }),
            auth: match (options.auth, options.auth_disabled) {
                (Some(auth), _) => auth,
                (None, true) => AuthSettings { disabled: true, ..AuthSettings::default() },
                (None, false) => {
                    AuthSettings { hs256_secret: Some(Secret(TEST_SECRET.into())), ..AuthSettings::default() }
                }
            },
            swap: options.swap.unwrap_or_default(),
            shutdown_grace_secs: 5,
            request_timeout_ms: options.request_timeout_ms.unwrap_or(15_000),
            max_connections: options.max_connections.unwrap_or(1024),
            header_read_timeout_ms: options.header_read_timeout_ms.unwrap_or(10_000),
            http2_max_streams: options.http2_max_streams.unwrap_or(100),
            max_watches_per_caller: options.max_watches_per_caller.unwrap_or(8),
            max_watches: options.max_watches.unwrap_or(1000),
            max_keys_in_flight_per_caller: options.max_keys_in_flight_per_caller.unwrap_or(16),
            ..ServeSettings::default()
        };
        let app = Application::build_on(settings, Some(engine())).await.expect("the service starts");
        let address = app.local_addr();
        let grpc_address = app.grpc_addr();
        let admin_address = app.admin_addr();
        let service = app.app();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Self {
            address,
            grpc_address,
            admin_address,
            client: client_with(&back_office_token()),
            service,
            backend,
            namespace,
            redis_url: backend_redis_url,
            database_url,
            components_dir: dir.path().join("components"),
            stop: Some(stop),
            _database: database,
            _dir: dir,
        }
    }

    /// A generated gRPC client of the order service, sending the back
    /// office's token.
    pub async fn grpc(&self) -> GrpcClient {
        self.grpc_as(&back_office_token()).await
    }

    /// A gRPC client sending `token`.
    pub async fn grpc_as(&self, token: &str) -> GrpcClient {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.grpc_address))
            .expect("an address")
            .connect()
            .await
            .expect("the gRPC API answers");
        OrderServiceClient::with_interceptor(channel, Bearer(format!("Bearer {token}").parse().expect("a token")))
    }

    /// The absolute URL of `path`: on the admin listener for the admin
    /// API's paths (`/api/v1/admin/…`), on the public one for the rest.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("/api/v1/admin") { self.admin_url(path) } else { self.public_url(path) }
    }

    /// `path` on the public listener, whatever it is.
    pub fn public_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// `path` on the admin listener, whatever it is.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request sent")
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.post(self.url(path)).json(body).send().await.expect("request sent")
    }

    pub async fn patch(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.patch(self.url(path)).json(body).send().await.expect("request sent")
    }

    /// Creates a product priced in EUR; returns its id.
    pub async fn product(&self, sku: &str, price: u32, stock: u32) -> i64 {
        let response =
            self.post("/api/v1/products", &json!({"sku": sku, "name": sku, "price": price, "stock": stock})).await;
        assert_eq!(response.status(), 201, "creating product {sku}");
        response.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    /// The product's current stock, read through the API.
    pub async fn stock(&self, product_id: i64) -> i64 {
        let product: Value = self.get(&format!("/api/v1/products/{product_id}")).await.json().await.unwrap();
        product["stock"].as_i64().unwrap()
    }

    /// Places an order for `items` (`(product id, quantity)`) for user 7.
    pub async fn order(&self, items: &[(i64, u32)]) -> reqwest::Response {
        let items: Vec<Value> =
            items.iter().map(|(id, quantity)| json!({"product_id": id, "quantity": quantity})).collect();
        self.post("/api/v1/orders", &json!({"user_id": 7, "items": items})).await
    }

    /// Places an order for `items` with `attributes` for user 7; returns its id.
    pub async fn place(&self, items: &[(i64, u32)], attributes: Value) -> i64 {
        self.place_for(7, items, attributes).await
    }

    /// Places an order for `items` with `attributes` for `user_id`; returns its id.
    pub async fn place_for(&self, user_id: i64, items: &[(i64, u32)], attributes: Value) -> i64 {
        let items: Vec<Value> =
            items.iter().map(|(id, quantity)| json!({"product_id": id, "quantity": quantity})).collect();
        let body = json!({"user_id": user_id, "items": items, "attributes": attributes});
        let response = self.post("/api/v1/orders", &body).await;
        assert_eq!(response.status(), 201, "placing an order");
        response.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }

    /// Reads order `id` until its status is `status`; panics after `within`.
    pub async fn wait_for_status(&self, id: i64, status: &str, within: std::time::Duration) -> Value {
        let deadline = std::time::Instant::now() + within;
        loop {
            let order: Value = self.get(&format!("/api/v1/orders/{id}")).await.json().await.unwrap();
            if order["status"] == status {
                return order;
            }
            assert!(std::time::Instant::now() < deadline, "order {id} did not become {status}: {order}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// A connection to this app's Redis (PostgreSQL backend only).
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        let url = self.redis_url.clone().expect("this app runs on Redis");
        redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
    }

    /// The PostgreSQL database (PostgreSQL backend only).
    pub fn database(&self) -> &TestDatabase {
        self._database.as_ref().expect("this app runs on PostgreSQL")
    }

    /// The embedded database's file (embedded backend only).
    pub fn sqlite_file(&self) -> PathBuf {
        assert_eq!(self.backend, Backend::Embedded, "this app runs on SQLite");
        self._dir.path().join("orderly.db")
    }

    /// How many orders the database holds.
    pub async fn order_count(&self) -> i64 {
        let page: Value = self.get("/api/v1/orders?limit=100").await.json().await.unwrap();
        page["items"].as_array().unwrap().len() as i64
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Sends a bearer token with every gRPC call.
#[derive(Clone)]
pub struct Bearer(pub tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The order service's client, as the tests use it.
pub type GrpcClient =
    OrderServiceClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>>;

/// Asserts `response` is a problem with `status` and returns its body.
pub async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let echoed = response.headers()["x-correlation-id"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().unwrap().starts_with("urn:orderly:problem:"), "{body}");
    assert!(!body["title"].as_str().unwrap().is_empty());
    assert_eq!(body["correlation_id"], echoed, "the body carries the echoed correlation id");
    body
}

/// Declares a test that runs once per backend: `mod $name { embedded, postgres }`,
/// optionally with [`Options`] built by an expression.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, options = $options:expr, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($app: $crate::helpers::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                let options = $options;
                run($crate::helpers::TestApp::spawn_with($crate::helpers::Backend::Embedded, options).await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let options = $options;
                run($crate::helpers::TestApp::spawn_with($crate::helpers::Backend::Postgres, options).await).await
            }
        }
    };
    ($name:ident, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($app: $crate::helpers::TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                run($crate::helpers::TestApp::spawn($crate::helpers::Backend::Embedded).await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run($crate::helpers::TestApp::spawn($crate::helpers::Backend::Postgres).await).await
            }
        }
    };
}
