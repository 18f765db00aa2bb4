//! The registry as the admin API shows it: per slot, the active version,
//! what every live process serves and whether it converged; per slot, its
//! versions and what happened to it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::follow::HEARTBEAT;
use super::publish::{known_report, on_probation};
use super::{EventKind, GateReport, SlotEvent, Source, StatsSnapshot, parse_name, slots_of_role};
use crate::rules::Rules;
use crate::runtime::Slot;
use crate::store::StoreError;
use crate::store::registry::{ActiveRow, ProcessRow, SlotEventRow, VersionRow};

/// Versions and events shown per slot.
const SHOWN: i64 = 100;

/// A slot as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SlotStatus {
    pub slot: String,
    /// The registry's active version, if any.
    pub active: Option<VersionStatus>,
    /// The latest rejection, if any.
    pub last_rejection: Option<SlotEvent>,
    /// Every live process, and what it serves for this slot.
    pub processes: Vec<ProcessStatus>,
    /// Whether every live process serves the active version.
    pub converged: bool,
}

/// The active version of a slot.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionStatus {
    /// Its id in the registry.
    pub id: i64,
    pub component: String,
    pub version: String,
    pub sha256: String,
    /// When it went live (most recently).
    pub activated_at: DateTime<Utc>,
    /// What made it live.
    pub source: Source,
    /// Which process or tool added it, and when.
    pub added_by: String,
    pub added_at: DateTime<Utc>,
    /// Still judged on its first calls (across every process).
    pub on_probation: bool,
    /// Sent back for failing.
    pub failed: bool,
    /// Its first calls counted so far, and how many failed.
    pub probation_calls: i64,
    pub probation_failures: i64,
    /// When this process loaded it (absent if it does not serve it).
    pub loaded_at: Option<DateTime<Utc>>,
    /// Its production calls in this process.
    #[serde(flatten)]
    pub stats: StatsSnapshot,
}

/// A live process and what it serves for a slot.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProcessStatus {
    pub id: String,
    /// `serve` or `worker`.
    pub role: String,
    pub host: String,
    pub pid: i64,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// The version it serves, if any.
    pub serving: Option<ServedVersion>,
    /// Whether it serves the active version.
    pub converged: bool,
    /// Not converged although the slot changed longer ago than the convergence limit.
    pub lagging: bool,
    /// Why it does not serve the active version (its own gate refused it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A version a process serves.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServedVersion {
    pub version_id: i64,
    pub component: String,
    pub version: String,
    pub sha256: String,
}

/// A version in a slot's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    pub id: i64,
    pub component: String,
    pub version: String,
    pub sha256: String,
    /// How it was added.
    pub source: Source,
    pub added_by: String,
    pub added_at: DateTime<Utc>,
    /// Whether it serves now.
    pub active: bool,
    pub failed: bool,
    pub probation_calls: i64,
    pub probation_failures: i64,
    /// The gate's report when it was added.
    pub report: GateReport,
}

/// A slot's versions and events, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SlotHistoryView {
    pub slot: String,
    pub versions: Vec<VersionView>,
    pub events: Vec<SlotEvent>,
}

impl Rules {
    /// Every slot, as the admin API shows it.
    pub async fn slot_statuses(&self) -> Result<Vec<SlotStatus>, StoreError> {
        let registry = &self.swaps.registry;
        let active = registry.active_component_versions().await?;
        let live = chrono::Duration::from_std(HEARTBEAT * 3).unwrap_or_default();
        let processes = registry.processes_seen_since(Utc::now() - live).await?;
        let mut statuses = Vec::new();
        for slot in Slot::ALL {
            let row = active.iter().find(|row| row.slot == slot.name());
            let version = match row {
                Some(row) => registry.component_version(row.version_id).await?,
                None => None,
            };
            let events = registry.slot_events(slot.name(), SHOWN).await?;
            let last_rejection = events.iter().rev().find(|event| event.kind == "rejected").and_then(slot_event);
            let shown: Vec<ProcessStatus> = processes
                .iter()
                .filter(|process| slots_of_role(&process.role).contains(&slot))
                .map(|process| self.process_status(slot, row, process))
                .collect();
            statuses.push(SlotStatus {
                slot: slot.name().into(),
                active: row.zip(version).map(|(row, version)| self.version_status(slot, row, &version)),
                last_rejection,
                converged: shown.iter().all(|process| process.converged),
                processes: shown,
            });
        }
        Ok(statuses)
    }

