//! Hot swap across a deployment. Every version of every slot's component
//! lives in the component registry (in the database): content addressed,
//! with its `.toml`, its golden fixtures and the gate's report. Per slot the
//! registry names the version that serves; every process (`host serve`,
//! each `host worker`) follows it for the slots it calls (a worker only
//! `fulfillment`), notified by the database and looking
//! again periodically, and gates each version itself (compile, fit the
//! slot's world, answer its fixtures) before swapping it in atomically:
//! calls in flight finish on the version they started with.
//!
//! A new version is on probation for its first calls across all processes;
//! if too many fail, the registry goes back to the last good version and
//! every process follows. An operator's rollback is the same change.
//!
//! Ways in: the admin API, `host component push`, and the components folder
//! of the process that watches it (it publishes what is dropped there, and
//! is kept showing what serves: a rejected file is set aside as
//! `<slot>.rejected.wasm`, and the active version is written back).

pub mod candidate;
mod drops;
pub mod folder;
mod follow;
pub mod gate;
mod probation;
mod publish;
mod view;
pub mod watch;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::runtime::stats::{CallStats, StatsSnapshot};
use crate::runtime::{LoadedComponent, Slot};
use crate::store::{Store, StoreError};
pub use candidate::Candidate;
pub use follow::follow;
pub use gate::{FixtureResult, GateReport};
pub use view::{ProcessStatus, ServedVersion, SlotHistoryView, SlotStatus, VersionStatus, VersionView};

/// When a new version is rolled back by itself.
#[derive(Debug, Clone, Copy)]
pub struct RollbackPolicy {
    /// How many first calls (across all processes) a new version is judged on.
    pub window: u64,
    /// The failure rate over those calls that sends the slot back.
    pub failure_rate: f64,
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        Self { window: 20, failure_rate: 0.5 }
    }
}

/// Where a version, or its activation, came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Found in the components folder at start-up.
    Startup,
    /// Dropped into the components folder while running.
    Folder,
    /// Uploaded through the admin API.
    Upload,
    /// Pushed with `host component push`.
    Cli,
    /// Restored by a rollback.
    Rollback,
}

/// Where a change of a slot came from, and who asked for it: an operator's
/// token (its `client_id`, else its `sub`) for the admin API, nobody in
/// particular for the folder, the command line or the rollback policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change<'a> {
    pub source: Source,
    pub by: Option<&'a str>,
}

impl<'a> Change<'a> {
    /// A change `by` an authenticated caller.
    pub fn by(source: Source, actor: &'a str) -> Self {
        Self { source, by: Some(actor) }
    }
}

impl From<Source> for Change<'_> {
    fn from(source: Source) -> Self {
        Self { source, by: None }
    }
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

/// The kebab-case name serde gives a unit variant, for the database.
fn name_of(value: impl Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|value| value.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The variant a stored kebab-case name stands for.
fn parse_name<T: for<'de> Deserialize<'de>>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

/// One entry of a slot's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SlotEvent {
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    /// The registry's id of the version concerned (absent for a rejected candidate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<i64>,
    /// The version concerned (the candidate, or the version left behind).
    pub component: String,
    pub version: String,
    pub sha256: String,
    pub source: Source,
    /// Why (a rejection or a rollback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The process (or tool) that made the change.
    pub added_by: String,
}

/// The slots a process in `role` calls, and so loads and follows: a
/// `host worker` only decides fulfillment (loading validation and pricing
/// there would cost every pricing swap a compile in every worker, for
/// nothing); `host serve` validates and prices, and decides with its own
/// workers.
pub fn slots_of_role(role: &str) -> &'static [Slot] {
    match role {
        "worker" => &[Slot::Fulfillment],
        _ => &Slot::ALL,
    }
}

/// Who this process is, as the registry lists it.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    /// Unique per start.
    pub id: String,
    /// `serve` or `worker`.
    pub role: &'static str,
    pub host: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
}

impl ProcessInfo {
    /// This process, in `role`.
    pub fn current(role: &'static str) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            role,
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id(),
            started_at: Utc::now(),
        }
    }

    /// How its changes are signed in the registry.
    fn signature(&self) -> String {
        format!("{} {} on {} (pid {})", self.role, &self.id[..8], self.host, self.pid)
    }
}

/// A registry version serving here.
struct Serving {
    version_id: i64,
    component: Arc<LoadedComponent>,
    /// Its production calls here still go to the registry's probation count.
    on_probation: Arc<AtomicBool>,
}

/// What this process serves for a slot, and why not the registry's
/// version when it cannot.
#[derive(Default)]
struct LocalSlot {
    serving: Option<Serving>,
    /// The registry's active version that failed this process's gate, with why.
    refused: Option<(i64, String)>,
    /// Versions loaded here lately (a rollback or a swap back loads none again).
    recent: Vec<(i64, Arc<LoadedComponent>)>,
    /// The folder's files as this process last saw or wrote them: a
    /// fingerprint that differs is a drop to publish, one that does not is
    /// the folder lagging behind the registry.
    folder_fingerprint: Option<String>,
}

/// Versions kept loaded per slot besides the one serving.
const RECENT_VERSIONS: usize = 4;

/// Hot-swap state: the registry, what this process serves, the turn of
/// each slot (changes of one slot never interleave), the rollback policy.
pub struct Swaps {
    registry: Store,
    /// The components folder this process publishes from and writes back
    /// to (`host serve`); workers follow the registry only.
    pub dir: Option<PathBuf>,
    pub policy: RollbackPolicy,
    /// How long a process may take to serve a slot's new version before
    /// the admin API flags it.
    pub converge_within: std::time::Duration,
    process: ProcessInfo,
    local: [Mutex<LocalSlot>; 3],
    turns: [tokio::sync::Mutex<()>; 3],
    /// Set once the registry's active versions were first looked at.
    loaded: AtomicBool,
    /// The slots this process loads and follows.
    followed: &'static [Slot],
}

impl Swaps {
    /// Swap state over the registry in `registry`, for `process`.
    pub fn new(
        registry: Store,
        dir: Option<PathBuf>,
        settings: &crate::config::SwapSettings,
        process: ProcessInfo,
    ) -> Self {
        Self {
            followed: slots_of_role(process.role),
            registry,
            dir,
            policy: settings.policy(),
            converge_within: std::time::Duration::from_millis(settings.converge_within_ms),
            process,
            local: Default::default(),
            turns: Default::default(),
            loaded: AtomicBool::new(false),
        }
    }

    fn local(&self, slot: Slot) -> std::sync::MutexGuard<'_, LocalSlot> {
        self.local[slot as usize].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// This process, as the registry knows it.
    pub fn process(&self) -> &ProcessInfo {
        &self.process
    }

    /// The slots this process loads and follows (its role's).
    pub fn followed(&self) -> &'static [Slot] {
        self.followed
    }

    /// Whether this process has loaded the registry's active versions once.
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }
}

/// What became of a proposed component.
#[derive(Debug, Clone)]
pub enum Proposal {
    /// It passed the gate and serves now.
    Activated(GateReport),
    /// It passed the gate and is kept in the registry, not activated.
    Stored { version_id: i64, report: GateReport },
    /// It failed the gate; the slot kept its version.
    Rejected(GateReport),
    /// It is the version serving already.
    Unchanged,
}

/// Why a change of a slot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("the {0} slot has no earlier good version to go back to")]
    NothingToRestore(Slot),
    #[error("the {slot} slot has no version {id}")]
    UnknownVersion { slot: Slot, id: i64 },
    #[error("the component registry: {0}")]
    Registry(#[from] StoreError),
}
