//! A component that traps, spins, hoards memory or oversteps its grants gets a
//! typed error; the host keeps serving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use host::runtime::{CallContext, CallError, Slot, UseOutcome};

use crate::helpers::{config, load, order, runtime_with_fakes, shipped_config};

#[tokio::test]
async fn a_trap_is_a_typed_error_and_the_next_call_works() {
    let (runtime, fakes) = runtime_with_fakes();
    let trap = load(&runtime, "fixtures/trap", Slot::Pricing, config("")).await;
    let pricing = load(&runtime, "pricing", Slot::Pricing, shipped_config("pricing", Slot::Pricing)).await;
    let context = CallContext::new("trap-test");

    for _ in 0..3 {
        let error = runtime.price(&trap, &context, &order(1)).await.unwrap_err();
        let CallError::Trap { message } = &error else { panic!("expected a trap, got {error:?}") };
        assert!(message.contains("always fails"), "the panic message reaches the host: {message}");
        assert_eq!(error.kind(), "trap");
    }
    // The log line written before the trap is kept, tagged with the call.
    let lines = fakes.logs.lines();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0].message, "about to fail");
    assert_eq!(lines[0].correlation_id, "trap-test");

    let quote = runtime.price(&pricing, &context, &order(1)).await.unwrap().value.unwrap();
    assert_eq!(quote.subtotal, 2 * 1250 + 990 + 3 * 4500);
}

#[tokio::test]
async fn an_endless_loop_is_stopped_at_its_deadline() {
    let (runtime, _fakes) = runtime_with_fakes();
    let spin = load(&runtime, "fixtures/spin", Slot::Pricing, config("[limits]\ndeadline_ms = 100\n")).await;
    let started = Instant::now();
    let error = runtime.price(&spin, &CallContext::new("spin"), &order(1)).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(error, CallError::Deadline { limit_ms: 100 });
    assert!(elapsed >= Duration::from_millis(100), "stopped too early: {elapsed:?}");
    // Deadline plus one 5 ms tick, with room for a loaded CI machine.
    assert!(elapsed < Duration::from_millis(600), "stopped too late: {elapsed:?}");
    eprintln!("spin fixture stopped after {elapsed:?} (deadline 100 ms)");

    // The runtime still serves, and the spinning instance is gone.
    let again = runtime.price(&spin, &CallContext::new("spin"), &order(1)).await.unwrap_err();
    assert_eq!(again.kind(), "deadline");
}

#[tokio::test]
async fn a_spinning_guest_does_not_starve_other_tasks() {
    let (runtime, _fakes) = runtime_with_fakes();
    let runtime = Arc::new(runtime);
    let spin = Arc::new(load(&runtime, "fixtures/spin", Slot::Pricing, config("[limits]\ndeadline_ms = 300\n")).await);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spinner = {
        let (runtime, spin) = (runtime.clone(), spin.clone());
        tokio::spawn(async move { runtime.price(&spin, &CallContext::new("spin"), &order(1)).await })
    };
    // On a current-thread test runtime this timer only fires if the guest yields.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = tx.send(Instant::now());
    });
    let woke = rx.await.unwrap();
    let result = spinner.await.unwrap();
    assert_eq!(result.unwrap_err().kind(), "deadline");
    assert!(woke.elapsed() > Duration::from_millis(100), "the timer fired while the guest was still running");
}

#[tokio::test]
async fn a_memory_hog_hits_its_memory_limit() {
    let (runtime, _fakes) = runtime_with_fakes();
    let hog =
        load(&runtime, "fixtures/memory-hog", Slot::Pricing, config("[limits]\nmemory_mib = 16\ndeadline_ms = 2000\n"))
            .await;
    let error = runtime.price(&hog, &CallContext::new("hog"), &order(1)).await.unwrap_err();
    assert_eq!(error, CallError::Memory { limit_bytes: 16 << 20 });
    let pricing = load(&runtime, "pricing", Slot::Pricing, shipped_config("pricing", Slot::Pricing)).await;
    assert!(runtime.price(&pricing, &CallContext::new("after"), &order(1)).await.unwrap().value.is_ok());
}

