//! An alternative `fulfillment` policy, to swap in for the standard one:
//! everything ships next-day express from the warehouse of the customer's
//! region (order attribute `region`, mapped by the `warehouses` setting,
//! default `eu:ams,us:nyc`, anything else from `main`), and only orders above
//! `review_threshold` (default 500000) are held.

pub mod policy;

/// Generated from `wit/`: the `fulfillment-policy` world.
// Generated code: its shape is wit-bindgen's, not ours.
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({ world: "fulfillment-policy", path: "../../wit", generate_all });
}

use bindings::orderly::platform::{config, logging};
use bindings::orderly::rules::types::{Decision, Order, Quote};

struct Express;

impl bindings::Guest for Express {
    fn decide(order: Order, quote: Quote) -> Decision {
        let settings = policy::Settings::from_lookup(config::get).unwrap_or_else(|error| panic!("{error}"));
        let decision = policy::decide(&order, &quote, &settings);
        if let Decision::Ship(shipment) = &decision {
            logging::log(
                logging::Level::Info,
                "express shipment",
                &[logging::Field { key: "warehouse".into(), value: shipment.warehouse.clone() }],
            );
        }
        decision
    }
}

bindings::export!(Express with_types_in bindings);
