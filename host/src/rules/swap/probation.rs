//! Probation and rollback. A new version's first calls, in every process,
//! are counted in the registry; once more of them failed than the policy
//! allows, the registry goes back to the last good version and every
//! process follows. Only the version's own failures count: an empty slot or
//! a host without capacity says nothing about it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::publish::known_report;
use super::{Change, EventKind, Source, SwapError, name_of};
use crate::rules::Rules;
use crate::runtime::{CallError, LoadedComponent, Slot};
use crate::store::StoreError;
use crate::store::registry::{Expect, VersionRow};

impl Rules {
    /// Records a production call of `component`; while its version is on
    /// probation the call is counted in the registry too (in the
    /// background: the caller's answer does not wait).
    pub fn observe_call(
        self: &Arc<Self>,
        component: &Arc<LoadedComponent>,
        elapsed: Duration,
        error: Option<&CallError>,
    ) {
        let failed = error.is_some_and(CallError::is_component_fault);
        let (calls, _) = component.stats.record(elapsed, failed);
        // Past the window, this process has said all it can about the version.
        if calls > self.swaps.policy.window {
            return;
        }
        let (version_id, on_probation) = {
            let local = self.swaps.local(component.slot);
            match &local.serving {
                Some(serving) if Arc::ptr_eq(&serving.component, component) => {
                    (serving.version_id, serving.on_probation.clone())
                }
                _ => return,
            }
        };
        if !on_probation.load(Ordering::Relaxed) {
            return;
        }
        let (rules, slot, last_error) = (self.clone(), component.slot, error.map(ToString::to_string));
        tokio::spawn(async move {
            if let Err(error) = rules.count_probation_call(slot, version_id, failed, &on_probation, last_error).await {
                tracing::warn!(slot = slot.name(), version_id, %error, "cannot count a call of a version on probation");
            }
        });
    }

    async fn count_probation_call(
        &self,
        slot: Slot,
        version_id: i64,
        failed: bool,
        on_probation: &AtomicBool,
        last_error: Option<String>,
    ) -> Result<(), SwapError> {
        let policy = self.swaps.policy;
        let window = i64::try_from(policy.window).unwrap_or(i64::MAX);
        let counted = self.swaps.registry.count_probation_call(version_id, failed, window).await?;
        let Some(count) = counted else {
            on_probation.store(false, Ordering::Relaxed);
            return Ok(());
        };
        if count.probation_calls >= window {
            on_probation.store(false, Ordering::Relaxed);
        }
        if !failed || (count.probation_failures as f64) <= policy.failure_rate * policy.window as f64 {
            return Ok(());
        }
        let reason = format!(
            "{} of its first {} calls failed (more than {:.0} % of {}); last: {}",
            count.probation_failures,
            count.probation_calls,
            policy.failure_rate * 100.0,
            policy.window,
            last_error.unwrap_or_default()
        );
        self.roll_back_from(slot, Some(version_id), EventKind::AutoRolledBack, &reason, None).await?;
        Ok(())
    }

    /// Sends `slot` back to its last known good version, everywhere (an
    /// operator's request); returns the version restored.
    pub async fn roll_back(&self, slot: Slot, reason: &str, by: Option<&str>) -> Result<i64, SwapError> {
        self.roll_back_from(slot, None, EventKind::RolledBack, reason, by).await
    }

    /// Rolls `slot` back if `from` (when given) is still the version serving.
    async fn roll_back_from(
        &self,
        slot: Slot,
        from: Option<i64>,
        kind: EventKind,
        reason: &str,
        by: Option<&str>,
    ) -> Result<i64, SwapError> {
        let _turn = self.swaps.turns[slot as usize].lock().await;
        let registry = &self.swaps.registry;
        let active = self.active_row(slot).await?.ok_or(SwapError::NothingToRestore(slot))?;
        if from.is_some_and(|from| from != active.version_id) {
            // Another change got there first.
            return Ok(active.version_id);
        }
        let target = registry.last_good_component_version(slot.name(), active.version_id).await?;
        let target = target.ok_or(SwapError::NothingToRestore(slot))?;
        let (left, restored) = (self.version_row(active.version_id).await?, self.version_row(target).await?);
        if kind == EventKind::AutoRolledBack {
            registry.mark_component_failed(left.id).await?;
        }
        let change = Change { source: Source::Rollback, by };
        let events = [
            self.event(kind, Some(left.id), &known_report(&left, None), change, Some(reason.to_owned())),
            self.event(EventKind::Activated, Some(target), &known_report(&restored, None), change, None),
        ];
        let expect = Expect::Serving(active.version_id);
        let source = name_of(Source::Rollback);
        if registry.activate_component_version(slot.name(), target, &source, expect, &events).await?.is_none() {
            return Ok(active.version_id);
        }
        tracing::warn!(slot = slot.name(), left = %left.component, restored = %restored.component,
            version = %restored.version, sha256 = %restored.sha256, %reason, by, "slot rolled back");
        self.follow_slot_in_turn(slot).await?;
        Ok(target)
    }

    async fn version_row(&self, id: i64) -> Result<VersionRow, SwapError> {
        let row = self.swaps.registry.component_version(id).await?;
        Ok(row.ok_or_else(|| StoreError::Corrupt(format!("component version {id} is missing")))?)
    }
}
