//! One call into a component: the per-call store state, its limits, and how a
//! failure is classified into a [`CallError`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::domain::text::truncate;

use super::bindings::errors::Error;
use super::capabilities::Capabilities;
use super::slot::{LoadedComponent, Slot};
use super::slot_config::SlotConfig;

/// Bytes of a component's stderr kept per call: enough for a panic message.
const STDERR_CAPTURE_BYTES: usize = 4096;
/// Handles (streams, pollables, errors) one call may hold at once. A Rust
/// component uses a handful; the table's own default is a million, each
/// entry host memory outside the call's memory budget.
const MAX_RESOURCES: usize = 1024;
/// Most random bytes one `wasi:random` call may ask for (the host allocates
/// them before they reach the guest's memory).
const MAX_RANDOM_BYTES: u64 = 64 << 10;
/// What a table element costs in the memory budget: wasmtime keeps a
/// pointer per element.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();
/// Capability uses remembered per call; more are counted, not stored.
const MAX_RECORDED_USES: usize = 256;

/// Who a call is for: set by the caller, visible in every log line the
/// component writes.
#[derive(Clone, Default)]
pub struct CallContext {
    /// The request's correlation id.
    pub correlation_id: Arc<str>,
    /// Backends to use instead of the runtime's own: golden fixtures and the
    /// test kit run a component against fakes through the real linker.
    pub capabilities: Option<Arc<Capabilities>>,
}

impl CallContext {
    /// A context carrying `correlation_id`.
    pub fn new(correlation_id: impl Into<Arc<str>>) -> Self {
        Self { correlation_id: correlation_id.into(), capabilities: None }
    }

    /// The same context, served by `capabilities`.
    pub fn with_capabilities(mut self, capabilities: Arc<Capabilities>) -> Self {
        self.capabilities = Some(capabilities);
        self
    }
}

/// What the host tags a call's log lines with.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// The slot, for example `pricing`.
    pub slot: Slot,
    /// The component's name.
    pub component: Arc<str>,
    /// The sha256 of the component's `.wasm`, hex.
    pub digest: Arc<str>,
    /// The request's correlation id.
    pub correlation_id: Arc<str>,
}

/// How a capability call ended, as recorded for the caller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UseOutcome {
    /// The backend answered.
    Ok,
    /// The grant did not allow it; nothing was sent to the backend.
    Denied,
    /// The backend failed or a cap was hit.
    Failed,
}

/// One capability call made by the component, for audit logs and the test kit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CapabilityUse {
    /// `interface.function`, for example `kv.get`.
    pub capability: &'static str,
    /// The key, statement or URL the call was about.
    pub target: String,
    /// How it ended.
    pub outcome: UseOutcome,
}

/// A successful call's result together with what it cost and used.
#[derive(Debug, Clone)]
pub struct CallOutput<T> {
    /// What the component returned.
    pub value: T,
    /// Wall-clock time of the call, instantiation included.
    pub elapsed: Duration,
    /// Capability calls the component made, in order.
    pub uses: Vec<CapabilityUse>,
}

/// Why a call produced no usable result. The host is unaffected in every case
/// and the next call starts from a fresh instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The slot has no component loaded.
    #[error("no component is loaded in the {slot} slot")]
    EmptySlot { slot: &'static str },
    /// The component trapped (a panic, `unreachable`, an out-of-bounds access).
    #[error("component trapped: {message}")]
    Trap { message: String },
    /// The call ran past its deadline and was stopped.
    #[error("component exceeded its {limit_ms} ms deadline")]
    Deadline { limit_ms: u64 },
    /// The component tried to grow its memory past its limit.
    #[error("component exceeded its {limit_bytes}-byte memory limit")]
    Memory { limit_bytes: usize },
    /// The component returned something the host cannot trust.
    #[error("component returned malformed output: {reason}")]
    Malformed { reason: String },
    /// The component could not be instantiated.
    #[error("component could not be instantiated: {message}")]
    Instantiate { message: String },
    /// The component failed after one of the platform's own backends (the
    /// key-value store or the database) failed it: an outage, not a fault of
    /// this version.
    #[error("component failed after the platform's {capability} backend failed ({backend}): {message}")]
    Backend { capability: &'static str, backend: String, message: String },
    /// The host had no capacity for the call within its deadline (every
    /// instance of the slot was busy, or the pool was full): not the
    /// component's fault, and worth retrying.
    #[error("no capacity for the call: {message}")]
    Busy { message: String },
}

impl CallError {
    /// A stable, short name for metrics and problem bodies.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::EmptySlot { .. } => "empty-slot",
            Self::Trap { .. } => "trap",
            Self::Deadline { .. } => "deadline",
            Self::Memory { .. } => "memory",
            Self::Malformed { .. } => "malformed-output",
            Self::Instantiate { .. } => "instantiate",
            Self::Busy { .. } => "busy",
            Self::Backend { .. } => "backend",
        }
    }

    /// Whether the component itself caused the failure, so that it counts
    /// against the version (probation, statistics). An empty slot, a host
    /// without capacity or an outage of a platform backend says nothing
    /// about the version.
    pub fn is_component_fault(&self) -> bool {
        !matches!(self, Self::EmptySlot { .. } | Self::Busy { .. } | Self::Backend { .. })
    }
}