#[tokio::test]
async fn capabilities_without_grants_are_denied_with_a_typed_error() {
    let (runtime, fakes) = runtime_with_fakes();
    let probe = load(&runtime, "fixtures/forbidden", Slot::Pricing, config("")).await;
    let output = runtime.price(&probe, &CallContext::new("probe"), &order(1)).await.unwrap();
    let violations = output.value.unwrap_err();
    let codes: Vec<_> = violations.iter().map(|v| v.code.as_str()).collect();
    assert_eq!(codes, ["kv-denied", "sql-denied", "http-denied"]);
    assert!(violations[0].message.contains("no kv grant"), "{}", violations[0].message);
    let outcomes: Vec<_> = output.uses.iter().map(|u| (u.capability, u.outcome.clone())).collect();
    assert_eq!(
        outcomes,
        [("kv.incr", UseOutcome::Denied), ("sql.query", UseOutcome::Denied), ("http.send", UseOutcome::Denied)]
    );
    // Nothing reached a backend.
    assert!(fakes.kv.snapshot().is_empty());
    assert!(fakes.sql.seen().is_empty());
    assert!(fakes.http.seen().is_empty());
}

#[tokio::test]
async fn a_host_off_the_allowlist_is_denied_before_any_io() {
    let (runtime, fakes) = runtime_with_fakes();
    let grants = "[grants.http]\nallow_hosts = [\"https://rates.example.com\"]\n[config]\nurl = \"https://evil.example.net/steal\"\n";
    let probe = load(&runtime, "fixtures/forbidden", Slot::Pricing, config(grants)).await;
    let violations = runtime.price(&probe, &CallContext::new("probe"), &order(1)).await.unwrap().value.unwrap_err();
    assert_eq!(violations[2].code, "http-denied");
    assert!(violations[2].message.contains("evil.example.net"));
    assert!(fakes.http.seen().is_empty());
}

#[tokio::test]
async fn a_component_for_another_world_is_refused_at_load() {
    let (runtime, _fakes) = runtime_with_fakes();
    let bytes = std::fs::read(crate::helpers::wasm("pricing")).unwrap();
    let error = runtime.load(Slot::Fulfillment, bytes, config("")).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("fulfillment") && message.contains("decide"), "{message}");
    let error = runtime.load(Slot::Pricing, b"\0asm not really".to_vec(), config("")).await.unwrap_err();
    assert!(error.to_string().starts_with("not a valid component"), "{error}");
}

#[tokio::test]
async fn many_concurrent_calls_on_one_slot() {
    let (runtime, _fakes) = runtime_with_fakes();
    let runtime = Arc::new(runtime);
    let pricing = Arc::new(load(&runtime, "pricing", Slot::Pricing, shipped_config("pricing", Slot::Pricing)).await);
    let expected = runtime.price(&pricing, &CallContext::new("first"), &order(1)).await.unwrap().value.unwrap();
    // Far more calls than the 16 pooled instances: the rest wait, none fail.
    let calls = (0..400).map(|i| {
        let (runtime, pricing) = (runtime.clone(), pricing.clone());
        tokio::spawn(async move { runtime.price(&pricing, &CallContext::new(format!("call-{i}")), &order(1)).await })
    });
    let results = futures::future::join_all(calls).await;
    for result in results {
        assert_eq!(result.unwrap().unwrap().value.unwrap(), expected);
    }
}

#[tokio::test]
async fn a_quote_that_does_not_add_up_is_malformed_output() {
    let (runtime, _fakes) = runtime_with_fakes();
    let malformed = load(&runtime, "fixtures/malformed", Slot::Pricing, config("")).await;
    let error = runtime.price(&malformed, &CallContext::new("bad"), &order(1)).await.unwrap_err();
    let CallError::Malformed { reason } = &error else { panic!("expected malformed output, got {error:?}") };
    assert!(reason.contains("total"), "{reason}");
    let error = runtime.price(&malformed, &CallContext::new("bad"), &order(2)).await.unwrap_err();
    assert!(error.to_string().contains("currency"), "{error}");
    assert_eq!(error.kind(), "malformed-output");
}

#[tokio::test]
async fn a_quote_note_holding_nul_is_malformed_output() {
    let (runtime, _fakes) = runtime_with_fakes();
    let malformed = load(&runtime, "fixtures/malformed", Slot::Pricing, config("")).await;
    // User 3's quote adds up; only its note holds a NUL byte.
    let error = runtime.price(&malformed, &CallContext::new("nul"), &order(3)).await.unwrap_err();
    let CallError::Malformed { reason } = &error else { panic!("expected malformed output, got {error:?}") };
    assert!(reason.contains("quote note") && reason.contains("U+0000"), "{reason}");
}
