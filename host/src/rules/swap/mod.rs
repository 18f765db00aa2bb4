//! Hot swap: a new component goes live only through the gate (compile, fit
//! the slot's world, answer the golden fixtures), replaces the old one
//! atomically (calls in flight finish on the version they started with),
//! and is watched on probation: if too many of its first calls fail, the
//! slot returns to the last known good version by itself.
//!
//! Every change of a slot (from the components folder, an upload, a
//! rollback) takes the slot's turn, so changes to one slot never interleave,
//! and the folder is kept showing what runs: a rejected file is set aside as
//! `<slot>.rejected.wasm`, and a rollback writes the restored version back.

pub mod folder;
pub mod gate;
pub mod watch;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Rules;
pub use crate::runtime::stats::{CallStats, StatsSnapshot};
use crate::runtime::{CallError, LoadedComponent, Slot, SlotConfig};
pub use gate::{FixtureResult, GateReport};

/// Versions kept per slot for rollbacks and the history.
const KEPT_VERSIONS: usize = 16;
/// Events kept per slot.
const KEPT_EVENTS: usize = 100;

/// When a new version is rolled back by itself.
#[derive(Debug, Clone, Copy)]
pub struct RollbackPolicy {
    /// How many first calls a new version is judged on.
    pub window: u64,
    /// The failure rate over those calls that sends the slot back.
    pub failure_rate: f64,
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        Self { window: 20, failure_rate: 0.5 }
    }
}

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Loaded at start-up from the components folder.
    Startup,
    /// Dropped into the components folder while running.
    Folder,
    /// Uploaded through the admin API.
    Upload,
    /// Restored by a rollback.
    Rollback,
}

/// What happened to a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A version went live.
    Activated,
    /// A candidate failed the gate; the slot kept its version.
    Rejected,
    /// An operator sent the slot back to an earlier version.
    RolledBack,
    /// The slot went back by itself: too many of a new version's first calls failed.
    AutoRolledBack,
}

/// One entry of a slot's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SlotEvent {
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    /// The version concerned (the candidate, or the version left behind).
    pub component: String,
    pub version: String,
    pub sha256: String,
    pub source: Source,
    /// Why (a rejection or a rollback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A version that served the slot.
#[derive(Clone)]
struct Version {
    component: Arc<LoadedComponent>,
    activated_at: DateTime<Utc>,
    source: Source,
    /// Still judged on its first calls.
    on_probation: bool,
    /// Rolled back for failing: never restored automatically.
    failed: bool,
}

#[derive(Default)]
struct SlotHistory {
    versions: VecDeque<Version>,
    events: VecDeque<SlotEvent>,
}

impl SlotHistory {
    fn log(&mut self, event: SlotEvent) {
        if self.events.len() == KEPT_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}

/// Hot-swap state: histories, the turn of each slot, the rollback policy.
pub struct Swaps {
    histories: [Mutex<SlotHistory>; 3],
    turns: [tokio::sync::Mutex<()>; 3],
    /// The components folder.
    pub dir: PathBuf,
    pub policy: RollbackPolicy,
}

impl Swaps {
    /// Swap state for the components in `dir`.
    pub fn new(dir: PathBuf, policy: RollbackPolicy) -> Self {
        Self { histories: Default::default(), turns: Default::default(), dir, policy }
    }

    fn history(&self, slot: Slot) -> std::sync::MutexGuard<'_, SlotHistory> {
        self.histories[slot as usize].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What became of a proposed component.
#[derive(Debug, Clone)]
pub enum Proposal {
    /// It passed the gate and serves now.
    Activated(GateReport),
    /// It failed the gate; the slot kept its version.
    Rejected(GateReport),
    /// It is the version serving already.
    Unchanged,
}

/// Why a rollback could not happen.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error("the {0} slot has no earlier good version to go back to")]
    NothingToRestore(Slot),
}

/// A slot as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SlotStatus {
    pub slot: String,
    /// The version serving, if any.
    pub active: Option<VersionStatus>,
    /// The latest rejection, if any.
    pub last_rejection: Option<SlotEvent>,
}

