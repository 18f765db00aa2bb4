//! The business rules as the rest of the service sees them: `validate`,
//! `price` and `decide` in the service's own types, each answering with the
//! decision record of the version that decided. Behind them: the runtime
//! that runs the components, the slots that hold them, and the hot-swap
//! machinery (gate, probation, rollback, history) in [`swap`].
//!
//! Every call takes the same steps: the slot's current version, the call,
//! its statistics (and probation), the mapping of its error, the record.

pub mod mapping;
pub mod swap;

use std::sync::Arc;
use std::time::Instant;

use crate::domain::ComponentRecord;
use crate::domain::OrderDetail;
use crate::domain::decision::{DraftOrder, FulfillmentDecision, Quote};
use crate::domain::input::Violation;
use crate::runtime::{CallContext, CallError, CallOutput, LoadedComponent, Runtime, Slot, SlotRegistry};
pub use mapping::Unrepresentable;
pub use swap::{RollbackPolicy, Swaps};

/// A rule's answer with the record of the version that gave it.
#[derive(Debug, Clone)]
pub struct Decided<T> {
    pub value: T,
    pub record: ComponentRecord,
}

/// Why a rule gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// No version serves the slot.
    #[error("the {slot} slot is empty")]
    Empty { slot: Slot },
    /// The call failed: the version's fault (trap, deadline, memory,
    /// malformed answer) or the platform's (no free instance, a backend down).
    #[error("{component} ({kind}): {cause}")]
    Failed { slot: Slot, component: String, kind: &'static str, cause: String, component_fault: bool },
    /// The order holds a value the component interface cannot carry.
    #[error("{0}")]
    Unrepresentable(#[from] Unrepresentable),
}

impl RuleError {
    /// Whether the version itself failed (what probation and job attempts count).
    pub fn is_component_fault(&self) -> bool {
        matches!(self, RuleError::Failed { component_fault: true, .. })
    }
}

/// The rule slots, the runtime they run on, and their swap state.
pub struct Rules {
    runtime: Runtime,
    slots: SlotRegistry,
    swaps: Swaps,
}

impl Rules {
    /// Empty slots on `runtime`; versions come in through [`Rules::propose`].
    pub fn new(runtime: Runtime, swaps: Swaps) -> Self {
        Self { runtime, slots: SlotRegistry::new(), swaps }
    }

    /// The runtime (loading components outside the gate: tests, tools).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// What serves each slot now.
    pub fn slots(&self) -> &SlotRegistry {
        &self.slots
    }

    /// The hot-swap state.
    pub fn swaps(&self) -> &Swaps {
        &self.swaps
    }

    /// The validation rule's violations of an order on its way in (none: accepted).
    pub async fn validate(
        self: &Arc<Self>,
        context: &CallContext,
        order: &DraftOrder,
    ) -> Result<Decided<Vec<Violation>>, RuleError> {
        let order = mapping::draft_order(order)?;
        let decided = self
            .call(Slot::Validation, async |runtime, component| runtime.validate(component, context, &order).await)
            .await?;
        Ok(decided.map(|violations| violations.iter().map(mapping::violation).collect()))
    }

    /// The pricing rule's quote of an order whose lines carry the
    /// catalogue's names and prices, or its violations.
    pub async fn price(
        self: &Arc<Self>,
        context: &CallContext,
        order: &DraftOrder,
    ) -> Result<Decided<Result<Quote, Vec<Violation>>>, RuleError> {
        let order = mapping::draft_order(order)?;
        let decided = self
            .call(Slot::Pricing, async |runtime, component| runtime.price(component, context, &order).await)
            .await?;
        Ok(decided.map(|priced| match priced {
            Ok(quote) => mapping::quote(&quote).map_err(|violation| vec![violation]),
            Err(violations) => Err(violations.iter().map(mapping::violation).collect()),
        }))
    }

    /// The fulfillment policy's decision for a stored order.
    pub async fn decide(
        self: &Arc<Self>,
        context: &CallContext,
        order: &OrderDetail,
    ) -> Result<Decided<FulfillmentDecision>, RuleError> {
        let (order, quote) = mapping::stored_order(order)?;
        let decided = self
            .call(Slot::Fulfillment, async |runtime, component| {
                runtime.decide(component, context, &order, &quote).await
            })
            .await?;
        Ok(decided.map(|decision| mapping::decision(&decision)))
    }

    /// One call of `slot`'s current version: timed, observed (probation),
    /// its error mapped, its record made.
    async fn call<T>(
        self: &Arc<Self>,
        slot: Slot,
        call: impl AsyncFnOnce(&Runtime, &LoadedComponent) -> Result<CallOutput<T>, CallError>,
    ) -> Result<Decided<T>, RuleError> {
        let component = self.slots.get(slot).ok_or(RuleError::Empty { slot })?;
        let started = Instant::now();
        let output = call(&self.runtime, &component).await;
        self.observe_call(&component, started.elapsed(), output.as_ref().err());
        match output {
            Ok(output) => Ok(Decided { record: record(&component, &output), value: output.value }),
            Err(error) => Err(RuleError::Failed {
                slot,
                component: format!("{}@{}", component.name, component.version),
                kind: error.kind(),
                component_fault: error.is_component_fault(),
                cause: error.to_string(),
            }),
        }
    }
}

impl<T> Decided<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Decided<U> {
        Decided { value: f(self.value), record: self.record }
    }
}

fn record<T>(component: &LoadedComponent, output: &CallOutput<T>) -> ComponentRecord {
    ComponentRecord {
        slot: component.slot.name().into(),
        component: component.name.to_string(),
        version: component.version.to_string(),
        digest: component.digest.to_string(),
        duration_us: i64::try_from(output.elapsed.as_micros()).unwrap_or(i64::MAX),
        at: crate::domain::now(),
    }
}
