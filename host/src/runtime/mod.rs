//! The plugin runtime: one engine, one linker, one pre-instantiated component
//! per slot, and a fresh, limited store for every call.
//!
//! ```text
//! load:  .wasm ──compile (blocking pool)──► Component ──link + type-check──► LoadedComponent
//! call:  LoadedComponent ──fresh Store (pooled, deadline, memory cap)──► instantiate ──► export
//! ```

pub mod allowlist;
pub mod bindings;
pub mod call;
pub mod capabilities;
mod checks;
mod engine;
pub mod fakes;
pub mod fixtures;
pub mod slot;
pub mod slot_config;
pub mod stats;
mod wasi;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store};

use bindings::fulfillment::FulfillmentPolicyPre;
use bindings::pricer::PricerPre;
use bindings::types::{Decision, Order, Quote, Violation};
use bindings::validator::OrderValidatorPre;
pub use call::{CallContext, CallError, CallOutput, CallState, CapabilityUse, UseOutcome};
pub use capabilities::Capabilities;
pub use engine::EngineSettings;
use slot::SlotPre;
pub use slot::{LoadedComponent, Slot, SlotRegistry};
pub use slot_config::SlotConfig;

/// Why a component could not be loaded into a slot.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    /// The slot's `.toml` is invalid.
    #[error(transparent)]
    Config(#[from] slot_config::SlotConfigError),
    /// The bytes are not a valid WebAssembly component.
    #[error("not a valid component: {0}")]
    Compile(String),
    /// The component imports something the host does not provide, or does not
    /// export what the slot's world requires.
    #[error("does not fit the {slot} slot (world {world}): {reason}")]
    World { slot: Slot, world: &'static str, reason: String },
}

/// The engine could not be configured (for example the pooling allocator
/// could not reserve its address space).
#[derive(Debug, thiserror::Error)]
#[error("cannot start the WebAssembly runtime: {0}")]
pub struct StartError(String);

/// The engine, the linker with every capability, and the bounded pool of
/// instances, a share of it for each slot.
pub struct Runtime {
    shared: Arc<Shared>,
    capabilities: Arc<Capabilities>,
}

/// What every runtime made from one [`Runtime::new`] shares.
struct Shared {
    engine: Engine,
    linker: Linker<CallState>,
    /// Each slot's share of the instance pool, by [`Slot`] index.
    instances: [Semaphore; 3],
    /// Compiled components by sha256: loading the same bytes again (a
    /// rollback, a second service on the same engine) skips compilation.
    compiled: std::sync::Mutex<std::collections::HashMap<String, Component>>,
    _ticker: engine::EpochTicker,
}

/// Compiled components kept for reuse; past this the cache starts afresh.
const COMPILED_CACHE_ENTRIES: usize = 32;

impl Runtime {
    /// Builds the engine and linker once and starts the epoch ticker.
    pub fn new(settings: &EngineSettings, capabilities: Capabilities) -> Result<Self, StartError> {
        Self::build(settings, capabilities).map_err(|error| StartError(format!("{error:#}")))
    }

    fn build(settings: &EngineSettings, capabilities: Capabilities) -> wasmtime::Result<Self> {
        let engine = engine::build_engine(settings)?;
        let mut linker = Linker::<CallState>::new(&engine);
        // Only the WASI a Rust component needs to run; no files, no sockets.
        wasi::add_to_linker(&mut linker)?;
        bindings::platform::Platform::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)?;
        bindings::types::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)?;
        let ticker = engine::EpochTicker::start(engine.clone(), settings.epoch_tick);
        let shared = Shared {
            engine,
            linker,
            instances: Slot::ALL.map(|_| Semaphore::new(settings.max_calls_per_slot.max(1) as usize)),
            compiled: Default::default(),
            _ticker: ticker,
        };
        Ok(Self { shared: Arc::new(shared), capabilities: Arc::new(capabilities) })
    }

    /// A runtime on the same engine, linker, instance pool and compiled
    /// components, whose calls use other capability backends (another
    /// service in the same process, such as a test's).
    pub fn with_capabilities(&self, capabilities: Capabilities) -> Self {
        Self { shared: self.shared.clone(), capabilities: Arc::new(capabilities) }
    }

    /// The engine, for callers that compile ahead of time.
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// The capability backends every call uses.
    pub fn capabilities(&self) -> &Arc<Capabilities> {
        &self.capabilities
    }

    /// Compiles `wasm` (off the async worker threads), links it and checks it
    /// against `slot`'s world.
    pub async fn load(&self, slot: Slot, wasm: Vec<u8>, config: SlotConfig) -> Result<LoadedComponent, LoadError> {
        self.load_with_text(slot, wasm, config, None).await
    }

    /// Like [`Runtime::load`], remembering the `.toml` text `config` was read from.
    pub async fn load_with_text(
        &self,
        slot: Slot,
        wasm: Vec<u8>,
        config: SlotConfig,
        config_text: Option<String>,
    ) -> Result<LoadedComponent, LoadError> {
        let digest = digest(&wasm);
        let wasm: Arc<[u8]> = wasm.into();
        let component = self.compile(&digest, wasm.clone()).await?;
        let world_error =
            |error: wasmtime::Error| LoadError::World { slot, world: slot.world(), reason: format!("{error:#}") };
        let instance_pre = self.shared.linker.instantiate_pre(&component).map_err(world_error)?;
        let pre = match slot {
            Slot::Validation => SlotPre::Validation(OrderValidatorPre::new(instance_pre).map_err(world_error)?),
            Slot::Pricing => SlotPre::Pricing(PricerPre::new(instance_pre).map_err(world_error)?),
            Slot::Fulfillment => SlotPre::Fulfillment(FulfillmentPolicyPre::new(instance_pre).map_err(world_error)?),
        };
        Ok(LoadedComponent {
            slot,
            name: config.component.name.as_deref().unwrap_or(slot.name()).into(),
            version: config.component.version.as_deref().unwrap_or("unversioned").into(),
            digest: digest.into(),
            loaded_at: Utc::now(),
            config: Arc::new(config),
            config_text: config_text.map(Into::into),
            wasm,
            fixture_files: None,
            stats: Arc::default(),
            component,
            pre,
        })
    }

    /// What a loaded component exports and imports, by name.
    pub fn interface(&self, component: &LoadedComponent) -> (Vec<String>, Vec<String>) {
        let engine = &self.shared.engine;
        let kind = component.component.component_type();
        let exports = kind.exports(engine).map(|(name, _)| name.to_owned()).collect();
        let imports = kind.imports(engine).map(|(name, _)| name.to_owned()).collect();
        (exports, imports)
    }

    /// Compiles `wasm` off the async worker threads, or reuses an earlier compilation.
    async fn compile(&self, digest: &str, wasm: Arc<[u8]>) -> Result<Component, LoadError> {
        let cached = self.shared.compiled.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(digest).cloned();
        if let Some(component) = cached {
            return Ok(component);
        }
        let engine = self.shared.engine.clone();
        // The serial part of a compile (parsing, translating, linking) at
        // the lowest priority too, not only the functions wasmtime compiles in parallel.
        let component = engine::at_lowest_priority(move || Component::new(&engine, &wasm))
            .await
            .map_err(|error| LoadError::Compile(format!("compilation task failed: {error}")))?
            .map_err(|error| LoadError::Compile(format!("{error:#}")))?;
        let mut compiled = self.shared.compiled.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if compiled.len() >= COMPILED_CACHE_ENTRIES {
            compiled.clear();
        }
        compiled.insert(digest.to_owned(), component.clone());
        Ok(component)
    }

    /// Loads `wasm_path` with the `.toml` of the same name beside it, if any.
    pub async fn load_file(&self, slot: Slot, wasm_path: &Path) -> Result<LoadedComponent, LoadError> {
        let wasm = tokio::fs::read(wasm_path)
            .await
            .map_err(|error| LoadError::Read { path: wasm_path.display().to_string(), message: error.to_string() })?;
        let toml_path = wasm_path.with_extension("toml");
        let text = match tokio::fs::read_to_string(&toml_path).await {
            Ok(text) => Some(text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                return Err(LoadError::Read { path: toml_path.display().to_string(), message: error.to_string() });
            }
        };
        let config = match &text {
            Some(text) => SlotConfig::parse(text, &toml_path.display().to_string())?,
            None => SlotConfig::default(),
        };
        self.load_with_text(slot, wasm, config, text).await
    }

    /// Loads every `<slot>.wasm` present in `dir` into `registry`; returns the
    /// slots it filled.
    pub async fn load_dir(&self, dir: &Path, registry: &SlotRegistry) -> Result<Vec<Slot>, LoadError> {
        let mut filled = Vec::new();
        for slot in Slot::ALL {
            let (wasm, _) = slot::slot_files(dir, slot);
            if wasm.exists() {
                registry.install(self.load_file(slot, &wasm).await?);
                filled.push(slot);
            }
        }
        Ok(filled)
    }

    /// Asks a `validation` component for the order's violations.
    pub async fn validate(
        &self,
        component: &LoadedComponent,
        context: &CallContext,
        order: &Order,
    ) -> Result<CallOutput<Vec<Violation>>, CallError> {
        let SlotPre::Validation(pre) = &component.pre else {
            return Err(wrong_slot(component, Slot::Validation));
        };
        let output = self
            .run(component, context, async |store| {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance.call_validate(&mut *store, order).await
            })
            .await?;
        checks::violations(&output.value).map_err(|reason| CallError::Malformed { reason })?;
        Ok(output)
    }

    /// Asks a `pricing` component for the order's quote.
    pub async fn price(
        &self,
        component: &LoadedComponent,
        context: &CallContext,
        order: &Order,
    ) -> Result<CallOutput<Result<Quote, Vec<Violation>>>, CallError> {
        let SlotPre::Pricing(pre) = &component.pre else {
            return Err(wrong_slot(component, Slot::Pricing));
        };
        let output = self
            .run(component, context, async |store| {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance.call_price(&mut *store, order).await
            })
            .await?;
        match &output.value {
            Ok(quote) => checks::quote(order, quote),
            Err(violations) => checks::violations(violations),
        }
        .map_err(|reason| CallError::Malformed { reason })?;
        Ok(output)
    }

    /// Asks a `fulfillment` component what to do with a stored, priced order.
    pub async fn decide(
        &self,
        component: &LoadedComponent,
        context: &CallContext,
        order: &Order,
        quote: &Quote,
    ) -> Result<CallOutput<Decision>, CallError> {
        let SlotPre::Fulfillment(pre) = &component.pre else {
            return Err(wrong_slot(component, Slot::Fulfillment));
        };
        let output = self
            .run(component, context, async |store| {
                let instance = pre.instantiate_async(&mut *store).await?;
                instance.call_decide(&mut *store, order, quote).await
            })
            .await?;
        checks::decision(&output.value).map_err(|reason| CallError::Malformed { reason })?;
        Ok(output)
    }

    /// Runs one call in a fresh store under the component's limits, bounded
    /// end to end by its deadline: waiting for one of the slot's instances,
    /// instantiation, guest code and every host call (WASI included). Guest
    /// code is stopped by the epoch callback; a wait in a host call is
    /// stopped by dropping the call, which unwinds the guest, and the store
    /// goes with it.
    async fn run<T>(
        &self,
        component: &LoadedComponent,
        context: &CallContext,
        call: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<T>,
    ) -> Result<CallOutput<T>, CallError> {
        let started = Instant::now();
        let limits = &component.config.limits;
        let deadline = started + limits.deadline();
        let instances = &self.shared.instances[component.slot as usize];
        let _permit = match tokio::time::timeout_at(deadline.into(), instances.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(CallError::Busy { message: "the runtime is shutting down".into() }),
            Err(_) => return Err(CallError::Busy { message: format!("no free {} instance", component.slot) }),
        };
        let capabilities = context.capabilities.clone().unwrap_or_else(|| self.capabilities.clone());
        let mut store = call::new_store(&self.shared.engine, component, context, capabilities, deadline);
        match tokio::time::timeout_at(deadline.into(), call(&mut store)).await {
            Ok(result) => call::finish(store, result, started),
            Err(_) => Err(call::stopped_at_deadline(store)),
        }
    }
}

/// The sha256 of a `.wasm`, hex: how a component version is named.
pub fn digest(wasm: &[u8]) -> String {
    hex::encode(Sha256::digest(wasm))
}

fn wrong_slot(component: &LoadedComponent, expected: Slot) -> CallError {
    CallError::Instantiate {
        message: format!("component {} fills the {} slot, not {expected}", component.name, component.slot),
    }
}