/// A version as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionStatus {
    pub component: String,
    pub version: String,
    pub sha256: String,
    /// When it was compiled and checked.
    pub loaded_at: DateTime<Utc>,
    /// When it went live (most recently).
    pub activated_at: DateTime<Utc>,
    pub source: Source,
    /// Still judged on its first calls.
    pub on_probation: bool,
    /// Sent back for failing.
    pub failed: bool,
    /// Its production calls.
    #[serde(flatten)]
    pub stats: StatsSnapshot,
}

/// A slot's versions and events, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SlotHistoryView {
    pub slot: String,
    pub versions: Vec<VersionStatus>,
    pub events: Vec<SlotEvent>,
}

fn version_status(version: &Version) -> VersionStatus {
    let component = &version.component;
    VersionStatus {
        component: component.name.to_string(),
        version: component.version.to_string(),
        sha256: component.digest.to_string(),
        loaded_at: component.loaded_at,
        activated_at: version.activated_at,
        source: version.source,
        on_probation: version.on_probation,
        failed: version.failed,
        stats: component.stats.snapshot(),
    }
}

fn event(kind: EventKind, component: &LoadedComponent, source: Source, reason: Option<String>) -> SlotEvent {
    SlotEvent {
        at: Utc::now(),
        kind,
        component: component.name.to_string(),
        version: component.version.to_string(),
        sha256: component.digest.to_string(),
        source,
        reason,
    }
}

impl Rules {
    /// Proposes `wasm` (with its `.toml` text) for `slot`: gate, then swap.
    pub async fn propose(&self, slot: Slot, wasm: Vec<u8>, config_text: Option<String>, source: Source) -> Proposal {
        let _turn = self.swaps.turns[slot as usize].lock().await;
        self.propose_in_turn(slot, wasm, config_text, source).await
    }

    async fn propose_in_turn(
        &self,
        slot: Slot,
        wasm: Vec<u8>,
        config_text: Option<String>,
        source: Source,
    ) -> Proposal {
        let digest = crate::runtime::digest(&wasm);
        if let Some(active) = self.slots.get(slot)
            && *active.digest == digest
            && active.config_text.as_deref() == config_text.as_deref()
        {
            return Proposal::Unchanged;
        }
        let config = match config_text.as_deref().map(|text| SlotConfig::parse(text, &format!("{slot}.toml"))) {
            None => Ok(SlotConfig::default()),
            Some(parsed) => parsed,
        };
        let verdict = match config {
            Ok(config) => {
                let fixtures = folder::fixtures_dir(&self.swaps.dir, slot);
                gate::check(&self.runtime, slot, wasm, config, config_text, Some(&fixtures)).await
            }
            Err(error) => gate::refused(slot, &digest, error.to_string()),
        };
        let report = verdict.report;
        let Some(component) = verdict.component else {
            let reason = report.reason.clone().unwrap_or_default();
            tracing::warn!(slot = slot.name(), component = %report.component, version = %report.version,
                sha256 = %report.sha256, ?source, %reason, "component rejected; the slot keeps its version");
            self.swaps.history(slot).log(SlotEvent {
                at: Utc::now(),
                kind: EventKind::Rejected,
                component: report.component.clone(),
                version: report.version.clone(),
                sha256: report.sha256.clone(),
                source,
                reason: Some(reason),
            });
            if source == Source::Folder {
                self.set_aside_rejected(slot).await;
            }
            return Proposal::Rejected(report);
        };
        self.activate(Arc::new(component), source).await;
        if source == Source::Upload
            && let Some(active) = self.slots.get(slot)
        {
            folder::write_back(&self.swaps.dir, &active).await;
        }
        Proposal::Activated(report)
    }

