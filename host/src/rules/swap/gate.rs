//! The gate every candidate component passes before it goes live: it must
//! compile, fit its slot's world, and answer the slot's golden fixtures
//! exactly, without trapping or breaching a limit. `host component check`
//! runs the same gate offline and prints the report.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::runtime::fixtures::{parse_fixtures, read_fixture_files, run_fixtures};
use crate::runtime::slot::FixtureFiles;
use crate::runtime::{LoadedComponent, Runtime, Slot, SlotConfig};

/// The golden fixtures a candidate is checked against: its own, kept with it.
#[derive(Debug, Clone)]
pub enum Fixtures {
    /// None: only compilation and the slot's world are checked.
    None,
    /// The files (`<case>.input.json`, `<case>.expected.json`) with their bytes.
    Files(FixtureFiles),
    /// They could not be read: the candidate is refused.
    Unreadable(String),
}

impl Fixtures {
    /// The fixtures in the folder `dir`; none when there is no such folder.
    pub fn in_dir(dir: &Path) -> Self {
        if !dir.is_dir() {
            return Fixtures::None;
        }
        match read_fixture_files(dir) {
            Ok(files) => Fixtures::Files(files.into()),
            Err(error) => Fixtures::Unreadable(error.to_string()),
        }
    }

    /// The files, if any.
    pub fn files(&self) -> Option<&FixtureFiles> {
        match self {
            Fixtures::Files(files) => Some(files),
            _ => None,
        }
    }
}

/// How one golden case went.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FixtureResult {
    /// The case (file stem).
    pub name: String,
    /// Whether the answer was exactly the expected one.
    pub passed: bool,
    /// The call's time in microseconds.
    pub elapsed_us: u64,
    /// What was expected and what came instead, or how the call failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What the gate found out about a candidate.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GateReport {
    /// The slot it was checked for.
    pub slot: String,
    /// `[component] name`, or the slot.
    pub component: String,
    /// `[component] version`.
    pub version: String,
    /// sha256 of the `.wasm`, hex.
    pub sha256: String,
    /// Whether it may go live.
    pub accepted: bool,
    /// Why not, when rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the component exports.
    pub exports: Vec<String>,
    /// What it imports (each must be a host capability).
    pub imports: Vec<String>,
    /// Each golden case, in name order.
    pub fixtures: Vec<FixtureResult>,
    /// Time to compile and check, in milliseconds.
    pub checked_in_ms: u64,
}

/// A gate's verdict: the checked component when accepted, and the report either way.
pub struct Verdict {
    pub report: GateReport,
    pub component: Option<LoadedComponent>,
}

fn summarize(value: &serde_json::Value) -> String {
    let text = value.to_string();
    if text.len() > 300 { format!("{}…", crate::domain::text::truncate(&text, 300)) } else { text }
}

/// The verdict on a candidate refused before it could be compiled (its
/// `.toml` is invalid).
pub fn refused(slot: Slot, sha256: &str, reason: String) -> Verdict {
    let report = GateReport {
        slot: slot.name().into(),
        component: slot.name().into(),
        version: "unversioned".into(),
        sha256: sha256.into(),
        accepted: false,
        reason: Some(reason),
        exports: Vec::new(),
        imports: Vec::new(),
        fixtures: Vec::new(),
        checked_in_ms: 0,
    };
    Verdict { report, component: None }
}

/// The largest component the gate looks at.
pub const MAX_COMPONENT_BYTES: usize = 32 << 20;
/// Most golden cases one version may bring (each runs within the slot's
/// deadline, so this bounds the gate's time too).
const MAX_FIXTURES: usize = 200;
/// The gate's whole budget, compilation included: a candidate not judged by
/// then is rejected, and the slot's turn (which every other change of the
/// slot waits for) is free again.
const GATE_BUDGET: Duration = Duration::from_secs(60);

/// Checks `wasm` for `slot` with `config`, against `fixtures`, within the
/// gate's budget.
pub async fn check(
    runtime: &Runtime,
    slot: Slot,
    wasm: Vec<u8>,
    config: SlotConfig,
    config_text: Option<String>,
    fixtures: &Fixtures,
) -> Verdict {
    let sha256 = crate::runtime::digest(&wasm);
    if wasm.len() > MAX_COMPONENT_BYTES {
        let reason = format!("the component is {} bytes; at most {MAX_COMPONENT_BYTES} are accepted", wasm.len());
        return refused(slot, &sha256, reason);
    }
    let (name, version) = (config.component.name.clone(), config.component.version.clone());
    let judged = tokio::time::timeout(GATE_BUDGET, judge(runtime, slot, wasm, config, config_text, fixtures));
    match judged.await {
        Ok(verdict) => verdict,
        Err(_) => {
            let mut verdict = refused(slot, &sha256, format!("not judged within the gate's {GATE_BUDGET:?}"));
            verdict.report.component = name.unwrap_or_else(|| slot.name().into());
            verdict.report.version = version.unwrap_or_else(|| "unversioned".into());
            verdict.report.checked_in_ms = GATE_BUDGET.as_millis() as u64;
            verdict
        }
    }
}

