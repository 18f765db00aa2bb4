//! Components written to break out or stall the host: each is stopped with a
//! typed error within its deadline plus one tick (or refused before it runs),
//! and the other slots keep answering meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use host::runtime::bindings::errors::Error as KvError;
use host::runtime::capabilities::kv::{KvBackend, KvSpace};
use host::runtime::{CallContext, CallError, EngineSettings, LoadError, Runtime, Slot};

use crate::helpers::{config, load, order, runtime_with_fakes, shipped_config, wasm};

/// Deadline plus one 5 ms tick, with room for a loaded 2-core CI machine
/// running a debug build (the same slack as the spin test).
const SLACK: Duration = Duration::from_millis(500);

/// Calls `component` and returns its error and how long it took.
async fn fail(runtime: &Runtime, component: &host::runtime::LoadedComponent) -> (CallError, Duration) {
    let started = Instant::now();
    let result = runtime.price(component, &CallContext::new("hostile"), &order(1)).await;
    let elapsed = started.elapsed();
    (result.expect_err("a hostile call must fail"), elapsed)
}

#[tokio::test]
async fn a_component_that_sleeps_is_stopped_at_its_deadline() {
    let (runtime, _fakes) = runtime_with_fakes();
    let sleeper = load(&runtime, "fixtures/sleep", Slot::Pricing, config("[limits]\ndeadline_ms = 100\n")).await;
    let (error, elapsed) = fail(&runtime, &sleeper).await;
    assert_eq!(error, CallError::Deadline { limit_ms: 100 });
    assert!(elapsed >= Duration::from_millis(100), "stopped too early: {elapsed:?}");
    assert!(elapsed < Duration::from_millis(100) + SLACK, "stopped too late: {elapsed:?}");
    // Its instance went back to the pool: a slot of two keeps serving.
    let settings = EngineSettings { max_calls_per_slot: 2, ..EngineSettings::default() };
    let small = Runtime::new(&settings, runtime.capabilities().as_ref().clone()).unwrap();
    let sleeper = load(&small, "fixtures/sleep", Slot::Pricing, config("[limits]\ndeadline_ms = 50\n")).await;
    for _ in 0..6 {
        assert_eq!(fail(&small, &sleeper).await.0.kind(), "deadline");
    }
}

#[tokio::test]
async fn waiting_on_pollables_is_stopped_at_the_deadline() {
    let (runtime, _fakes) = runtime_with_fakes();
    for attack in ["wait", "poll-many"] {
        let grants = format!("[limits]\ndeadline_ms = 100\n[config]\nattack = \"{attack}\"\n");
        let component = load(&runtime, "fixtures/pollables", Slot::Pricing, config(&grants)).await;
        let (error, elapsed) = fail(&runtime, &component).await;
        assert_eq!(error, CallError::Deadline { limit_ms: 100 }, "{attack}");
        assert!(elapsed < Duration::from_millis(100) + SLACK, "{attack} stopped after {elapsed:?}");
    }
}

