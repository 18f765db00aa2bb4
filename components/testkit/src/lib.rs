//! Test a built component from plain `cargo test`.
//!
//! The kit builds the component for `wasm32-wasip2`, loads it into the real
//! host linker (the same engine, limits and capability checks as production),
//! and backs every capability with a fake you can seed and inspect: an
//! in-memory key-value store, canned SQL rows, canned HTTP responses and
//! captured log lines.
//!
//! ```no_run
//! use component_testkit::{OrderBuilder, Slot, TestHost};
//!
//! #[tokio::test]
//! async fn promo_code_discounts() {
//!     let host = TestHost::load_crate(env!("CARGO_MANIFEST_DIR"), Slot::Pricing).await;
//!     host.kv_set("promo:SAVE10", "1000");
//!     let order = OrderBuilder::new(7).item(1, 2500, 2).attribute("promo_code", "save10").build();
//!     let quote = host.price(&order).await.unwrap().value.unwrap();
//!     assert_eq!(quote.discount, 500);
//!     // Golden fixtures next to the component: <case>.input.json -> <case>.expected.json
//!     host.assert_golden(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures")).await;
//! }
//! ```

mod build;
mod order;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use host::runtime::fixtures;
use host::runtime::{CallContext, EngineSettings, Runtime};

pub use build::component_wasm;
pub use host::runtime::bindings::http::{Header, Request};
pub use host::runtime::bindings::logging::{Field, Level};
pub use host::runtime::bindings::sql::{Rows, Value};
pub use host::runtime::bindings::types::{
    Attribute, Decision, LineItem, Order, PricedLine, Quote, Shipment, Violation,
};
pub use host::runtime::fakes::{CannedQuery, CannedResponse, Fakes, LogLine, SeenQuery};
pub use host::runtime::fixtures::FixtureOutcome;
pub use host::runtime::{CallError, CallOutput, CapabilityUse, LoadedComponent, Slot, SlotConfig, UseOutcome};
pub use order::{OrderBuilder, quote_with_total};

/// One component loaded into the real runtime, with fake capabilities.
pub struct TestHost {
    runtime: Runtime,
    fakes: Fakes,
    component: LoadedComponent,
}

impl TestHost {
    /// Builds the component crate at `manifest_dir` (pass
    /// `env!("CARGO_MANIFEST_DIR")`) and loads it into `slot` with the
    /// `<slot>.toml` the crate ships, if any.
    pub async fn load_crate(manifest_dir: &str, slot: Slot) -> Self {
        let dir = Path::new(manifest_dir);
        let wasm = component_wasm(dir);
        let config = SlotConfig::read_or_default(&dir.join(format!("{}.toml", slot.name())))
            .unwrap_or_else(|error| panic!("{error}"));
        Self::load_file(&wasm, slot, config).await
    }

    /// Loads an already built `.wasm` into `slot` with `config`.
    pub async fn load_file(wasm: &Path, slot: Slot, config: SlotConfig) -> Self {
        let bytes = std::fs::read(wasm).unwrap_or_else(|error| panic!("reading {}: {error}", wasm.display()));
        let fakes = Fakes::default();
        // A small pool: tests run many hosts side by side.
        let settings = EngineSettings { max_calls_per_slot: 16, ..EngineSettings::default() };
        let runtime = Runtime::new(&settings, fakes.capabilities()).expect("building the runtime");
        let component = runtime
            .load(slot, bytes, config)
            .await
            .unwrap_or_else(|error| panic!("loading {} into {slot}: {error}", wasm.display()));
        Self { runtime, fakes, component }
    }

    /// The loaded component (name, version, digest, configuration).
    pub fn component(&self) -> &LoadedComponent {
        &self.component
    }

    /// The runtime, for calls this kit does not wrap.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Replaces the component's `[config]` settings.
    pub fn set_settings<K: Into<String>, V: Into<String>>(&mut self, settings: impl IntoIterator<Item = (K, V)>) {
        let settings: BTreeMap<String, String> = settings.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self.component = self.component.with_settings(settings);
    }