    /// Makes `component` serve its slot, recorded in the history. The
    /// database is told first what the version's `sql` grant lets it read.
    async fn activate(&self, component: Arc<LoadedComponent>, source: Source) {
        let slot = component.slot;
        let sql = self.runtime.capabilities().sql.clone();
        if let Err(error) = sql.apply_grant(slot, component.config.grants.sql.as_ref()).await {
            // The version serves anyway; its queries of what was not granted are denied.
            tracing::warn!(slot = slot.name(), component = %component.name, %error, "the sql grant could not be applied");
        }
        self.slots.install_arc(component.clone());
        let mut history = self.swaps.history(slot);
        if history.versions.len() == KEPT_VERSIONS {
            history.versions.pop_front();
        }
        // A new version is on probation; one coming back is known.
        let on_probation = matches!(source, Source::Folder | Source::Upload);
        history.versions.push_back(Version {
            component: component.clone(),
            activated_at: Utc::now(),
            source,
            on_probation,
            failed: false,
        });
        history.log(event(EventKind::Activated, &component, source, None));
        tracing::info!(slot = slot.name(), component = %component.name, version = %component.version,
            sha256 = %component.digest, ?source, "component activated");
    }

    /// Sets a rejected file in the folder aside and puts back the version serving.
    async fn set_aside_rejected(&self, slot: Slot) {
        folder::set_aside_rejected(&self.swaps.dir, slot).await;
        if let Some(active) = self.slots.get(slot) {
            folder::write_back(&self.swaps.dir, &active).await;
        }
    }

    /// Sends `slot` back to its last known good version (an operator's request).
    pub async fn roll_back(&self, slot: Slot, reason: &str) -> Result<Arc<LoadedComponent>, RollbackError> {
        let _turn = self.swaps.turns[slot as usize].lock().await;
        self.roll_back_in_turn(slot, None, EventKind::RolledBack, reason).await
    }

    /// Rolls `slot` back if `from` (when given) is still the version serving.
    async fn roll_back_in_turn(
        &self,
        slot: Slot,
        from: Option<&Arc<LoadedComponent>>,
        kind: EventKind,
        reason: &str,
    ) -> Result<Arc<LoadedComponent>, RollbackError> {
        let restored = {
            let mut history = self.swaps.history(slot);
            let current = self.slots.get(slot);
            if let Some(from) = from
                && !current.as_ref().is_some_and(|current| Arc::ptr_eq(current, from))
            {
                // Another change got there first.
                return current.ok_or(RollbackError::NothingToRestore(slot));
            }
            // The newest version that did not fail and is not what serves now.
            let same_as_current = |version: &Version| {
                current.as_ref().is_some_and(|current| {
                    current.digest == version.component.digest && current.config_text == version.component.config_text
                })
            };
            let Some(good) = history
                .versions
                .iter()
                .rev()
                .find(|version| !version.failed && !same_as_current(version))
                .map(|version| version.component.clone())
            else {
                return Err(RollbackError::NothingToRestore(slot));
            };
            if let Some(current) = &current {
                for version in history.versions.iter_mut().filter(|version| Arc::ptr_eq(&version.component, current)) {
                    version.on_probation = false;
                    version.failed |= kind == EventKind::AutoRolledBack;
                }
                history.log(event(kind, current, Source::Rollback, Some(reason.to_owned())));
            }
            good
        };
        tracing::warn!(slot = slot.name(), restored = %restored.name, version = %restored.version,
            sha256 = %restored.digest, %reason, "slot rolled back");
        self.activate(restored.clone(), Source::Rollback).await;
        folder::write_back(&self.swaps.dir, &restored).await;
        Ok(restored)
    }