/// Raised from the epoch callback to stop a guest that outlived its deadline.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct DeadlineExceeded;

/// Raised from the resource limiter to stop a guest that wants too much memory.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (asked for {desired})")]
struct MemoryLimitExceeded {
    limit: usize,
    desired: usize,
}

/// One memory budget for the whole call: every memory and table of every
/// core instance the component creates (their initial sizes included) is
/// charged to it, and the first creation or growth past it traps, so the
/// failure is unambiguous instead of an allocator abort. Counts of
/// memories, tables and instances are capped per call as well.
pub(crate) struct CallBudget {
    limit: usize,
    used: usize,
}

impl CallBudget {
    fn charge(&mut self, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let used = self.used.saturating_add(desired.saturating_sub(current));
        if used > self.limit {
            return Err(MemoryLimitExceeded { limit: self.limit, desired: used }.into());
        }
        self.used = used;
        Ok(true)
    }
}

impl ResourceLimiter for CallBudget {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.charge(current, desired)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.charge(current.saturating_mul(TABLE_ELEMENT_BYTES), desired.saturating_mul(TABLE_ELEMENT_BYTES))
    }

    fn instances(&self) -> usize {
        super::engine::MAX_CORE_INSTANCES_PER_COMPONENT as usize
    }

    fn memories(&self) -> usize {
        super::engine::MAX_MEMORIES_PER_COMPONENT as usize
    }

    fn tables(&self) -> usize {
        super::engine::MAX_TABLES_PER_COMPONENT as usize
    }
}

/// The data of one call's [`Store`]: WASI plumbing, limits, the slot's grants
/// and the capability backends.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: CallBudget,
    stderr: MemoryOutputPipe,
    pub(crate) info: CallInfo,
    pub(crate) config: Arc<SlotConfig>,
    pub(crate) capabilities: Arc<Capabilities>,
    pub(crate) uses: Vec<CapabilityUse>,
    pub(crate) log_lines: u32,
    /// The first failure of a platform backend during the call, if any.
    backend_failure: Option<(&'static str, String)>,
    /// When the call must be over; backends bound their own waits by it
    /// (a statement timeout on the database server, say).
    pub(crate) deadline: Instant,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl CallState {
    /// Notes that a platform backend (not a remote the component chose)
    /// failed the call: if the component then fails, the failure is
    /// reported as [`CallError::Backend`].
    pub(crate) fn note_backend_failure(&mut self, capability: &'static str, error: &Error) {
        if self.backend_failure.is_none() {
            self.backend_failure = Some((capability, truncate(&format!("{error:?}"), 200).to_string()));
        }
    }

    /// Records a capability call (bounded, so a chatty guest cannot grow it).
    pub(crate) fn record(&mut self, capability: &'static str, target: &str, outcome: UseOutcome) {
        if self.uses.len() < MAX_RECORDED_USES {
            let target = truncate(target, 200).to_string();
            self.uses.push(CapabilityUse { capability, target, outcome });
        }
    }
}

/// Builds the store for one call, to be over by `deadline`: no environment
/// variables or arguments (and no filesystem or sockets linked at all);
/// stderr captured so a panic message can be reported.
pub(crate) fn new_store(
    engine: &wasmtime::Engine,
    component: &LoadedComponent,
    context: &CallContext,
    capabilities: Arc<Capabilities>,
    deadline: Instant,
) -> Store<CallState> {
    let limits = &component.config.limits;
    let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
    let wasi = WasiCtx::builder().stderr(stderr.clone()).max_random_size(MAX_RANDOM_BYTES).build();
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES);
    let state = CallState {
        wasi,
        table,
        limiter: CallBudget { limit: limits.memory_bytes(), used: 0 },
        stderr,
        info: CallInfo {
            slot: component.slot,
            component: component.name.clone(),
            digest: component.digest.clone(),
            correlation_id: context.correlation_id.clone(),
        },
        config: component.config.clone(),
        capabilities,
        uses: Vec::new(),
        log_lines: 0,
        backend_failure: None,
        deadline,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    // Check the clock at every tick and yield to the async executor in between,
    // so a spinning guest neither outlives its deadline nor starves the other
    // tasks on its worker thread.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Err(DeadlineExceeded.into())
        } else {
            // tokio's yield_now defers the wake-up until the scheduler has
            // polled its timers and I/O, so other tasks really get to run.
            Ok(UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())))
        }
    });
    store
}

