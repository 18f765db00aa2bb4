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
            if let Proposal::Rejected(report) = self.publish(slot, candidate, source.into(), true).await? {
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
        let previous = self.swaps.local(slot).folder_fingerprint.replace(fingerprint.clone());
        if previous.as_deref() == Some(fingerprint.as_str()) {
            return;
        }
        // Seen from here on: serving it writes nothing back over the drop.
        if let Err(error) = self.publish_in_turn(slot, candidate, Source::Folder.into(), true).await {
            tracing::warn!(slot = slot.name(), %error, "cannot publish the dropped component; retrying");
            self.swaps.local(slot).folder_fingerprint = previous;
        }
    }

    /// Makes the folder (if this process keeps one) show `component`, the
    /// registry's version with `fingerprint`, unless the folder shows it
    /// already: a drop being published is not written over (the author may
    /// be dropping the next one meanwhile). The files are remembered as seen.
    pub(super) async fn write_back(&self, component: &LoadedComponent, fingerprint: Option<&str>) {
        let Some(dir) = &self.swaps.dir else { return };
        let slot = component.slot;
        if fingerprint.is_some() && self.swaps.local(slot).folder_fingerprint.as_deref() == fingerprint {
            return;
        }
        folder::write_back(dir, component).await;
        let seen = match fingerprint {
            Some(fingerprint) => Some(fingerprint.to_owned()),
            None => read_drop(dir, slot).await.ok().flatten().map(|written| written.fingerprint()),
        };
        self.swaps.local(slot).folder_fingerprint = seen;
    }
}

/// The folder's version of `slot`: its `.wasm`, `.toml` and fixtures.
async fn read_drop(dir: &std::path::Path, slot: Slot) -> std::io::Result<Option<Candidate>> {
    let Some((wasm, config_text)) = folder::read_candidate(dir, slot).await? else { return Ok(None) };
    let fixtures = Fixtures::in_dir(&folder::fixtures_dir(dir, slot));
    Ok(Some(Candidate { wasm, config_text, fixtures }))
}
