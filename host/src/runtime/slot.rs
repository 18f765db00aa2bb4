//! Slots, the components loaded into them, and the registry that swaps them
//! atomically.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::bindings::{fulfillment::FulfillmentPolicyPre, pricer::PricerPre, validator::OrderValidatorPre};
use super::call::CallState;
use super::slot_config::SlotConfig;
use super::stats::CallStats;

/// A place in the order flow where a component decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Accepts an order or lists its violations.
    Validation,
    /// Prices an order.
    Pricing,
    /// Ships, holds or rejects a stored order.
    Fulfillment,
}

impl Slot {
    /// Every slot, in the order an order meets them.
    pub const ALL: [Slot; 3] = [Slot::Validation, Slot::Pricing, Slot::Fulfillment];

    /// The slot's name, also its file name in the components folder.
    pub fn name(self) -> &'static str {
        match self {
            Slot::Validation => "validation",
            Slot::Pricing => "pricing",
            Slot::Fulfillment => "fulfillment",
        }
    }

    /// The WIT world a component must implement to fill this slot.
    pub fn world(self) -> &'static str {
        match self {
            Slot::Validation => "orderly:rules/order-validator@0.1.0",
            Slot::Pricing => "orderly:rules/pricer@0.1.0",
            Slot::Fulfillment => "orderly:rules/fulfillment-policy@0.1.0",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Slot {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Slot::ALL
            .into_iter()
            .find(|slot| slot.name() == name)
            .ok_or_else(|| format!("unknown slot {name:?}; expected validation, pricing or fulfillment"))
    }
}

/// Golden fixture files, by file name, with their bytes.
pub type FixtureFiles = Arc<[(String, Vec<u8>)]>;

/// A component compiled, linked and type-checked against its slot's world,
/// ready to be instantiated once per call.
#[derive(Clone)]
pub struct LoadedComponent {
    /// The slot it fills.
    pub slot: Slot,
    /// Its name, from `[component] name` or the slot.
    pub name: Arc<str>,
    /// Its version, from `[component] version`, or `unversioned`.
    pub version: Arc<str>,
    /// sha256 of the `.wasm`, hex.
    pub digest: Arc<str>,
    /// When it was loaded.
    pub loaded_at: DateTime<Utc>,
    /// Its limits, grants and settings.
    pub config: Arc<SlotConfig>,
    /// The `.toml` it was loaded with, as written.
    pub config_text: Option<Arc<str>>,
    /// The `.wasm` it was loaded from, kept so a rollback can put it back
    /// in the components folder.
    pub wasm: Arc<[u8]>,
    /// The golden fixture files (name, bytes) it passed at the gate, kept so
    /// a rollback puts them back beside it; `None` when it was loaded
    /// without fixtures.
    pub fixture_files: Option<FixtureFiles>,
    /// Its production calls (not the gate's fixture calls).
    pub stats: Arc<CallStats>,
    pub(crate) component: wasmtime::component::Component,
    pub(crate) pre: SlotPre,
}

impl LoadedComponent {
    /// The same code with other settings (its `[config]` table), as golden
    /// fixtures use to pin the settings they were written for.
    pub fn with_settings(&self, settings: std::collections::BTreeMap<String, String>) -> Self {
        let mut config = (*self.config).clone();
        config.config = settings;
        Self {
            slot: self.slot,
            name: self.name.clone(),
            version: self.version.clone(),
            digest: self.digest.clone(),
            loaded_at: self.loaded_at,
            config: Arc::new(config),
            config_text: self.config_text.clone(),
            wasm: self.wasm.clone(),
            fixture_files: self.fixture_files.clone(),
            // Calls with other settings are not this version's production calls.
            stats: Arc::default(),
            component: self.component.clone(),
            pre: self.pre.clone(),
        }
    }
}

impl fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("slot", &self.slot)
            .field("name", &self.name)
            .field("version", &self.version)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// The pre-instantiated component, typed by its slot's world.
#[derive(Clone)]
pub(crate) enum SlotPre {
    Validation(OrderValidatorPre<CallState>),
    Pricing(PricerPre<CallState>),
    Fulfillment(FulfillmentPolicyPre<CallState>),
}

/// The live component of every slot. Readers take a cheap snapshot (an `Arc`)
/// per call, so a call in flight keeps the version it started with while new
/// calls see a newly installed one.
#[derive(Default)]
pub struct SlotRegistry {
    slots: [ArcSwapOption<LoadedComponent>; 3],
}

impl SlotRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The component currently serving `slot`, if any.
    pub fn get(&self, slot: Slot) -> Option<Arc<LoadedComponent>> {
        self.slots[slot.index()].load_full()
    }

    /// Makes `component` the live version of its slot and returns the one it
    /// replaced.
    pub fn install(&self, component: LoadedComponent) -> Option<Arc<LoadedComponent>> {
        self.install_arc(Arc::new(component))
    }

    /// Like [`SlotRegistry::install`], for a component already shared.
    pub fn install_arc(&self, component: Arc<LoadedComponent>) -> Option<Arc<LoadedComponent>> {
        let slot = component.slot;
        self.slots[slot.index()].swap(Some(component))
    }
}

/// The file names of a slot in a components folder: `<slot>.wasm` and its
/// optional `<slot>.toml`.
pub fn slot_files(dir: &Path, slot: Slot) -> (std::path::PathBuf, std::path::PathBuf) {
    (dir.join(format!("{}.wasm", slot.name())), dir.join(format!("{}.toml", slot.name())))
}