    /// Records a production call of `component`; a version on probation
    /// whose failures over its first calls pass the policy's rate is rolled
    /// back (in the background: the caller's answer does not wait).
    pub fn observe_call(
        self: &Arc<Self>,
        component: &Arc<LoadedComponent>,
        elapsed: Duration,
        error: Option<&CallError>,
    ) {
        // Only the version's own failures count: an empty slot or a host
        // without capacity says nothing about it.
        let failed = error.is_some_and(CallError::is_component_fault);
        let (calls, errors) = component.stats.record(elapsed, failed);
        let policy = self.swaps.policy;
        if !failed || calls > policy.window || (errors as f64) <= policy.failure_rate * policy.window as f64 {
            return;
        }
        let on_probation = self
            .swaps
            .history(component.slot)
            .versions
            .iter()
            .any(|version| Arc::ptr_eq(&version.component, component) && version.on_probation);
        if !on_probation {
            return;
        }
        let reason = format!(
            "{errors} of its first {calls} calls failed (more than {:.0} % of {}); last: {}",
            policy.failure_rate * 100.0,
            policy.window,
            error.map(ToString::to_string).unwrap_or_default()
        );
        let (rules, component) = (self.clone(), component.clone());
        tokio::spawn(async move {
            let slot = component.slot;
            let _turn = rules.swaps.turns[slot as usize].lock().await;
            if let Err(error) =
                rules.roll_back_in_turn(slot, Some(&component), EventKind::AutoRolledBack, &reason).await
            {
                tracing::error!(slot = slot.name(), %error, %reason, "a failing version cannot be rolled back");
            }
        });
    }

    /// Every slot, as the admin API shows it.
    pub fn slot_statuses(&self) -> Vec<SlotStatus> {
        Slot::ALL
            .into_iter()
            .map(|slot| {
                let history = self.swaps.history(slot);
                let active = self.slots.get(slot).and_then(|active| {
                    history
                        .versions
                        .iter()
                        .rev()
                        .find(|version| Arc::ptr_eq(&version.component, &active))
                        .map(version_status)
                });
                let last_rejection =
                    history.events.iter().rev().find(|event| event.kind == EventKind::Rejected).cloned();
                SlotStatus { slot: slot.name().into(), active, last_rejection }
            })
            .collect()
    }

    /// A slot's versions and events, oldest first.
    pub fn slot_history(&self, slot: Slot) -> SlotHistoryView {
        let history = self.swaps.history(slot);
        SlotHistoryView {
            slot: slot.name().into(),
            versions: history.versions.iter().map(version_status).collect(),
            events: history.events.iter().cloned().collect(),
        }
    }

    /// Loads each slot's component from the folder at start-up, through the
    /// gate; a slot whose file is rejected stays empty. Returns the slots filled.
    pub async fn load_folder(&self) -> std::io::Result<Vec<Slot>> {
        let mut filled = Vec::new();
        for slot in Slot::ALL {
            let Some((wasm, config_text)) = folder::read_candidate(&self.swaps.dir, slot).await? else { continue };
            match self.propose(slot, wasm, config_text, Source::Startup).await {
                Proposal::Activated(_) | Proposal::Unchanged => filled.push(slot),
                Proposal::Rejected(report) => tracing::error!(
                    slot = slot.name(),
                    reason = report.reason.as_deref().unwrap_or_default(),
                    "the component in the folder failed the gate; the slot is empty"
                ),
            }
        }
        Ok(filled)
    }

    /// Brings `slot` in line with the folder: proposes its file if it is not
    /// the version serving. Files still being written are left for later.
    pub async fn sync_slot(&self, slot: Slot, settle: Duration) {
        // Read in the slot's turn: a change in progress (an upload writing
        // its version back) is finished before the folder is looked at.
        let _turn = self.swaps.turns[slot as usize].lock().await;
        match folder::read_settled_candidate(&self.swaps.dir, slot, settle).await {
            Ok(Some((wasm, config_text))) => {
                self.propose_in_turn(slot, wasm, config_text, Source::Folder).await;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(slot = slot.name(), %error, "cannot read the components folder"),
        }
    }
}
