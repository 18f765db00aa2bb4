//! What the service benchmarks share: a database of their own on the test
//! PostgreSQL server, a Redis namespace, the default components, and the
//! service built on them.
#![allow(dead_code)] // Each benchmark uses its own part of this file.

pub mod cpu;
pub mod load;

use std::path::Path;

use host::auth::{AuthSettings, Scopes, Secret, TokenIssuer, TokenRequest};
use host::config::{BackendSettings, FulfillmentSettings, ServeSettings};
use host::domain::Product;
use host::domain::input::NewProduct;
use host::store::Store;

/// The secret the benchmarks' services verify tokens with (`AUTH_HS256_SECRET`).
pub const BENCH_SECRET: &str = "the benchmarks' shared secret, thirty-two bytes at least";

/// A token with every scope, valid for a day: every benchmark request sends
/// it, as a gateway reusing its token would.
pub fn bench_token() -> String {
    let issuer = TokenIssuer::hs256(BENCH_SECRET.as_bytes(), "orderly", "orderly").expect("a signer");
    let request = TokenRequest {
        subject: "bench".into(),
        scopes: Scopes::all(),
        lifetime: std::time::Duration::from_secs(24 * 3600),
        client_id: None,
    };
    issuer.issue(&request).expect("a token")
}

/// A reqwest client sending [`bench_token`].
pub fn bench_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", bench_token()).parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

/// Whether `cargo bench` runs us. `cargo test` (so `just test`) runs the
/// benchmarks too, as a smoke test: they then use small sizes.
pub fn measuring() -> bool {
    std::env::args().any(|argument| argument == "--bench")
}

/// `name` from the environment, or `default` (`smoke` when only smoke-testing).
pub fn setting<T: std::str::FromStr>(name: &str, default: T, smoke: T) -> T {
    if measuring() { env_or(name, default) } else { smoke }
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// A database created for one benchmark run, dropped by [`BenchDatabase::drop_now`].
pub struct BenchDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
    pub redis_url: String,
}

impl BenchDatabase {
    /// Creates `bench_<random>` on `DATABASE_TEST_URL`'s server (default: local PostgreSQL).
    pub fn create(runtime: &tokio::runtime::Runtime) -> Self {
        let admin_url =
            std::env::var("DATABASE_TEST_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let redis_url = std::env::var("REDIS_TEST_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&name);
        let database = Self { admin_url, name, url: url.to_string(), redis_url };
        database.admin(runtime, &format!("CREATE DATABASE {}", database.name));
        database
    }

    fn admin(&self, runtime: &tokio::runtime::Runtime, statement: &str) {
        runtime.block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&self.admin_url).await.expect("PostgreSQL reachable");
            sqlx::query(statement).execute(&mut connection).await.unwrap();
        })
    }

    /// Clears dead row versions and refreshes the planner's statistics, as
    /// autovacuum would between two busy periods, so each measured phase
    /// starts on tables in the same shape.
    pub fn vacuum(&self, runtime: &tokio::runtime::Runtime) {
        runtime.block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&self.url).await.expect("PostgreSQL reachable");
            sqlx::query("VACUUM ANALYZE").execute(&mut connection).await.unwrap();
        })
    }

    /// Drops the database.
    pub fn drop_now(&self, runtime: &tokio::runtime::Runtime) {
        self.admin(runtime, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }

    /// Serve settings on this database and Redis, with the default components from `components`.
    pub fn serve_settings(&self, components: &Path, fulfillment: FulfillmentSettings) -> ServeSettings {
        ServeSettings {
            backend: BackendSettings {
                database_url: Some(self.url.clone()),
                redis_url: Some(self.redis_url.clone()),
                redis_namespace: format!("bench:{}:", self.name),
                database_max_connections: env_or("DATABASE_MAX_CONNECTIONS", 16),
                ..BackendSettings::default()
            },
            fulfillment,
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            grpc_listen_addr: "127.0.0.1:0".parse().unwrap(),
            admin_listen_addr: "127.0.0.1:0".parse().unwrap(),
            components_dir: components.to_path_buf(),
            seed_demo_products: Some(false),
            auth: AuthSettings { hs256_secret: Some(Secret(BENCH_SECRET.into())), ..AuthSettings::default() },
            ..ServeSettings::default()
        }
    }
}

/// Copies the default components (built by `just build`) into `dir`.
pub fn install_components(dir: &Path) {
    let components = Path::new(env!("CARGO_MANIFEST_DIR")).join("../components");
    std::fs::create_dir_all(dir).unwrap();
    for (slot, crate_dir) in
        [("validation", "order-validation"), ("pricing", "pricing"), ("fulfillment", "fulfillment-standard")]
    {
        let manifest = components.join(crate_dir).canonicalize().unwrap();
        std::fs::copy(component_testkit::component_wasm(&manifest), dir.join(format!("{slot}.wasm"))).unwrap();
        std::fs::copy(manifest.join(format!("{slot}.toml")), dir.join(format!("{slot}.toml"))).unwrap();
    }
}

