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
