//! The ways a version enters the registry (an upload, `host component push`,
//! the components folder): judged here by the gate first, then stored, and
//! activated when asked. A version the registry has already is not stored
//! again; activating it is a change of the slot like any other.

use std::sync::Arc;

use super::candidate::Candidate;
use super::gate::{self, Fixtures, GateReport};
use super::{Change, EventKind, Proposal, Source, SwapError, folder, name_of};
use crate::rules::Rules;
use crate::runtime::Slot;
use crate::store::StoreError;
use crate::store::registry::{ActiveRow, Expect, NewVersion, SlotEventRow, VersionRow};

impl Rules {
    /// Proposes a new build of `slot`'s rule: `wasm` with `config_text`,
    /// judged against the golden fixtures of the version serving, and
    /// activated if it passes.
    pub async fn propose(
        &self,
        slot: Slot,
        wasm: Vec<u8>,
        config_text: Option<String>,
        change: Change<'_>,
    ) -> Result<Proposal, SwapError> {
        let fixtures = match self.active_version(slot).await? {
            Some(active) => Candidate::fixtures_from_json(active.fixtures.as_deref()),
            None => Fixtures::None,
        };
        self.publish(slot, Candidate { wasm, config_text, fixtures }, change, true).await
    }

    /// Proposes `wasm` as a new build of the version serving `slot`: with its
    /// `.toml`, judged against its golden fixtures.
    pub async fn propose_build(&self, slot: Slot, wasm: Vec<u8>, change: Change<'_>) -> Result<Proposal, SwapError> {
        let active = self.active_version(slot).await?;
        let config_text = active.as_ref().and_then(|active| active.config_text.clone());
        self.propose(slot, wasm, config_text, change).await
    }

    /// Publishes `candidate` for `slot` in the registry, once it passed the
    /// gate here, and makes it serve everywhere when `activate`.
    pub async fn publish(
        &self,
        slot: Slot,
        candidate: Candidate,
        change: Change<'_>,
        activate: bool,
    ) -> Result<Proposal, SwapError> {
        let _turn = self.swaps.turns[slot as usize].lock().await;
        self.publish_in_turn(slot, candidate, change, activate).await
    }

    pub(super) async fn publish_in_turn(
        &self,
        slot: Slot,
        candidate: Candidate,
        change: Change<'_>,
        activate: bool,
    ) -> Result<Proposal, SwapError> {
        let registry = &self.swaps.registry;
        let fingerprint = candidate.fingerprint();
        if let Some(known) = registry.component_version_by_fingerprint(slot.name(), &fingerprint).await? {
            return self.republish(slot, known, change, activate).await;
        }
        let verdict = Box::pin(self.judge(slot, &candidate)).await;
        let report = verdict.report;
        let Some(component) = verdict.component else {
            self.reject(slot, &report, change).await?;
            return Ok(Proposal::Rejected(report));
        };
        let (sha256, fixtures) = (candidate.sha256(), candidate.fixtures_json());
        let version_id = registry
            .add_component_version(&NewVersion {
                slot: slot.name(),
                fingerprint: &fingerprint,
                sha256: &sha256,
                wasm: &candidate.wasm,
                config_text: candidate.config_text.as_deref(),
                fixtures: fixtures.as_deref(),
                component: &report.component,
                version: &report.version,
                source: &name_of(change.source),
                added_by: &self.signature(change),
                gate_report: &serde_json::to_string(&report).map_err(|error| corrupt(&error))?,
            })
            .await?;
        if !activate {
            return Ok(Proposal::Stored { version_id, report });
        }
        let event = self.event(EventKind::Activated, Some(version_id), &report, change, None);
        let source = name_of(change.source);
        registry.activate_component_version(slot.name(), version_id, &source, Expect::Any, &[event]).await?;
        self.install(version_id, &fingerprint, Arc::new(component), on_probation(change.source)).await;
        Ok(Proposal::Activated(report))
    }

    /// A version the registry holds already: activated again if asked.
    async fn republish(
        &self,
        slot: Slot,
        known: VersionRow,
        change: Change<'_>,
        activate: bool,
    ) -> Result<Proposal, SwapError> {
        let report = stored_report(&known)?;
        if self.active_row(slot).await?.is_some_and(|active| active.version_id == known.id) {
            return Ok(Proposal::Unchanged);
        }
        if !activate {
            return Ok(Proposal::Stored { version_id: known.id, report });
        }
        self.activate_known(slot, &known, change).await?;
        Ok(Proposal::Activated(report))
    }

    /// Makes version `id` of `slot` serve everywhere (it passed the gate
    /// when it was added; each process gates it again as it loads it).
    pub async fn activate_version(&self, slot: Slot, id: i64, change: Change<'_>) -> Result<Proposal, SwapError> {
        let _turn = self.swaps.turns[slot as usize].lock().await;
        let known = self.swaps.registry.component_version(id).await?;
        let known = known.filter(|row| row.slot == slot.name()).ok_or(SwapError::UnknownVersion { slot, id })?;
        self.republish(slot, known, change, true).await
    }

