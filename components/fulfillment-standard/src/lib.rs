//! The `fulfillment` slot's default policy: ship every order from the default
//! warehouse by standard post, hold orders above `review_threshold` (minor
//! units, default 100000) for a human, and reject an order with nothing to ship.

pub mod policy;

/// Generated from `wit/`: the `fulfillment-policy` world.
// Generated code: its shape is wit-bindgen's, not ours.
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({ world: "fulfillment-policy", path: "../../wit", generate_all });
}

use bindings::orderly::platform::{config, logging};
use bindings::orderly::rules::types::{Decision, Order, Quote};

struct Standard;

impl bindings::Guest for Standard {
    fn decide(order: Order, quote: Quote) -> Decision {
        let settings = policy::Settings::from_lookup(config::get).unwrap_or_else(|error| panic!("{error}"));
        let decision = policy::decide(&order, &quote, &settings);
        let outcome = match &decision {
            Decision::Ship(shipment) => format!("ship from {}", shipment.warehouse),
            Decision::Hold(reason) => format!("hold: {reason}"),
            Decision::Reject(reason) => format!("reject: {reason}"),
        };
        logging::log(logging::Level::Info, &outcome, &[]);
        decision
    }
}

bindings::export!(Standard with_types_in bindings);