#[tokio::test]
async fn hoarding_handles_hits_the_resource_table_cap() {
    let (runtime, _fakes) = runtime_with_fakes();
    let grants = "[limits]\ndeadline_ms = 5000\n[config]\nattack = \"hoard\"\n";
    let component = load(&runtime, "fixtures/pollables", Slot::Pricing, config(grants)).await;
    let (error, elapsed) = fail(&runtime, &component).await;
    let CallError::Trap { message } = &error else { panic!("expected a trap, got {error:?}") };
    assert!(message.contains("resource table") || message.contains("capacity"), "{message}");
    // Stopped by the cap, long before the deadline: the table never grew large.
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[tokio::test]
async fn a_gigabyte_of_random_bytes_is_refused() {
    let (runtime, _fakes) = runtime_with_fakes();
    let grants = "[limits]\ndeadline_ms = 5000\n[config]\nattack = \"random\"\n";
    let component = load(&runtime, "fixtures/pollables", Slot::Pricing, config(grants)).await;
    let (error, _) = fail(&runtime, &component).await;
    let CallError::Trap { message } = &error else { panic!("expected a trap, got {error:?}") };
    assert!(message.contains("exceeds limit"), "{message}");
}

#[tokio::test]
async fn sockets_and_files_are_not_linked_and_the_refusal_names_the_import() {
    let (runtime, _fakes) = runtime_with_fakes();
    for (fixture, import) in [("fixtures/sockets", "wasi:sockets/"), ("fixtures/filesystem", "wasi:filesystem/")] {
        let bytes = std::fs::read(wasm(fixture)).unwrap();
        let error = runtime.load(Slot::Pricing, bytes, config("")).await.unwrap_err();
        assert!(matches!(error, LoadError::World { .. }), "{fixture}: {error}");
        let message = error.to_string();
        assert!(message.contains(import), "{fixture}: the refusal names the import: {message}");
    }
    assert!(!std::path::Path::new("/tmp/escaped-from-the-sandbox").exists());
}

/// A component (text format) instantiating `count` copies of `module`.
fn component_with(module: &str, count: usize) -> Vec<u8> {
    let instances: String = (0..count).map(|i| format!("(core instance $i{i} (instantiate $m))\n")).collect();
    wat::parse_str(format!("(component (core module $m {module}) {instances})")).unwrap()
}

#[tokio::test]
async fn components_holding_more_than_their_share_of_the_pool_are_refused() {
    let (runtime, _fakes) = runtime_with_fakes();
    let cases = [
        ("(memory 1)", 3, "3 Wasm linear memories"),
        ("", 11, "11 core module instances"),
        ("(table 1 funcref)", 9, "9 tables"),
    ];
    for (module, count, expected) in cases {
        let error = runtime.load(Slot::Pricing, component_with(module, count), config("")).await.unwrap_err();
        let message = error.to_string();
        assert!(message.contains(expected), "{count} x {module:?}: {message}");
    }
    // Within the caps the same shapes compile (and then fail the world check,
    // exporting nothing): the caps, not the shapes, were refused above.
    let error = runtime.load(Slot::Pricing, component_with("(memory 1)", 2), config("")).await.unwrap_err();
    assert!(matches!(error, LoadError::World { .. }), "{error}");
}

#[tokio::test]
async fn waiting_for_an_instance_is_bounded_and_not_the_component_s_fault() {
    let (base, fakes) = runtime_with_fakes();
    let settings = EngineSettings { max_calls_per_slot: 2, ..EngineSettings::default() };
    let runtime = Arc::new(Runtime::new(&settings, fakes.capabilities()).unwrap());
    drop(base);
    let sleeper =
        Arc::new(load(&runtime, "fixtures/sleep", Slot::Pricing, config("[limits]\ndeadline_ms = 2000\n")).await);
    // Every component is compiled before the holders start: compiles run at
    // the lowest priority, and on a busy machine one could outlast the 2 s
    // the holders hold their instances.
    let pricing = load(&runtime, "pricing", Slot::Pricing, config("[limits]\ndeadline_ms = 100\n")).await;
    let validation =
        load(&runtime, "order-validation", Slot::Validation, shipped_config("order-validation", Slot::Validation))
            .await;
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let (runtime, sleeper) = (runtime.clone(), sleeper.clone());
            tokio::spawn(async move { runtime.price(&sleeper, &CallContext::new("holder"), &order(1)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(holders.iter().all(|holder| !holder.is_finished()), "both holders are still inside their calls");
    // Both pricing instances are held: a third pricing call gives up at its deadline.
    let started = Instant::now();
    let error = runtime.price(&pricing, &CallContext::new("third"), &order(1)).await.unwrap_err();
    assert!(matches!(error, CallError::Busy { .. }), "{error:?}");
    assert!(!error.is_component_fault(), "a busy host is not the component's fault");
    assert!(started.elapsed() < Duration::from_millis(100) + SLACK, "{:?}", started.elapsed());
    // Another slot has instances of its own and answers at once.
    let started = Instant::now();
    assert!(runtime.validate(&validation, &CallContext::new("other"), &order(1)).await.unwrap().value.is_empty());
    assert!(started.elapsed() < Duration::from_millis(100), "{:?}", started.elapsed());
    for holder in holders {
        holder.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_calls_running_together_leave_the_other_slots_answering() {
    let (runtime, _fakes) = runtime_with_fakes();
    let runtime = Arc::new(runtime);
    let validation =
        load(&runtime, "order-validation", Slot::Validation, shipped_config("order-validation", Slot::Validation))
            .await;
    let fulfillment = load(
        &runtime,
        "fulfillment-standard",
        Slot::Fulfillment,
        shipped_config("fulfillment-standard", Slot::Fulfillment),
    )
    .await;
    let quote = component_testkit::quote_with_total(100, "EUR");
    let users = std::sync::atomic::AtomicU64::new(1);
    let measure = async || {
        let mut slowest = Duration::ZERO;
        for _ in 0..40 {
            // A user of its own each time: the shipped rate limit is per user.
            let order = order(users.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            let started = Instant::now();
            let accepted = runtime.validate(&validation, &CallContext::new("calm"), &order).await.unwrap();
            assert!(accepted.value.is_empty());
            runtime.decide(&fulfillment, &CallContext::new("calm"), &order, &quote).await.unwrap();
            slowest = slowest.max(started.elapsed());
        }
        slowest
    };
    let calm = measure().await;

    // Every pricing instance busy with a hostile call: sleeping, waiting on
    // pollables, spinning, hoarding memory and handles, again and again.
    let hostile = ["fixtures/sleep", "fixtures/pollables", "fixtures/spin", "fixtures/memory-hog"];
    let mut attackers = Vec::new();
    for (index, fixture) in hostile.iter().cycle().take(16).enumerate() {
        let attack = if index % 8 == 1 { "hoard" } else { "wait" };
        let toml = format!("[limits]\ndeadline_ms = 300\nmemory_mib = 16\n[config]\nattack = \"{attack}\"\n");
        let component = Arc::new(load(&runtime, fixture, Slot::Pricing, config(&toml)).await);
        let runtime = runtime.clone();
        attackers.push(tokio::spawn(async move {
            let mut failures = 0;
            for _ in 0..3 {
                failures +=
                    runtime.price(&component, &CallContext::new("attack"), &crate::helpers::order(1)).await.is_err()
                        as u32;
            }
            failures
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let under_attack = measure().await;
    let failures: u32 = futures::future::join_all(attackers).await.into_iter().map(Result::unwrap).sum();
    assert_eq!(failures, 48, "every hostile call failed");
    eprintln!("slowest validate + decide: {calm:?} calm, {under_attack:?} under attack");
    // The other slots kept answering within their own deadline (100 ms).
    assert!(under_attack < Duration::from_millis(100), "{under_attack:?} under attack ({calm:?} calm)");
}

/// A key-value store that is down.
struct DownKv;

#[async_trait::async_trait]
impl KvBackend for DownKv {
    async fn get(&self, _: &str) -> Result<Option<String>, KvError> {
        Err(KvError::Unavailable("connection refused".into()))
    }
    async fn set(&self, _: KvSpace<'_>, _: &str, _: &str, _: Option<Duration>) -> Result<(), KvError> {
        Err(KvError::Unavailable("connection refused".into()))
    }
    async fn incr(&self, _: KvSpace<'_>, _: &str, _: i64, _: Option<Duration>) -> Result<i64, KvError> {
        Err(KvError::Unavailable("connection refused".into()))
    }
    async fn delete(&self, _: KvSpace<'_>, _: &str) -> Result<bool, KvError> {
        Err(KvError::Unavailable("connection refused".into()))
    }
}

#[tokio::test]
async fn an_outage_of_a_platform_backend_is_not_charged_to_the_component() {
    let fakes = host::runtime::fakes::Fakes::default();
    let capabilities = host::runtime::Capabilities { kv: Arc::new(DownKv), ..fakes.capabilities() };
    let runtime = crate::helpers::runtime(capabilities);
    let pricing = load(&runtime, "pricing", Slot::Pricing, shipped_config("pricing", Slot::Pricing)).await;
    let with_promo = component_testkit::OrderBuilder::new(1).item(1, 100, 1).attribute("promo_code", "save10").build();
    let error = runtime.price(&pricing, &CallContext::new("outage"), &with_promo).await.unwrap_err();
    let CallError::Backend { capability, backend, message } = &error else { panic!("{error:?}") };
    assert_eq!(*capability, "kv");
    assert!(backend.contains("connection refused"), "{backend}");
    assert!(message.contains("cannot look up promo code"), "{message}");
    assert!(!error.is_component_fault());
    // Without the store the same version answers, and a trap of its own is its own.
    assert!(runtime.price(&pricing, &CallContext::new("no promo"), &order(1)).await.is_ok());
    let trap = load(&runtime, "fixtures/trap", Slot::Pricing, config("")).await;
    assert!(runtime.price(&trap, &CallContext::new("trap"), &order(1)).await.unwrap_err().is_component_fault());
}

/// Floods the store through the kv-flood fixture under `prefix` with a
/// budget of 1 MB, with keys of its own for `user`; returns how many 64 KiB
/// values it stored and what stopped it.
async fn flood(runtime: &Runtime, prefix: &str, user: u64) -> (u64, String) {
    let toml = format!("[limits]\ndeadline_ms = 10000\n[grants.kv]\nprefix = \"{prefix}\"\nmax_bytes = 1000000\n");
    let flooder = load(runtime, "fixtures/kv-flood", Slot::Pricing, config(&toml)).await;
    let report = runtime.price(&flooder, &CallContext::new("flood"), &order(user)).await.unwrap().value.unwrap_err();
    (report[0].field.parse().unwrap(), report[0].message.clone())
}

#[tokio::test]
async fn a_component_flooding_the_store_fills_only_its_own_budget() {
    let kv = Arc::new(host::runtime::capabilities::MemoryKv::default());
    let fakes = host::runtime::fakes::Fakes::default();
    let runtime = crate::helpers::runtime(host::runtime::Capabilities { kv: kv.clone(), ..fakes.capabilities() });
    let (stored, stopped) = flood(&runtime, "flood", 1).await;
    assert_eq!(stored, 15, "15 values of 64 KiB fit in 1 MB");
    assert!(stopped.contains("LimitExceeded"), "{stopped}");
    assert!(kv.used("kv:flood:") <= 1_000_000);
    // A later call with new keys finds the budget spent (rewriting a stored
    // key costs nothing more); another namespace is untouched.
    assert_eq!(flood(&runtime, "flood", 2).await.0, 0);
    assert_eq!(flood(&runtime, "flood", 1).await.0, 15);
    assert_eq!(flood(&runtime, "neighbour", 1).await.0, 15);
}

#[tokio::test]
async fn a_component_flooding_redis_fills_only_its_own_budget() {
    let client = redis::Client::open(crate::helpers::redis_url()).unwrap();
    let mut connection = redis::aio::ConnectionManager::new(client).await.unwrap();
    let namespace = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let kv = Arc::new(host::runtime::capabilities::RedisKv::new(connection.clone()).with_namespace(&namespace));
    let fakes = host::runtime::fakes::Fakes::default();
    let runtime = crate::helpers::runtime(host::runtime::Capabilities { kv, ..fakes.capabilities() });
    let (stored, stopped) = flood(&runtime, "flood", 1).await;
    assert_eq!(stored, 15, "{stopped}");
    assert!(stopped.contains("LimitExceeded"), "{stopped}");
    let total: u64 =
        redis::cmd("GET").arg(format!("{namespace}kvindex:kv:flood:total")).query_async(&mut connection).await.unwrap();
    assert!(total <= 1_000_000, "{total}");
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{namespace}kv:flood:*")).query_async(&mut connection).await.unwrap();
    assert_eq!(keys.len(), 15, "what was refused was not written");
    assert_eq!(flood(&runtime, "flood", 2).await.0, 0);
    assert_eq!(flood(&runtime, "flood", 1).await.0, 15);
    assert_eq!(flood(&runtime, "neighbour", 1).await.0, 15);
    let all: Vec<String> = redis::cmd("KEYS").arg(format!("{namespace}*")).query_async(&mut connection).await.unwrap();
    let _: () = redis::cmd("DEL").arg(all).query_async(&mut connection).await.unwrap();
}
