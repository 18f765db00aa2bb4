//! Following the registry: each slot's active version is loaded here,
//! through this process's own gate, and swapped in; a version this process
//! cannot load is reported, and the one it has keeps serving. The follower
//! looks when the database says something changed (PostgreSQL's NOTIFY) and
//! every few seconds besides (a notification can be lost; SQLite sends
//! none), and reports what this process serves (a heartbeat).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::candidate::Candidate;
use super::publish::on_probation;
use super::{RECENT_VERSIONS, Serving, Source, SwapError, parse_name};
use crate::rules::Rules;
use crate::runtime::{LoadedComponent, Slot};
use crate::store::StoreError;
use crate::store::registry::{ActiveRow, ProcessRow, RegistryChanges};

/// How often a process reports what it serves.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A process not heard from for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(60);

impl Rules {
    /// Brings every slot this process follows in line with the registry.
    pub async fn follow_registry(&self) -> Result<(), SwapError> {
        for &slot in self.swaps.followed() {
            // Read in the slot's turn: a row read before a change this
            // process was making would send the slot back to the old version.
            let _turn = self.swaps.turns[slot as usize].lock().await;
            self.follow_slot_in_turn(slot).await?;
        }
        self.swaps.loaded.store(true, Ordering::Release);
        Ok(())
    }

    /// Brings `slot` in line with the registry (its turn held).
    pub(super) async fn follow_slot_in_turn(&self, slot: Slot) -> Result<(), SwapError> {
        match self.active_row(slot).await? {
            Some(row) => self.follow_to(slot, &row).await,
            None => Ok(()),
        }
    }

    /// Loads and serves `active` unless it serves here already, or this
    /// process's gate refused it before.
    async fn follow_to(&self, slot: Slot, active: &ActiveRow) -> Result<(), SwapError> {
        let recent = {
            let local = self.swaps.local(slot);
            let serving = local.serving.as_ref().is_some_and(|serving| serving.version_id == active.version_id);
            let refused = local.refused.as_ref().is_some_and(|(id, _)| *id == active.version_id);
            if serving || refused {
                return Ok(());
            }
            local.recent.iter().find(|(id, _)| *id == active.version_id).map(|(_, component)| component.clone())
        };
        let registry = &self.swaps.registry;
        let row = registry.component_version(active.version_id).await?;
        let row = row.ok_or_else(|| StoreError::Corrupt(format!("slot {slot} names a missing version")))?;
        let source = parse_name(&active.source).unwrap_or(Source::Rollback);
        let judged = !row.failed && (row.probation_calls as u64) < self.swaps.policy.window;
        let probation = on_probation(source) && judged;
        if let Some(component) = recent {
            self.install(row.id, &row.fingerprint, component, probation).await;
            return Ok(());
        }
        let wasm = registry.component_wasm(&row.sha256).await?;
        let fixtures = Candidate::fixtures_from_json(row.fixtures.as_deref());
        let candidate = Candidate { wasm, config_text: row.config_text.clone(), fixtures };
        // Boxed: the gate's future is large, and this one nests in many.
        let verdict = Box::pin(self.judge(slot, &candidate)).await;
        match verdict.component {
            Some(component) => self.install(row.id, &row.fingerprint, Arc::new(component), probation).await,
            None => {
                let reason = verdict.report.reason.unwrap_or_default();
                tracing::error!(slot = slot.name(), version_id = row.id, component = %row.component,
                    version = %row.version, %reason,
                    "this process cannot serve the registry's active version; it keeps serving the one it has");
                self.swaps.local(slot).refused = Some((row.id, reason));
            }
        }
        Ok(())
    }

