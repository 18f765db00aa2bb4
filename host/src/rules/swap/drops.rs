//! The components folder of the process that watches it (`host serve`):
//! what is dropped there is published to the registry and activated, and
//! the folder is kept showing the version that serves, so a restart (or an
//! author looking) finds it there.

use std::time::Duration;

use super::candidate::Candidate;
use super::gate::Fixtures;
use super::{Proposal, Source, SwapError, folder};
use crate::rules::Rules;
use crate::runtime::{LoadedComponent, Slot};

impl Rules {
    /// At start: publishes and activates the folder's version of each slot
    /// the registry has not seen (a first start, or a file dropped while
    /// the process was down); a file the registry knows already is history,
    /// and the registry's active version is written over it.
    pub async fn publish_folder_at_start(&self) -> Result<(), SwapError> {
        let Some(dir) = self.swaps.dir.clone() else { return Ok(()) };
        for slot in Slot::ALL {
            let candidate = match read_drop(&dir, slot).await {
                Ok(Some(candidate)) => candidate,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(slot = slot.name(), dir = %dir.display(), %error, "cannot read the components folder");
                    continue;
                }
            };
            let registry = &self.swaps.registry;
            let known = registry.component_version_by_fingerprint(slot.name(), &candidate.fingerprint()).await?;
            let first = self.active_row(slot).await?.is_none();
            if known.is_some() && !first {
                continue;
            }
            // Replacing a version, it is a new one on probation; the first one is known.
            let source = if first { Source::Startup } else { Source::Folder };
            if let Proposal::Rejected(report) = self.publish(slot, candidate, source, true).await? {
                tracing::error!(
                    slot = slot.name(),
                    reason = report.reason.as_deref().unwrap_or_default(),
                    "the component in the folder failed the gate; it was not published"
                );
            }
        }
        Ok(())
    }

    /// Publishes `slot`'s file if it changed since this process last saw or
    /// wrote it (files still being written are left for later).
    pub async fn sync_slot(&self, slot: Slot, settle: Duration) {
        let Some(dir) = self.swaps.dir.clone() else { return };
        // Read in the slot's turn: a change in progress (writing a version
        // back) is finished before the folder is looked at.
        let _turn = self.swaps.turns[slot as usize].lock().await;
        let candidate = match folder::read_settled_candidate(&dir, slot, settle).await {
            Ok(Some((wasm, config_text))) => {
                let fixtures = Fixtures::in_dir(&folder::fixtures_dir(&dir, slot));
                Candidate { wasm, config_text, fixtures }
            }
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(slot = slot.name(), %error, "cannot read the components folder");
                return;
            }
        };
        let fingerprint = candidate.fingerprint();
        if self.swaps.local(slot).folder_fingerprint.as_deref() == Some(fingerprint.as_str()) {
            return;
        }
        match self.publish_in_turn(slot, candidate, Source::Folder, true).await {
            Ok(Proposal::Rejected(_)) => {}
            Ok(_) => self.swaps.local(slot).folder_fingerprint = Some(fingerprint),
            Err(error) => tracing::warn!(slot = slot.name(), %error, "cannot publish the dropped component; retrying"),
        }
    }

    /// Makes the folder (if this process keeps one) show `component`, and
    /// remembers its files as seen.
    pub(super) async fn write_back(&self, component: &LoadedComponent) {
        let Some(dir) = &self.swaps.dir else { return };
        folder::write_back(dir, component).await;
        if let Ok(Some(written)) = read_drop(dir, component.slot).await {
            self.swaps.local(component.slot).folder_fingerprint = Some(written.fingerprint());
        }
    }
}

/// The folder's version of `slot`: its `.wasm`, `.toml` and fixtures.
async fn read_drop(dir: &std::path::Path, slot: Slot) -> std::io::Result<Option<Candidate>> {
    let Some((wasm, config_text)) = folder::read_candidate(dir, slot).await? else { return Ok(None) };
    let fixtures = Fixtures::in_dir(&folder::fixtures_dir(dir, slot));
    Ok(Some(Candidate { wasm, config_text, fixtures }))
}
