//! The one place where the WIT contracts in `wit/` become Rust.
//!
//! The platform capabilities are generated once, then every slot world maps
//! them (and the shared domain types) with `with`, so each WIT type has exactly
//! one Rust type no matter which slot uses it.

/// Host capabilities: the imports-only `platform` world.
pub mod platform {
    wasmtime::component::bindgen!({
        world: "orderly:platform/platform@0.1.0",
        path: "../wit",
        // kv, sql and http do I/O and are async; config and logging never
        // wait, and a synchronous host call is markedly cheaper. Any of them
        // may trap when a host-side limit or invariant is breached.
        imports: {
            "orderly:platform/config.get": trappable,
            "orderly:platform/logging.log": trappable,
            default: async | trappable,
        },
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

/// The `validation` slot's world. Also the home of the shared domain types.
pub mod validator {
    wasmtime::component::bindgen!({
        world: "order-validator",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: { "orderly:platform": super::platform::orderly::platform },
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

/// The `pricing` slot's world.
pub mod pricer {
    wasmtime::component::bindgen!({
        world: "pricer",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "orderly:platform": super::platform::orderly::platform,
            "orderly:rules/types": super::validator::orderly::rules::types,
        },
    });
}

/// The `fulfillment` slot's world.
pub mod fulfillment {
    wasmtime::component::bindgen!({
        world: "fulfillment-policy",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "orderly:platform": super::platform::orderly::platform,
            "orderly:rules/types": super::validator::orderly::rules::types,
        },
    });
}

pub use platform::orderly::platform::{config, errors, http, kv, logging, sql};
pub use validator::orderly::rules::types;