    /// Makes `component` (registry version `version_id`, with
    /// `fingerprint`) serve its slot here. The database is told first what
    /// its `sql` grant lets it read.
    pub(super) async fn install(
        &self,
        version_id: i64,
        fingerprint: &str,
        component: Arc<LoadedComponent>,
        on_probation: bool,
    ) {
        let slot = component.slot;
        let sql = self.runtime.capabilities().sql.clone();
        if let Err(error) = sql.apply_grant(slot, component.config.grants.sql.as_ref()).await {
            // The version serves anyway; its queries of what was not granted are denied.
            tracing::warn!(slot = slot.name(), component = %component.name, %error, "the sql grant could not be applied");
        }
        self.slots.install_arc(component.clone());
        {
            let mut local = self.swaps.local(slot);
            local.recent.retain(|(id, _)| *id != version_id);
            if let Some(previous) = local.serving.take() {
                local.recent.push((previous.version_id, previous.component));
            }
            while local.recent.len() > RECENT_VERSIONS {
                local.recent.remove(0);
            }
            let on_probation = Arc::new(AtomicBool::new(on_probation));
            local.serving = Some(Serving { version_id, component: component.clone(), on_probation });
            local.refused = None;
        }
        tracing::info!(slot = slot.name(), version_id, component = %component.name, version = %component.version,
            sha256 = %component.digest, "component activated");
        self.write_back(&component, Some(fingerprint)).await;
    }

    /// Tells the registry what this process serves, and forgets processes
    /// long gone.
    pub async fn report_serving(&self) {
        let (mut serving, mut problems) = (BTreeMap::new(), BTreeMap::new());
        for &slot in self.swaps.followed() {
            let local = self.swaps.local(slot);
            if let Some(version) = &local.serving {
                let component = &version.component;
                serving.insert(
                    slot.name(),
                    json!({"version_id": version.version_id, "sha256": &*component.digest,
                    "component": &*component.name, "version": &*component.version}),
                );
            }
            if let Some((id, reason)) = &local.refused {
                problems.insert(slot.name(), json!({"version_id": id, "reason": reason}));
            }
        }
        let process = &self.swaps.process;
        let now = chrono::Utc::now();
        let row = ProcessRow {
            id: process.id.clone(),
            role: process.role.into(),
            host: process.host.clone(),
            pid: i64::from(process.pid),
            started_at: process.started_at,
            last_seen: now,
            serving: json!(serving).to_string(),
            problems: json!(problems).to_string(),
        };
        let registry = &self.swaps.registry;
        let forget_before = now - chrono::Duration::from_std(FORGET_AFTER).unwrap_or_default();
        let reported = async {
            registry.report_process(&row).await?;
            registry.forget_processes_unseen_since(forget_before).await
        };
        if let Err(error) = reported.await {
            tracing::warn!(%error, "cannot report to the component registry what this process serves");
        }
    }

    /// Brings the slots in line, logging what failed (the next look retries).
    async fn follow_logged(&self) {
        if let Err(error) = self.follow_registry().await {
            tracing::warn!(%error, "cannot follow the component registry; retrying");
        }
    }
}

/// Follows the registry until `stop`: on each notification, every `every`,
/// and reporting what this process serves every [`HEARTBEAT`].
pub async fn follow(rules: Arc<Rules>, every: Duration, stop: CancellationToken) {
    let mut changes = listen(&rules, None).await;
    let mut look = tokio::time::interval(every);
    let mut beat = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            changed = next_change(&mut changes) => {
                if let Err(error) = changed {
                    // Dropped, with the connection it holds (a closed pool
                    // waits for it); the next look listens again.
                    tracing::warn!(%error, "lost the component registry's notifications; looking every {every:?} meanwhile");
                    changes = None;
                }
                rules.follow_logged().await;
                rules.report_serving().await;
            }
            _ = look.tick() => {
                changes = listen(&rules, changes).await;
                rules.follow_logged().await;
            }
            _ = beat.tick() => rules.report_serving().await,
        }
    }
    if let Err(error) = rules.swaps.registry.forget_process(&rules.swaps.process.id).await {
        tracing::warn!(%error, "cannot remove this process from the component registry's list");
    }
}

/// The registry's notifications: `current` when listening already, else a
/// new listener where the backend sends them (none on SQLite, or while the
/// database is unreachable: the periodic look covers for it).
async fn listen(rules: &Rules, current: Option<RegistryChanges>) -> Option<RegistryChanges> {
    if current.is_some() {
        return current;
    }
    match rules.swaps.registry.registry_changes().await {
        Ok(changes) => changes,
        Err(error) => {
            tracing::warn!(%error, "no notifications from the component registry yet; looking periodically");
            None
        }
    }
}

async fn next_change(changes: &mut Option<RegistryChanges>) -> Result<(), StoreError> {
    match changes {
        Some(changes) => changes.next().await,
        None => std::future::pending().await,
    }
}