    fn kv_prefix(&self) -> String {
        let grant = self.component.config.grants.kv.as_ref();
        grant.and_then(|g| g.prefix.clone()).unwrap_or_else(|| self.component.slot.name().to_string())
    }

    /// Stores `value` under `key` as the component sees it.
    pub fn kv_set(&self, key: &str, value: &str) {
        self.fakes.kv.insert(format!("kv:{}:{key}", self.kv_prefix()), value);
    }

    /// Every key-value entry, keyed as the component sees them.
    pub fn kv_entries(&self) -> HashMap<String, String> {
        let prefix = format!("kv:{}:", self.kv_prefix());
        self.fakes
            .kv
            .snapshot()
            .into_iter()
            .filter_map(|(key, value)| Some((key.strip_prefix(&prefix)?.to_string(), value)))
            .collect()
    }

    /// Answers statements containing `statement_contains` with `rows`.
    pub fn sql_answer(&self, statement_contains: &str, columns: &[&str], rows: Vec<Vec<Value>>) {
        self.fakes.sql.answer(CannedQuery {
            statement_contains: statement_contains.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
        });
    }

    /// Answers requests for `url` with `status` and `body`.
    pub fn http_respond(&self, url: &str, status: u16, body: &str) {
        self.fakes.http.respond(CannedResponse { url: url.into(), status, headers: vec![], body: body.into() });
    }

    /// Statements the component ran.
    pub fn sql_seen(&self) -> Vec<SeenQuery> {
        self.fakes.sql.seen()
    }

    /// Requests the component sent (that passed the allowlist).
    pub fn http_seen(&self) -> Vec<Request> {
        self.fakes.http.seen()
    }

    /// Lines the component logged.
    pub fn logs(&self) -> Vec<LogLine> {
        self.fakes.logs.lines()
    }

    fn context() -> CallContext {
        CallContext::new("testkit")
    }

    /// Calls a `validation` component.
    pub async fn validate(&self, order: &Order) -> Result<CallOutput<Vec<Violation>>, CallError> {
        self.runtime.validate(&self.component, &Self::context(), order).await
    }

    /// Calls a `pricing` component.
    pub async fn price(&self, order: &Order) -> Result<CallOutput<Result<Quote, Vec<Violation>>>, CallError> {
        self.runtime.price(&self.component, &Self::context(), order).await
    }

    /// Calls a `fulfillment` component.
    pub async fn decide(&self, order: &Order, quote: &Quote) -> Result<CallOutput<Decision>, CallError> {
        self.runtime.decide(&self.component, &Self::context(), order, quote).await
    }

    /// Runs the golden fixtures in `dir`, each against fresh fakes.
    pub async fn run_golden(&self, dir: impl AsRef<Path>) -> Vec<FixtureOutcome> {
        let cases = fixtures::load_fixtures(dir.as_ref()).unwrap_or_else(|error| panic!("{error}"));
        assert!(!cases.is_empty(), "no fixtures in {}", dir.as_ref().display());
        fixtures::run_fixtures(&self.runtime, &self.component, &cases).await
    }

    /// Runs the golden fixtures in `dir` and panics, showing expected and
    /// actual answers, if any case differs.
    pub async fn assert_golden(&self, dir: impl AsRef<Path>) -> Vec<FixtureOutcome> {
        let outcomes = self.run_golden(dir).await;
        let failures: Vec<String> = outcomes
            .iter()
            .filter(|outcome| !outcome.passed())
            .map(|outcome| {
                let actual = match &outcome.actual {
                    Ok(value) => serde_json::to_string_pretty(value).unwrap_or_default(),
                    Err(error) => format!("error: {error}"),
                };
                let expected = serde_json::to_string_pretty(&outcome.expected).unwrap_or_default();
                format!("fixture {}:\n  expected: {expected}\n  actual:   {actual}", outcome.name)
            })
            .collect();
        assert!(failures.is_empty(), "{} golden fixture(s) failed:\n{}", failures.len(), failures.join("\n"));
        outcomes
    }
}
