//! The one wasmtime [`Engine`] and the epoch ticker that bounds guest CPU time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Sizing of the engine, fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// How many calls of one slot may run at once. Each slot has instances
    /// of its own, so a slot whose calls all hang (until their deadline)
    /// never takes the instances another slot needs; a call that finds none
    /// free waits for one, within its deadline.
    pub max_calls_per_slot: u32,
    /// The hard ceiling on any one linear memory. Per-call budgets (default
    /// 64 MiB across all of a call's memories and tables) are enforced below
    /// it by the store's resource limiter.
    pub max_memory_bytes: usize,
    /// How often the epoch advances. A runaway guest is stopped within its
    /// deadline plus one tick.
    pub epoch_tick: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self { max_calls_per_slot: 128, max_memory_bytes: 512 << 20, epoch_tick: Duration::from_millis(5) }
    }
}

/// What one component may contain, checked when it is compiled (so at the
/// gate): a Rust `wasm32-wasip2` component instantiates its own module and a
/// few adapter and shim modules, with one memory and a handful of tables.
/// More than this is a component built to hold more of the pool than its
/// share, and is refused with a message naming the limit.
pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 10;
/// See [`MAX_CORE_INSTANCES_PER_COMPONENT`].
pub const MAX_MEMORIES_PER_COMPONENT: u32 = 2;
/// See [`MAX_CORE_INSTANCES_PER_COMPONENT`].
pub const MAX_TABLES_PER_COMPONENT: u32 = 8;

/// Builds the engine: component model, async host calls, epoch interruption
/// and the pooling allocator tuned so a fresh instance costs microseconds.
pub(crate) fn build_engine(settings: &EngineSettings) -> wasmtime::Result<Engine> {
    // Every slot's calls at once, each instance at its per-component caps:
    // the pool cannot run dry while calls hold no more than their share.
    let instances = settings.max_calls_per_slot.max(1) * crate::runtime::Slot::ALL.len() as u32;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances * MAX_CORE_INSTANCES_PER_COMPONENT)
        .total_memories(instances * MAX_MEMORIES_PER_COMPONENT)
        .total_tables(instances * MAX_TABLES_PER_COMPONENT)
        .total_stacks(instances)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .max_memory_size(settings.max_memory_bytes)
        // Keep the pages a call dirtied mapped and reset them in place instead
        // of returning them to the kernel: reuse then costs no page faults.
        // `pagemap_scan` (Linux 6.7+) resets only the pages really touched;
        // `Auto` falls back to plain resets on older kernels.
        .linear_memory_keep_resident(8 << 20)
        .table_keep_resident(1 << 20)
        .async_stack_keep_resident(256 << 10)
        .pagemap_scan(Enabled::Auto);

    compile_in_background();
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        // Epoch interruption is a cheap check at loop heads and function
        // entries; it is how a guest that never returns is stopped.
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Starts rayon's global pool, where wasmtime compiles functions in parallel,
/// with threads at the lowest CPU priority: compiling a component dropped in
/// for a swap then takes the CPU the request threads leave, instead of an
/// equal share of it. (At start-up nothing else runs, so it costs nothing.)
/// A pool someone else started first is left as it is.
fn compile_in_background() {
    let _ = rayon::ThreadPoolBuilder::new()
        .thread_name(|n| format!("wasm-compile-{n}"))
        .start_handler(|_| lowest_priority())
        .build_global();
}

/// Runs `work` on the compile pool (lowest priority), all of it, not only
/// what it hands to rayon itself. A panic (a compiler bug a hostile
/// component found) is an error here: on rayon's own threads it would abort
/// the process.
pub(crate) async fn at_lowest_priority<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (sender, done) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = sender.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)));
    });
    match done.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err("the compiler panicked".into()),
        Err(_) => Err("the compile pool dropped the work".into()),
    }
}

#[cfg(target_os = "linux")]
fn lowest_priority() {
    // SAFETY: setpriority takes no pointers; on Linux, PRIO_PROCESS with id 0
    // names the calling thread alone (nice values are per thread there).
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

#[cfg(not(target_os = "linux"))]
fn lowest_priority() {}

/// Advances the engine's epoch every tick on a dedicated thread, so guest CPU
/// time is bounded even when every async worker thread is busy.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self { stop, thread: Some(thread) }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn components_compile_on_threads_at_the_lowest_priority() {
        let engine = build_engine(&EngineSettings::default()).unwrap();
        // Compiling a module runs on rayon's global pool: record the nice
        // value of the threads that do it.
        let (sender, receiver) = std::sync::mpsc::channel();
        rayon::broadcast(|_| {
            // SAFETY: getpriority takes no pointers; id 0 is the calling thread.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            sender.send(nice).unwrap();
        });
        drop(sender);
        let nices: Vec<i32> = receiver.iter().collect();
        assert!(!nices.is_empty());
        assert!(nices.iter().all(|&nice| nice == 19), "compile threads run at nice {nices:?}");
        // And the engine still compiles on them.
        wasmtime::Module::new(&engine, b"\0asm\x01\0\0\0").unwrap();
    }

    fn own_nice() -> i32 {
        // SAFETY: getpriority takes no pointers; id 0 is the calling thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[tokio::test]
    async fn work_at_the_lowest_priority_runs_there_whole_and_a_panic_is_an_error() {
        build_engine(&EngineSettings::default()).unwrap();
        assert_eq!(at_lowest_priority(own_nice).await, Ok(19), "the caller's own part is niced too");
        let panicked = at_lowest_priority(|| -> i32 { panic!("a compiler bug") }).await;
        assert_eq!(panicked, Err("the compiler panicked".to_owned()));
        assert_eq!(at_lowest_priority(|| 7).await, Ok(7), "the pool still works after a panic");
    }
}
