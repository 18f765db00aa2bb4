//! Golden fixtures: `<case>.input.json` -> `<case>.expected.json`, kept next to
//! each component. They are the component's own tests (through the test kit)
//! and the host's check that a component behaves before it goes live.
//!
//! An input holds the order (and, for `fulfillment`, its quote) plus optional
//! `config` settings that replace the slot's `[config]`, `kv` entries (keys as
//! the component sees them), canned `sql` rows and canned `http` responses. The
//! expected file is the slot export's answer as JSON.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::Runtime;
use super::bindings::types::{Order, Quote};
use super::call::{CallContext, CallError, CapabilityUse};
use super::fakes::{CannedQuery, CannedResponse, Fakes, LogLine};
use super::slot::{LoadedComponent, Slot};

/// The input side of a golden fixture.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureInput {
    /// The order to validate, price or decide on.
    pub order: Order,
    /// The order's quote; required for the `fulfillment` slot.
    #[serde(default)]
    pub quote: Option<Quote>,
    /// Settings replacing the slot's `[config]` table for this case.
    #[serde(default)]
    pub config: Option<BTreeMap<String, String>>,
    /// Key-value entries present before the call.
    #[serde(default)]
    pub kv: BTreeMap<String, String>,
    /// Canned SQL answers.
    #[serde(default)]
    pub sql: Vec<CannedQuery>,
    /// Canned HTTP responses.
    #[serde(default)]
    pub http: Vec<CannedResponse>,
}

/// One golden case.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The case name (the file stem).
    pub name: String,
    /// What goes in.
    pub input: FixtureInput,
    /// What must come out.
    pub expected: serde_json::Value,
}

/// Why a fixture folder could not be read.
#[derive(Debug, thiserror::Error)]
#[error("fixture {path}: {message}")]
pub struct FixtureError {
    /// The offending file.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// Reads every `<case>.input.json` in `dir` with its `<case>.expected.json`,
/// sorted by case name.
pub fn load_fixtures(dir: &Path) -> Result<Vec<Fixture>, FixtureError> {
    parse_fixtures(dir, &read_fixture_files(dir)?)
}

/// The golden fixture files in `dir` (`<case>.input.json` and
/// `<case>.expected.json`), by file name, with their bytes.
pub fn read_fixture_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, FixtureError> {
    let error = |path: &Path, message: String| FixtureError { path: path.display().to_string(), message };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| error(dir, e.to_string()))? {
        let path = entry.map_err(|e| error(dir, e.to_string()))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if name.ends_with(".input.json") || name.ends_with(".expected.json") {
            let bytes = std::fs::read(&path).map_err(|e| error(&path, e.to_string()))?;
            files.push((name.to_string(), bytes));
        }
    }
    files.sort();
    Ok(files)
}

/// The golden cases in `files` (as [`read_fixture_files`] returns them from
/// `dir`), sorted by case name: each input with its expected answer.
pub fn parse_fixtures(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<Vec<Fixture>, FixtureError> {
    let error = |name: &str, message: String| FixtureError { path: dir.join(name).display().to_string(), message };
    let mut fixtures = Vec::new();
    for (file, bytes) in files {
        let Some(name) = file.strip_suffix(".input.json") else { continue };
        let expected_file = format!("{name}.expected.json");
        let expected_bytes = files
            .iter()
            .find(|(other, _)| *other == expected_file)
            .map(|(_, bytes)| bytes)
            .ok_or_else(|| error(&expected_file, format!("missing: {file} needs it")))?;
        let input = serde_json::from_slice(bytes).map_err(|e| error(file, e.to_string()))?;
        let expected = serde_json::from_slice(expected_bytes).map_err(|e| error(&expected_file, e.to_string()))?;
        fixtures.push(Fixture { name: name.to_string(), input, expected });
    }
    fixtures.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(fixtures)
}

/// How one golden case went.
#[derive(Debug, Clone)]
pub struct FixtureOutcome {
    /// The case name.
    pub name: String,
    /// What the fixture expects.
    pub expected: serde_json::Value,
    /// What the component answered, or why it failed.
    pub actual: Result<serde_json::Value, CallError>,
    /// How long the call took.
    pub elapsed: Duration,
    /// Capability calls the component made.
    pub uses: Vec<CapabilityUse>,
    /// Lines the component logged.
    pub logs: Vec<LogLine>,
}

impl FixtureOutcome {
    /// Whether the component answered exactly what was expected.
    pub fn passed(&self) -> bool {
        self.actual.as_ref().is_ok_and(|actual| *actual == self.expected)
    }
}

/// Runs one case against fresh fakes seeded from the fixture.
pub async fn run_fixture(runtime: &Runtime, component: &LoadedComponent, fixture: &Fixture) -> FixtureOutcome {
    let input = &fixture.input;
    let fakes = Fakes::default();
    let prefix = component
        .config
        .grants
        .kv
        .as_ref()
        .and_then(|grant| grant.prefix.clone())
        .unwrap_or_else(|| component.slot.name().to_string());
    for (key, value) in &input.kv {
        fakes.kv.insert(format!("kv:{prefix}:{key}"), value.clone());
    }
    input.sql.iter().cloned().for_each(|canned| fakes.sql.answer(canned));
    input.http.iter().cloned().for_each(|canned| fakes.http.respond(canned));
    let pinned;
    let component = match &input.config {
        Some(settings) => {
            pinned = component.with_settings(settings.clone());
            &pinned
        }
        None => component,
    };
    let context =
        CallContext::new(format!("fixture:{}", fixture.name)).with_capabilities(Arc::new(fakes.capabilities()));
    let (actual, elapsed, uses) = match call_slot(runtime, component, &context, input).await {
        Ok((value, elapsed, uses)) => (Ok(value), elapsed, uses),
        Err(error) => (Err(error), Duration::ZERO, Vec::new()),
    };
    FixtureOutcome {
        name: fixture.name.clone(),
        expected: fixture.expected.clone(),
        actual,
        elapsed,
        uses,
        logs: fakes.logs.lines(),
    }
}

/// Runs every case, in order.
pub async fn run_fixtures(runtime: &Runtime, component: &LoadedComponent, fixtures: &[Fixture]) -> Vec<FixtureOutcome> {
    let mut outcomes = Vec::with_capacity(fixtures.len());
    for fixture in fixtures {
        outcomes.push(run_fixture(runtime, component, fixture).await);
    }
    outcomes
}

type Answer = (serde_json::Value, Duration, Vec<CapabilityUse>);

async fn call_slot(
    runtime: &Runtime,
    component: &LoadedComponent,
    context: &CallContext,
    input: &FixtureInput,
) -> Result<Answer, CallError> {
    fn answer<T: serde::Serialize>(output: super::CallOutput<T>) -> Answer {
        let value = serde_json::to_value(&output.value).expect("WIT values serialize");
        (value, output.elapsed, output.uses)
    }
    match component.slot {
        Slot::Validation => runtime.validate(component, context, &input.order).await.map(answer),
        Slot::Pricing => runtime.price(component, context, &input.order).await.map(answer),
        Slot::Fulfillment => {
            let quote = input
                .quote
                .as_ref()
                .ok_or_else(|| CallError::Malformed { reason: "a fulfillment fixture needs a quote".into() })?;
            runtime.decide(component, context, &input.order, quote).await.map(answer)
        }
    }
}
