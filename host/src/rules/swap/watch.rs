//! Watches the components folder: a `<slot>.wasm` or `<slot>.toml` that
//! appears or changes is proposed for its slot once the folder has been
//! quiet for the debounce interval. A periodic look catches what a file
//! system's notifications miss (some network and container mounts send none).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;

use super::folder::slot_of;
use crate::rules::Rules;
use crate::runtime::Slot;

/// How often the folder is looked at without a notification.
const RESCAN: Duration = Duration::from_secs(5);

/// Watches until `stop`; `debounce` is how long the folder must be quiet.
/// A process without a folder (a worker) has nothing to watch.
pub async fn watch(rules: Arc<Rules>, debounce: Duration, stop: CancellationToken) {
    let Some(dir) = rules.swaps().dir.clone() else { return };
    let (sender, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            for path in event.paths {
                let _ = sender.send(path);
            }
        }
    });
    // Without notifications the periodic look still finds every change, later.
    let _watcher = match watcher
        .and_then(|mut watcher| watcher.watch(&dir, RecursiveMode::NonRecursive).map(|()| watcher))
    {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot watch the components folder; looking every 5 s instead");
            None
        }
    };
    tracing::info!(dir = %dir.display(), "watching the components folder");
    let mut pending: BTreeSet<Slot> = BTreeSet::new();
    let quiet = tokio::time::sleep(debounce);
    tokio::pin!(quiet);
    let mut rescan = tokio::time::interval(RESCAN);
    rescan.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            Some(path) = changes.recv() => {
                if let Some(slot) = slot_of(&path) {
                    pending.insert(slot);
                    quiet.as_mut().reset(tokio::time::Instant::now() + debounce);
                }
            }
            () = &mut quiet, if !pending.is_empty() => {
                for slot in std::mem::take(&mut pending) {
                    rules.sync_slot(slot, debounce).await;
                }
            }
            _ = rescan.tick() => {
                for slot in Slot::ALL {
                    rules.sync_slot(slot, debounce).await;
                }
            }
        }
    }
}
