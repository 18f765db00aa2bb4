//! One call into a component: the per-call store state, its limits, and how a
//! failure is classified into a [`CallError`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::capabilities::Capabilities;
use super::slot::LoadedComponent;
use super::slot_config::SlotConfig;

/// Bytes of a component's stderr kept per call: enough for a panic message.
const STDERR_CAPTURE_BYTES: usize = 4096;
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
    /// The slot's name, for example `pricing`.
    pub slot: &'static str,
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
        }
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

/// Enforces the slot's memory limit by trapping on the first growth past it,
/// so the failure is unambiguous instead of an allocator abort.
pub(crate) struct MemoryLimiter {
    limit: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Err(MemoryLimitExceeded { limit: self.limit, desired }.into());
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real
        // component and keeps a hostile one from exhausting host memory.
        Ok(desired <= 1_000_000)
    }
}

/// The data of one call's [`Store`]: WASI plumbing, limits, the slot's grants
/// and the capability backends.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    stderr: MemoryOutputPipe,
    pub(crate) info: CallInfo,
    pub(crate) config: Arc<SlotConfig>,
    pub(crate) capabilities: Arc<Capabilities>,
    pub(crate) uses: Vec<CapabilityUse>,
    pub(crate) log_lines: u32,
    deadline: Instant,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl CallState {
    /// Runs a capability's I/O, bounded by what is left of the call's
    /// deadline. Guest code is bounded by the epoch callback; this bounds the
    /// time the guest spends waiting on the host, without a timer per call.
    /// The returned future does not borrow `self`: the WASI context is not
    /// `Sync`, so a future holding `&self` could not move between threads.
    pub(crate) fn within_deadline<T>(
        &self,
        work: impl Future<Output = T>,
    ) -> impl Future<Output = wasmtime::Result<T>> {
        let deadline = self.deadline;
        async move {
            match tokio::time::timeout_at(deadline.into(), work).await {
                Ok(value) => Ok(value),
                Err(_) => Err(DeadlineExceeded.into()),
            }
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

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Builds the store for one call: no filesystem, no environment, no sockets;
/// stderr captured so a panic message can be reported.
pub(crate) fn new_store(
    engine: &wasmtime::Engine,
    component: &LoadedComponent,
    context: &CallContext,
    capabilities: Arc<Capabilities>,
) -> Store<CallState> {
    let limits = &component.config.limits;
    let deadline = Instant::now() + limits.deadline();
    let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
    let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
    let state = CallState {
        wasi,
        table: ResourceTable::new(),
        limiter: MemoryLimiter { limit: limits.memory_bytes() },
        stderr,
        info: CallInfo {
            slot: component.slot.name(),
            component: component.name.clone(),
            digest: component.digest.clone(),
            correlation_id: context.correlation_id.clone(),
        },
        config: component.config.clone(),
        capabilities,
        uses: Vec::new(),
        log_lines: 0,
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
        Err(error) => Err(classify(error, &state)),
    }
}

fn classify(error: wasmtime::Error, state: &CallState) -> CallError {
    if error.downcast_ref::<DeadlineExceeded>().is_some() {
        return CallError::Deadline { limit_ms: state.config.limits.deadline_ms };
    }
    if let Some(breach) = error.downcast_ref::<MemoryLimitExceeded>() {
        return CallError::Memory { limit_bytes: breach.limit };
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
