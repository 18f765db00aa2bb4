//! The component registry's rows on both backends: a version is stored once
//! per fingerprint and its `.wasm` once per sha256; a slot changes only from
//! the version a change expects; a rollback finds the last good version;
//! probation counts a version's first calls across processes and stops.

use host::store::registry::{Expect, NewVersion, ProcessRow, SlotEventRow};

use crate::helpers::Options;
use crate::on_both_backends;
use host::runtime::Slot;

/// The service publishes its own components at start: the pricing slot is
/// left to the test.
fn pricing_left_empty() -> Options {
    Options { without: Some(Slot::Pricing), ..Options::default() }
}

fn version<'a>(fingerprint: &'a str, sha256: &'a str, wasm: &'a [u8]) -> NewVersion<'a> {
    NewVersion {
        slot: "pricing",
        fingerprint,
        sha256,
        wasm,
        config_text: Some("[component]\nname = \"pricing\"\n"),
        fixtures: Some("[[\"a.input.json\", \"{}\"]]"),
        component: "pricing",
        version: "0.1.0",
        source: "upload",
        added_by: "test",
        gate_report: "{}",
    }
}

fn activated(version_id: i64) -> SlotEventRow {
    SlotEventRow {
        slot: "pricing".into(),
        kind: "activated".into(),
        version_id: Some(version_id),
        component: "pricing".into(),
        version: "0.1.0".into(),
        sha256: "a".repeat(64),
        source: "upload".into(),
        reason: None,
        added_by: "test".into(),
        at: chrono::Utc::now(),
    }
}

on_both_backends!(
    versions_are_content_addressed_and_slots_change_only_as_expected,
    options = pricing_left_empty(),
    |app| {
        let store = &app.service.store;
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let first = store.add_component_version(&version("one", &a, b"first")).await.unwrap();
        assert_eq!(store.add_component_version(&version("one", &a, b"first")).await.unwrap(), first, "stored once");
        // Another `.toml` for the same `.wasm`: another version, the same blob.
        let second = store.add_component_version(&version("two", &a, b"first")).await.unwrap();
        let third = store.add_component_version(&version("three", &b, b"third")).await.unwrap();
        assert!(first != second && second != third);
        assert_eq!(store.component_wasm(&a).await.unwrap(), b"first");
        let stored = store.component_version(second).await.unwrap().unwrap();
        assert_eq!((stored.fingerprint.as_str(), stored.failed, stored.probation_calls), ("two", false, 0));
        assert_eq!(stored.fixtures.as_deref(), Some("[[\"a.input.json\", \"{}\"]]"));

        let active = store
            .activate_component_version("pricing", first, "upload", Expect::Any, &[activated(first)])
            .await
            .unwrap()
            .unwrap();
        assert_eq!((active.version_id, active.generation), (first, 1));
        let active = store
            .activate_component_version("pricing", second, "upload", Expect::Serving(first), &[activated(second)])
            .await
            .unwrap();
        assert_eq!(active.unwrap().generation, 2);
        // A change expecting what no longer serves changes nothing, and records nothing.
        let stale = store
            .activate_component_version("pricing", third, "upload", Expect::Serving(first), &[activated(third)])
            .await
            .unwrap();
        assert!(stale.is_none());
        let active = store.active_component_versions().await.unwrap();
        let pricing = active.iter().find(|row| row.slot == "pricing").unwrap();
        assert_eq!((pricing.version_id, pricing.generation, pricing.source.as_str()), (second, 2, "upload"));
        let events = store.slot_events("pricing", 10).await.unwrap();
        assert_eq!(events.iter().map(|event| event.version_id).collect::<Vec<_>>(), [Some(first), Some(second)]);

        // A rollback goes back to the last activated version that did not fail.
        assert_eq!(store.last_good_component_version("pricing", second).await.unwrap(), Some(first));
        store.mark_component_failed(first).await.unwrap();
        assert_eq!(store.last_good_component_version("pricing", second).await.unwrap(), None);
        let listed = store.component_versions("pricing", 2).await.unwrap();
        assert_eq!(
            listed.iter().map(|row| row.id).collect::<Vec<_>>(),
            [second, third],
            "the newest two, oldest first"
        );
    }
);

on_both_backends!(probation_counts_first_calls_from_every_process_then_stops, options = pricing_left_empty(), |app| {
    let store = &app.service.store;
    let id = store.add_component_version(&version("p", &"c".repeat(64), b"p")).await.unwrap();
    let mut last = None;
    for call in 0..4 {
        last = store.count_probation_call(id, call % 2 == 0, 4).await.unwrap();
    }
    let last = last.unwrap();
    assert_eq!((last.probation_calls, last.probation_failures), (4, 2));
    assert_eq!(store.count_probation_call(id, true, 4).await.unwrap(), None, "the window is over");
    let other = store.add_component_version(&version("q", &"d".repeat(64), b"q")).await.unwrap();
    store.mark_component_failed(other).await.unwrap();
    assert_eq!(store.count_probation_call(other, true, 4).await.unwrap(), None, "a failed version is judged");
});

on_both_backends!(processes_report_what_they_serve_and_are_forgotten, |app| {
    let store = &app.service.store;
    let now = chrono::Utc::now();
    let mut row = ProcessRow {
        id: "p-1".into(),
        role: "worker".into(),
        host: "box".into(),
        pid: 42,
        started_at: now,
        last_seen: now,
        serving: "{}".into(),
        problems: "{}".into(),
    };
    store.report_process(&row).await.unwrap();
    row.serving = "{\"pricing\": 1}".into();
    row.last_seen = now + chrono::Duration::seconds(1);
    store.report_process(&row).await.unwrap();
    // The service's own process reports too; the test's is told by its id.
    let ours = async |since| {
        let seen = store.processes_seen_since(since).await.unwrap();
        seen.into_iter().filter(|process| process.id == "p-1").collect::<Vec<_>>()
    };
    let seen = ours(now).await;
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].serving.as_str(), seen[0].pid), ("{\"pricing\": 1}", 42));
    let later = now + chrono::Duration::seconds(5);
    assert!(ours(later).await.is_empty(), "not seen since");
    store.forget_process("another").await.unwrap();
    assert_eq!(ours(now).await.len(), 1, "only the one named goes");
    store.forget_processes_unseen_since(later).await.unwrap();
    assert!(ours(now - chrono::Duration::seconds(60)).await.is_empty(), "stale ones go");
});
