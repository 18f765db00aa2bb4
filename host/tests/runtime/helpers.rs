//! Shared set-up: component builds, runtimes with fakes, test databases.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use host::runtime::fakes::Fakes;
#[path = "../common/database.rs"]
mod database;
pub use database::{TestDatabase, redis_url};

use host::runtime::{Capabilities, EngineSettings, LoadedComponent, Runtime, Slot, SlotConfig};

/// The `.wasm` of the component crate at `components/<dir>`, built if stale.
pub fn wasm(dir: &str) -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../components").join(dir);
    component_testkit::component_wasm(&manifest_dir.canonicalize().expect("component dir exists"))
}

/// The `<slot>.toml` a default component ships.
pub fn shipped_config(dir: &str, slot: Slot) -> SlotConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../components").join(dir).join(format!("{slot}.toml"));
    SlotConfig::read_or_default(&path).expect("shipped config parses")
}

/// A runtime over `capabilities` with a small instance pool.
pub fn runtime(capabilities: Capabilities) -> Runtime {
    let settings = EngineSettings { max_calls_per_slot: 16, ..EngineSettings::default() };
    Runtime::new(&settings, capabilities).expect("runtime builds")
}

/// A runtime over fresh fakes, and the fakes.
pub fn runtime_with_fakes() -> (Runtime, Fakes) {
    let fakes = Fakes::default();
    (runtime(fakes.capabilities()), fakes)
}

/// Loads `components/<dir>` into `slot` with `config`.
pub async fn load(runtime: &Runtime, dir: &str, slot: Slot, config: SlotConfig) -> LoadedComponent {
    let bytes = std::fs::read(wasm(dir)).expect("wasm readable");
    runtime.load(slot, bytes, config).await.unwrap_or_else(|error| panic!("loading {dir}: {error}"))
}

/// Parses a slot configuration written inline.
pub fn config(toml: &str) -> SlotConfig {
    SlotConfig::parse(toml, "test").expect("test config parses")
}

/// A 3-line EUR order for `user_id`.
pub fn order(user_id: u64) -> host::runtime::bindings::types::Order {
    component_testkit::OrderBuilder::new(user_id).item(1, 1250, 2).item(2, 990, 1).item(3, 4500, 3).build()
}

/// Capabilities with a given sql backend and fakes for the rest.
pub fn with_sql(fakes: &Fakes, sql: Arc<dyn host::runtime::capabilities::SqlBackend>) -> Capabilities {
    Capabilities { sql, ..fakes.capabilities() }
}

/// The service's store on `url` (`postgres://…` or `sqlite:…`): its schema,
/// its views for components, and the components' logins.
pub async fn store(url: &str) -> host::store::Store {
    let options = host::store::ConnectOptions {
        url: url.to_owned(),
        max_connections: 4,
        retry: host::store::Retry { tries: 1, delay: std::time::Duration::ZERO },
        component_logins: host::runtime::capabilities::ComponentLogins::default(),
    };
    let store = host::store::Store::open(&options).await.expect("the store opens");
    store.set_up_component_logins().await.expect("the test login may create the component logins");
    store
}

/// A runtime whose `sql` capability is `store`'s, and the rest fakes, with
/// `slot`'s grant (from `grants`) applied to the database.
pub async fn runtime_on(store: &host::store::Store, slot: Slot, grants: &SlotConfig) -> Runtime {
    let sql = store.components_sql();
    sql.apply_grant(slot, grants.grants.sql.as_ref()).await.expect("the grant applies");
    runtime(with_sql(&Fakes::default(), sql))
}

/// Runs the probe fixture in the pricing slot with `toml` and returns its
/// report on the `sql` capability: (`sql-ok`/`sql-denied`/`sql-error`, text).
pub async fn sql_probe(store: &host::store::Store, toml: &str) -> (String, String) {
    // A generous deadline: the probe waits on real I/O in a debug build.
    let config = config(&format!("[limits]\ndeadline_ms = 10000\n{toml}"));
    let runtime = runtime_on(store, Slot::Pricing, &config).await;
    let probe = load(&runtime, "fixtures/forbidden", Slot::Pricing, config).await;
    let output = runtime.price(&probe, &host::runtime::CallContext::new("sql-probe"), &order(42)).await;
    let report = output.expect("the probe answers").value.expect_err("the probe reports as violations");
    (report[1].code.clone(), report[1].message.clone())
}

/// The `Host` header of each request a [`serve`] server read.
#[derive(Clone, Default)]
pub struct Seen(pub Arc<std::sync::Mutex<Vec<String>>>);

/// A server on loopback answering every request with `head` (status line
/// and extra headers, e.g. `302 Found\r\nlocation: …`) and `body`; returns
/// its port and the `Host` of each request it read.
pub async fn serve(head: &'static str, body: String) -> (u16, Seen) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Seen::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (record, body) = (record.clone(), body.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                let host = text.lines().find_map(|line| line.strip_prefix("host: ")).unwrap_or_default();
                record.0.lock().unwrap().push(host.trim().to_owned());
                let head = format!("HTTP/1.1 {head}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(body.as_bytes()).await;
            });
        }
    });
    (port, seen)
}