/// Turns the raw outcome of a call into a [`CallOutput`] or a [`CallError`].
pub(crate) fn finish<T>(
    store: Store<CallState>,
    result: wasmtime::Result<T>,
    started: Instant,
) -> Result<CallOutput<T>, CallError> {
    let state = store.into_data();
    match result {
        Ok(value) => Ok(CallOutput { value, elapsed: started.elapsed(), uses: state.uses }),
        Err(error) => Err(blame(classify(error, &state), &state)),
    }
}

/// The error of a call stopped at its deadline while it waited in a host call.
pub(crate) fn stopped_at_deadline(store: Store<CallState>) -> CallError {
    let state = store.into_data();
    blame(CallError::Deadline { limit_ms: state.config.limits.deadline_ms }, &state)
}

/// A trap or a deadline that followed a platform backend's failure is the
/// outage's, not the component's.
fn blame(error: CallError, state: &CallState) -> CallError {
    match (&error, &state.backend_failure) {
        (CallError::Trap { .. } | CallError::Deadline { .. }, Some((capability, backend))) => {
            CallError::Backend { capability, backend: backend.clone(), message: error.to_string() }
        }
        _ => error,
    }
}

fn classify(error: wasmtime::Error, state: &CallState) -> CallError {
    if error.downcast_ref::<DeadlineExceeded>().is_some() {
        return CallError::Deadline { limit_ms: state.config.limits.deadline_ms };
    }
    if let Some(breach) = error.downcast_ref::<MemoryLimitExceeded>() {
        return CallError::Memory { limit_bytes: breach.limit };
    }
    if let Some(full) = error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return CallError::Busy { message: full.to_string() };
    }
    let stderr = state.stderr.contents();
    let stderr = String::from_utf8_lossy(&stderr);
    let stderr = stderr.trim();
    let mut message = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    if !stderr.is_empty() {
        message = format!("{message}; component stderr: {}", truncate(stderr, 1024));
    }
    CallError::Trap { message }
}

#[cfg(test)]
mod tests {
    use wasmtime::{Instance, Module, Store};

    use super::*;

    /// Instantiates `module` (text) into `store`.
    fn instantiate(store: &mut Store<CallBudget>, module: &str) -> wasmtime::Result<Instance> {
        let module = Module::new(store.engine(), wat::parse_str(module).unwrap())?;
        Instance::new(&mut *store, &module, &[])
    }

    #[test]
    fn one_budget_covers_every_memory_and_table_of_a_call() {
        let engine = super::super::engine::build_engine(&Default::default()).unwrap();
        let mut store = Store::new(&engine, CallBudget { limit: 3 << 20, used: 0 });
        store.limiter(|budget| budget);
        // Two memories of 2 MiB each: each fits, both together do not.
        instantiate(&mut store, "(module (memory 32))").unwrap();
        let error = instantiate(&mut store, "(module (memory 32))").unwrap_err();
        let breach = error.downcast_ref::<MemoryLimitExceeded>().expect("the budget refused it");
        assert_eq!(breach.limit, 3 << 20);
        assert_eq!(store.data().used, 2 << 20);
        // Tables are charged too: 20,000 elements (the pool's most) of 8
        // bytes are 160 KB, over a budget of 100 KB.
        let mut store = Store::new(&engine, CallBudget { limit: 100 << 10, used: 0 });
        store.limiter(|budget| budget);
        let error = instantiate(&mut store, "(module (table 20000 funcref))").unwrap_err();
        assert!(error.downcast_ref::<MemoryLimitExceeded>().is_some(), "{error:#}");
        // Memories and tables share it: 64 KiB of memory leaves 36 KiB.
        instantiate(&mut store, "(module (memory 1))").unwrap();
        instantiate(&mut store, "(module (table 5000 funcref))").unwrap_err();
        instantiate(&mut store, "(module (table 4000 funcref))").unwrap();
        assert_eq!(store.data().used, (64 << 10) + 4000 * TABLE_ELEMENT_BYTES);
    }

    #[test]
    fn a_call_may_create_no_more_memories_than_one_component_holds() {
        let engine = super::super::engine::build_engine(&Default::default()).unwrap();
        let mut store = Store::new(&engine, CallBudget { limit: 64 << 20, used: 0 });
        store.limiter(|budget| budget);
        for _ in 0..super::super::engine::MAX_MEMORIES_PER_COMPONENT {
            instantiate(&mut store, "(module (memory 1))").unwrap();
        }
        let error = instantiate(&mut store, "(module (memory 1))").unwrap_err();
        assert!(format!("{error:#}").contains("memory"), "{error:#}");
    }
}