/// The same component with a custom section appended: new bytes and
/// sha256, the same behaviour (so it passes the same fixtures).
pub fn rebuilt(wasm: &[u8], tag: u64) -> Vec<u8> {
    let name = b"orderly-build";
    let payload = tag.to_le_bytes();
    let mut bytes = wasm.to_vec();
    bytes.extend_from_slice(&[0, (1 + name.len() + payload.len()) as u8, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(&payload);
    bytes
}

/// Medians and percentiles of a sorted sample.
pub fn percentile<T: Copy + Default>(sorted: &[T], fraction: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    sorted[((sorted.len() as f64 - 1.0) * fraction).round() as usize]
}

/// Criterion's median estimate for benchmark `id` of this run, in nanoseconds.
pub fn median_ns(id: &str) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let text = std::fs::read_to_string(target.join("criterion").join(id).join("new/estimates.json")).ok()?;
    let estimates: serde_json::Value = serde_json::from_str(&text).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

/// Three distinct catalogue positions for the `n`th order.
pub fn picks(n: u64) -> [usize; 3] {
    let first = (n.wrapping_mul(2_654_435_761) % CATALOGUE as u64) as usize;
    [first, (first + 333) % CATALOGUE, (first + 667) % CATALOGUE]
}

pub const CATALOGUE: usize = 1000;

/// Creates `CATALOGUE` products whose SKUs start with `prefix`.
pub async fn load_catalogue(store: &Store, prefix: &str) -> Vec<Product> {
    let mut created = Vec::new();
    for n in 0..CATALOGUE {
        let product = NewProduct {
            sku: format!("{prefix}-{n:04}"),
            name: format!("Bench product {n}"),
            price: 500 + (n as i64 * 37) % 5000,
            currency: "EUR".into(),
            stock: 1_000_000_000_000,
            active: true,
        };
        created.push(store.create_product(&product).await.unwrap());
    }
    created
}

/// The service alone (no fulfillment workers) on a database of its own,
/// serving on a runtime of its own (2 threads, as in its own process), with
/// a 1-thread runtime beside it for the load generator. `server_cpu` counts
/// the CPU time of the server's threads, so a run can say what the service
/// itself spent per request.
pub struct ApiUnderLoad {
    pub server: tokio::runtime::Runtime,
    pub server_cpu: cpu::ThreadClock,
    pub client: tokio::runtime::Runtime,
    pub database: BenchDatabase,
    pub app: std::sync::Arc<host::app::App>,
    pub address: std::net::SocketAddr,
    pub grpc_address: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl ApiUnderLoad {
    pub fn start() -> Self {
        let server_cpu = cpu::ThreadClock::default();
        // Blocking threads are kept for the whole run: an exited thread's CPU time could not be read.
        let server = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("server")
            .thread_keep_alive(std::time::Duration::from_secs(24 * 3600))
            .on_thread_start(server_cpu.register())
            .enable_all()
            .build()
            .unwrap();
        let client = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let database = BenchDatabase::create(&client);
        let dir = tempfile::tempdir().unwrap();
        install_components(&dir.path().join("components"));
        let fulfillment = FulfillmentSettings { workers: 0, ..FulfillmentSettings::default() };
        let settings = database.serve_settings(&dir.path().join("components"), fulfillment);
        let built = server.block_on(host::startup::Application::build(settings)).expect("the service starts");
        let (address, grpc_address, app) = (built.local_addr(), built.grpc_addr(), built.app());
        server.spawn(built.run_until(std::future::pending()));
        Self { server, server_cpu, client, database, app, address, grpc_address, _dir: dir }
    }

    /// Serves the same application's public API on another listener (on
    /// the server's runtime), with `credentials`; its address.
    pub fn serve_public(&self, credentials: host::auth::Credentials) -> std::net::SocketAddr {
        let app = &self.app;
        let state = host::api::ApiState {
            orders: app.orders.clone(),
            rules: app.rules.clone(),
            fulfillment: app.fulfillment.clone(),
            health: app.health.clone(),
            credentials,
            stopping: app.stopping.clone(),
        };
        let limits =
            host::api::HttpLimits { max_body_bytes: 64 * 1024, request_timeout: std::time::Duration::from_secs(15) };
        let router = host::api::router(state, limits);
        let listener = self.server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let address = listener.local_addr().unwrap();
        let edge = host::api::serve::EdgeLimits::default();
        self.server.spawn(host::api::serve::serve(listener, router, edge, std::future::pending()));
        address
    }

    /// Runs `load` and counts the server's CPU time spent meanwhile.
    pub fn measure(&self, load: impl FnOnce() -> load::Outcome) -> load::Outcome {
        let before = self.server_cpu.used();
        let mut outcome = load();
        outcome.server_cpu = Some(self.server_cpu.used().saturating_sub(before));
        outcome
    }

    /// Stops the service and drops its database.
    pub fn finish(self) {
        drop(self.server);
        self.database.drop_now(&self.client);
    }
}