async fn judge(
    runtime: &Runtime,
    slot: Slot,
    wasm: Vec<u8>,
    config: SlotConfig,
    config_text: Option<String>,
    fixtures: &Fixtures,
) -> Verdict {
    let started = Instant::now();
    let sha256 = crate::runtime::digest(&wasm);
    let mut report = GateReport {
        slot: slot.name().into(),
        component: config.component.name.clone().unwrap_or_else(|| slot.name().into()),
        version: config.component.version.clone().unwrap_or_else(|| "unversioned".into()),
        sha256,
        accepted: false,
        reason: None,
        exports: Vec::new(),
        imports: Vec::new(),
        fixtures: Vec::new(),
        checked_in_ms: 0,
    };
    let finish = |mut report: GateReport, component: Option<LoadedComponent>, reason: Option<String>| {
        report.accepted = reason.is_none();
        report.reason = reason;
        report.checked_in_ms = started.elapsed().as_millis() as u64;
        let component = component.filter(|_| report.accepted);
        Verdict { report, component }
    };
    let mut component = match runtime.load_with_text(slot, wasm, config, config_text).await {
        Ok(component) => component,
        Err(error) => return finish(report, None, Some(error.to_string())),
    };
    (report.exports, report.imports) = runtime.interface(&component);
    let files = match fixtures {
        Fixtures::None => return finish(report, Some(component), None),
        Fixtures::Unreadable(error) => return finish(report, None, Some(format!("unreadable fixtures: {error}"))),
        Fixtures::Files(files) => files,
    };
    // The cases run are the files kept with the version.
    let cases = match parse_fixtures(Path::new("fixtures"), files) {
        Ok(cases) => {
            component.fixture_files = Some(files.clone());
            cases
        }
        Err(error) => return finish(report, None, Some(format!("unreadable fixtures: {error}"))),
    };
    if cases.len() > MAX_FIXTURES {
        let reason = format!("{} golden cases; at most {MAX_FIXTURES} are run", cases.len());
        return finish(report, None, Some(reason));
    }
    let outcomes = run_fixtures(runtime, &component, &cases).await;
    let mut failed = Vec::new();
    for outcome in outcomes {
        let problem = match &outcome.actual {
            Ok(actual) if *actual == outcome.expected => None,
            Ok(actual) => Some(format!("expected {}, got {}", summarize(&outcome.expected), summarize(actual))),
            Err(error) => Some(format!("the call failed: {error}")),
        };
        if problem.is_some() {
            failed.push(outcome.name.clone());
        }
        report.fixtures.push(FixtureResult {
            name: outcome.name,
            passed: problem.is_none(),
            elapsed_us: outcome.elapsed.as_micros() as u64,
            problem,
        });
    }
    let reason = (!failed.is_empty()).then(|| format!("golden fixtures failed: {}", failed.join(", ")));
    finish(report, Some(component), reason)
}

impl GateReport {
    /// The report as text, for `host component check`.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut text = String::new();
        let verdict = if self.accepted { "ACCEPTED" } else { "REJECTED" };
        let _ = writeln!(
            text,
            "{} for the {} slot: {verdict} (checked in {} ms)",
            self.component, self.slot, self.checked_in_ms
        );
        if let Some(reason) = &self.reason {
            let _ = writeln!(text, "  reason    {reason}");
        }
        let _ = writeln!(text, "  version   {}", self.version);
        let _ = writeln!(text, "  sha256    {}", self.sha256);
        let _ = writeln!(text, "  exports   {}", self.exports.join(", "));
        let _ = writeln!(text, "  imports   {}", self.imports.join(", "));
        let passed = self.fixtures.iter().filter(|fixture| fixture.passed).count();
        let _ = writeln!(text, "  fixtures  {passed} of {} passed", self.fixtures.len());
        for fixture in &self.fixtures {
            let mark = if fixture.passed { "ok  " } else { "FAIL" };
            let _ = write!(text, "    {mark}  {:<32} {:>8} µs", fixture.name, fixture.elapsed_us);
            if let Some(problem) = &fixture.problem {
                let _ = write!(text, "  {problem}");
            }
            text.push('\n');
        }
        text
    }
}