    /// A slot's versions and events, oldest first.
    pub async fn slot_history(&self, slot: Slot) -> Result<SlotHistoryView, StoreError> {
        let registry = &self.swaps.registry;
        let active = registry.active_component_versions().await?;
        let active_id = active.iter().find(|row| row.slot == slot.name()).map(|row| row.version_id);
        let versions = registry.component_versions(slot.name(), SHOWN).await?;
        let events = registry.slot_events(slot.name(), SHOWN).await?;
        Ok(SlotHistoryView {
            slot: slot.name().into(),
            versions: versions.iter().map(|row| version_view(row, active_id)).collect(),
            events: events.iter().filter_map(slot_event).collect(),
        })
    }

    fn version_status(&self, slot: Slot, active: &ActiveRow, row: &VersionRow) -> VersionStatus {
        let source = parse_name(&active.source).unwrap_or(Source::Rollback);
        let here = {
            let local = self.swaps.local(slot);
            local
                .serving
                .as_ref()
                .filter(|serving| serving.version_id == row.id)
                .map(|serving| serving.component.clone())
        };
        let judged = !row.failed && (row.probation_calls as u64) < self.swaps.policy.window;
        VersionStatus {
            id: row.id,
            component: row.component.clone(),
            version: row.version.clone(),
            sha256: row.sha256.clone(),
            activated_at: active.changed_at,
            source,
            added_by: row.added_by.clone(),
            added_at: row.added_at,
            on_probation: on_probation(source) && judged,
            failed: row.failed,
            probation_calls: row.probation_calls,
            probation_failures: row.probation_failures,
            loaded_at: here.as_ref().map(|component| component.loaded_at),
            stats: here.map(|component| component.stats.snapshot()).unwrap_or_default(),
        }
    }

    fn process_status(&self, slot: Slot, active: Option<&ActiveRow>, process: &ProcessRow) -> ProcessStatus {
        let serving: Option<ServedVersion> = serde_json::from_str::<serde_json::Value>(&process.serving)
            .ok()
            .and_then(|serving| serde_json::from_value(serving[slot.name()].clone()).ok());
        let problem = serde_json::from_str::<serde_json::Value>(&process.problems)
            .ok()
            .and_then(|problems| problems[slot.name()]["reason"].as_str().map(str::to_owned));
        let converged = match active {
            Some(active) => serving.as_ref().is_some_and(|served| served.version_id == active.version_id),
            None => true,
        };
        let waited = active.map(|active| (Utc::now() - active.changed_at).to_std().unwrap_or(Duration::ZERO));
        ProcessStatus {
            id: process.id.clone(),
            role: process.role.clone(),
            host: process.host.clone(),
            pid: process.pid,
            started_at: process.started_at,
            last_seen: process.last_seen,
            serving,
            converged,
            lagging: !converged && waited.is_some_and(|waited| waited > self.swaps.converge_within),
            problem,
        }
    }
}

fn version_view(row: &VersionRow, active: Option<i64>) -> VersionView {
    VersionView {
        id: row.id,
        component: row.component.clone(),
        version: row.version.clone(),
        sha256: row.sha256.clone(),
        source: parse_name(&row.source).unwrap_or(Source::Upload),
        added_by: row.added_by.clone(),
        added_at: row.added_at,
        active: active == Some(row.id),
        failed: row.failed,
        probation_calls: row.probation_calls,
        probation_failures: row.probation_failures,
        report: serde_json::from_str(&row.gate_report)
            .unwrap_or_else(|_| known_report(row, Some("the stored report could not be read"))),
    }
}

fn slot_event(row: &SlotEventRow) -> Option<SlotEvent> {
    Some(SlotEvent {
        at: row.at,
        kind: parse_name::<EventKind>(&row.kind)?,
        version_id: row.version_id,
        component: row.component.clone(),
        version: row.version.clone(),
        sha256: row.sha256.clone(),
        source: parse_name(&row.source)?,
        reason: row.reason.clone(),
        added_by: row.added_by.clone(),
    })
}