    async fn activate_known(&self, slot: Slot, known: &VersionRow, change: Change<'_>) -> Result<(), SwapError> {
        let report = stored_report(known)?;
        let event = self.event(EventKind::Activated, Some(known.id), &report, change, None);
        let registry = &self.swaps.registry;
        let source = name_of(change.source);
        registry.activate_component_version(slot.name(), known.id, &source, Expect::Any, &[event]).await?;
        self.follow_slot_in_turn(slot).await
    }

    /// The gate's verdict on `candidate` for `slot`, in this process.
    pub(super) async fn judge(&self, slot: Slot, candidate: &Candidate) -> gate::Verdict {
        match candidate.config(slot) {
            Ok(config) => {
                let (wasm, config_text) = (candidate.wasm.clone(), candidate.config_text.clone());
                gate::check(&self.runtime, slot, wasm, config, config_text, &candidate.fixtures).await
            }
            Err(reason) => gate::refused(slot, &candidate.sha256(), reason),
        }
    }

    /// Records a rejected candidate (and sets a dropped file aside).
    async fn reject(&self, slot: Slot, report: &GateReport, change: Change<'_>) -> Result<(), SwapError> {
        let reason = report.reason.clone().unwrap_or_default();
        tracing::warn!(slot = slot.name(), component = %report.component, version = %report.version,
            sha256 = %report.sha256, source = ?change.source, by = change.by, %reason,
            "component rejected; the slot keeps its version");
        let event = self.event(EventKind::Rejected, None, report, change, Some(reason));
        self.swaps.registry.record_slot_event(&event).await?;
        if change.source == Source::Folder {
            self.set_aside_rejected(slot).await;
        }
        Ok(())
    }

    /// An event signed by this process (and by whoever asked for it).
    pub(super) fn event(
        &self,
        kind: EventKind,
        version_id: Option<i64>,
        report: &GateReport,
        change: Change<'_>,
        reason: Option<String>,
    ) -> SlotEventRow {
        SlotEventRow {
            slot: report.slot.clone(),
            kind: name_of(kind),
            version_id,
            component: report.component.clone(),
            version: report.version.clone(),
            sha256: report.sha256.clone(),
            source: name_of(change.source),
            reason,
            added_by: self.signature(change),
            at: chrono::Utc::now(),
        }
    }

    /// Who made `change`: the caller who asked for it (when one did), through this process.
    fn signature(&self, change: Change<'_>) -> String {
        let process = self.swaps.process.signature();
        match change.by {
            Some(actor) => format!("{actor} via {process}"),
            None => process,
        }
    }

    /// The version `slot` serves in the registry, if any.
    pub(super) async fn active_row(&self, slot: Slot) -> Result<Option<ActiveRow>, StoreError> {
        let active = self.swaps.registry.active_component_versions().await?;
        Ok(active.into_iter().find(|row| row.slot == slot.name()))
    }

    /// The registry's row of the version `slot` serves, if any.
    pub(super) async fn active_version(&self, slot: Slot) -> Result<Option<VersionRow>, StoreError> {
        match self.active_row(slot).await? {
            Some(active) => self.swaps.registry.component_version(active.version_id).await,
            None => Ok(None),
        }
    }

    /// Sets a rejected file in the folder aside and puts back the version serving.
    async fn set_aside_rejected(&self, slot: Slot) {
        let Some(dir) = &self.swaps.dir else { return };
        folder::set_aside_rejected(dir, slot).await;
        if let Some(active) = self.slots.get(slot) {
            self.write_back(&active, None).await;
        }
    }
}

/// Whether a version activated from `source` is judged on its first calls:
/// a new one is; one found at the first start, or restored, is known.
pub(super) fn on_probation(source: Source) -> bool {
    matches!(source, Source::Folder | Source::Upload | Source::Cli)
}

/// A stored version as a report names it (slot, component, version,
/// sha256), for its events, or when its own report cannot be read (`reason`).
pub(super) fn known_report(row: &VersionRow, reason: Option<&str>) -> GateReport {
    GateReport {
        slot: row.slot.clone(),
        component: row.component.clone(),
        version: row.version.clone(),
        sha256: row.sha256.clone(),
        accepted: true,
        reason: reason.map(str::to_owned),
        exports: Vec::new(),
        imports: Vec::new(),
        fixtures: Vec::new(),
        checked_in_ms: 0,
    }
}

/// The gate's report kept with a stored version.
fn stored_report(row: &VersionRow) -> Result<GateReport, SwapError> {
    serde_json::from_str(&row.gate_report).map_err(|error| corrupt(&error))
}

fn corrupt(error: &serde_json::Error) -> SwapError {
    SwapError::Registry(StoreError::Corrupt(format!("a gate report: {error}")))
}
