//! The `pricing` slot's default component.
//!
//! - each line costs `unit_price * quantity`;
//! - a volume discount by total units (`volume_tiers`, default 10 units: 5 %,
//!   50 units: 10 %) or a promo code (order attribute `promo_code`, looked up in
//!   `kv` as `promo:<CODE>` holding basis points), whichever is larger: they do
//!   not stack;
//! - tax (`tax_rate_bp`) on the discounted subtotal, rounded half up;
//! - flat shipping (`shipping_flat`), free from `free_shipping_threshold`.
//!
//! All arithmetic is on integer minor units, checked for overflow.

pub mod rules;

/// Generated from `wit/`: the `pricer` world.
// Generated code: its shape is wit-bindgen's, not ours.
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({ world: "pricer", path: "../../wit", generate_all });
}

use bindings::orderly::platform::errors::Error;
use bindings::orderly::platform::{config, kv, logging};
use bindings::orderly::rules::types::{Order, Quote, Violation};

struct Pricing;

impl bindings::Guest for Pricing {
    fn price(order: Order) -> Result<Quote, Vec<Violation>> {
        let settings = rules::Settings::from_lookup(config::get).unwrap_or_else(|error| panic!("{error}"));
        let promo = match rules::promo_code(&order) {
            Some(code) => Some(look_up_promo(&code)?),
            None => None,
        };
        let quote = rules::price(&order, &settings, promo.as_ref())?;
        logging::log(
            logging::Level::Debug,
            "priced order",
            &[
                logging::Field { key: "total".into(), value: quote.total.to_string() },
                logging::Field { key: "discount".into(), value: quote.discount.to_string() },
            ],
        );
        Ok(quote)
    }
}

/// Resolves a promo code. Whatever the customer sends is answered with a
/// quote or a violation, never a trap: a malformed code, an unknown one and
/// one whose stored value is unusable are violations. Only a store that
/// cannot answer fails the pricing step (the host answers 503 and does not
/// count it against this version: the outage is not the component's).
fn look_up_promo(code: &str) -> Result<rules::Promo, Vec<Violation>> {
    rules::check_promo_code(code)?;
    match kv::get(&format!("promo:{code}")) {
        Ok(Some(value)) => rules::parse_promo(code, &value).map_err(|violation| {
            logging::log(
                logging::Level::Error,
                "promo code holds an unusable value",
                &[
                    logging::Field { key: "code".into(), value: code.into() },
                    logging::Field { key: "value".into(), value },
                ],
            );
            vec![violation]
        }),
        Ok(None) => Err(vec![rules::promo_violation(
            "unknown-promo-code",
            format!("promo code {code} does not exist or has expired"),
        )]),
        Err(Error::Invalid(reason)) => Err(vec![rules::promo_violation("invalid-promo-code", reason)]),
        Err(error) => panic!("cannot look up promo code {code}: {error:?}"),
    }
}

bindings::export!(Pricing with_types_in bindings);
