//! `orderly:platform/config`: the slot's own settings, read-only.

use crate::runtime::bindings::config::Host;
use crate::runtime::call::CallState;

impl Host for CallState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.config.config.get(&key).cloned())
    }
}
