//! `orderly:platform/kv`: a key-value store namespaced per slot. Redis in
//! production, an in-process map in the embedded default and in tests. Each
//! namespace has a budget (key and value bytes plus a per-entry overhead):
//! a component flooding the store fills its own namespace, never the store
//! the service and the other slots depend on.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;

pub use memory::MemoryKv;
pub use redis::RedisKv;

use crate::runtime::bindings::errors::Error;
use crate::runtime::bindings::kv::Host;
use crate::runtime::call::{CallState, UseOutcome};

/// Longest key a component may use (before the host's prefix).
const MAX_KEY_BYTES: usize = 512;
/// What an entry costs against a budget beyond its key and value bytes.
pub const ENTRY_OVERHEAD_BYTES: u64 = 64;

/// A namespace of the store: the prefix of its keys and its budget.
#[derive(Debug, Clone, Copy)]
pub struct KvSpace<'a> {
    /// Every key in it starts with this (`kv:<prefix>:`).
    pub prefix: &'a str,
    /// The most it may hold, in key and value bytes plus the overhead per entry.
    pub max_bytes: u64,
}

/// What an entry of `key` holding `value` bytes costs against its budget.
pub fn entry_cost(key: &str, value_bytes: usize) -> u64 {
    (key.len() + value_bytes) as u64 + ENTRY_OVERHEAD_BYTES
}

/// A key-value store. Keys reaching a backend are already namespaced.
#[async_trait]
pub trait KvBackend: Send + Sync {
    /// The value under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<String>, Error>;
    /// Stores `value` under `key` in `space`, optionally expiring after
    /// `ttl`; `limit-exceeded` when the space's budget would be passed.
    async fn set(&self, space: KvSpace<'_>, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), Error>;
    /// Adds `delta`; sets `ttl` when the key has no expiry yet.
    async fn incr(&self, space: KvSpace<'_>, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, Error>;
    /// Deletes `key`; whether it existed.
    async fn delete(&self, space: KvSpace<'_>, key: &str) -> Result<bool, Error>;
}

/// A key the grant allows, with its namespace.
struct GrantedKey {
    prefix: String,
    full: String,
    max_bytes: u64,
}

impl GrantedKey {
    fn space(&self) -> KvSpace<'_> {
        KvSpace { prefix: &self.prefix, max_bytes: self.max_bytes }
    }
}

impl CallState {
    /// Checks the grant and the key; returns the namespaced key.
    fn kv_key(&mut self, capability: &'static str, key: &str) -> Result<GrantedKey, Error> {
        let Some(grant) = &self.config.grants.kv else {
            self.record(capability, key, UseOutcome::Denied);
            return Err(Error::Denied(format!("the {} slot has no kv grant", self.info.slot)));
        };
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            self.record(capability, key, UseOutcome::Failed);
            return Err(Error::Invalid(format!("keys must be 1 to {MAX_KEY_BYTES} bytes long")));
        }
        let prefix = format!("kv:{}:", grant.prefix.as_deref().unwrap_or(self.info.slot.name()));
        let full = format!("{prefix}{key}");
        Ok(GrantedKey { prefix, full, max_bytes: grant.max_bytes })
    }

    /// Runs a store operation within the grant's timeout: a store that does
    /// not answer in time is `timeout`, and the component has the rest of
    /// its deadline to carry on without it. The future does not borrow
    /// `self`: the WASI context is not `Sync`, so a future holding `&self`
    /// could not move between threads.
    fn kv_io<T>(&self, work: impl Future<Output = Result<T, Error>>) -> impl Future<Output = Result<T, Error>> {
        let limit = Duration::from_millis(self.config.grants.kv.as_ref().map_or(0, |grant| grant.timeout_ms).max(1));
        async move { tokio::time::timeout(limit, work).await.unwrap_or(Err(Error::Timeout)) }
    }

    fn kv_outcome<T>(&mut self, capability: &'static str, key: &str, result: Result<T, Error>) -> Result<T, Error> {
        let outcome = if result.is_ok() { UseOutcome::Ok } else { UseOutcome::Failed };
        if let Err(error @ (Error::Unavailable(_) | Error::Timeout)) = &result {
            self.note_backend_failure("kv", error);
        }
        self.record(capability, key, outcome);
        result
    }
}

fn ttl(seconds: Option<u32>) -> Option<Duration> {
    seconds.filter(|&s| s > 0).map(|s| Duration::from_secs(u64::from(s)))
}

impl Host for CallState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, Error>> {
        let granted = match self.kv_key("kv.get", &key) {
            Ok(granted) => granted,
            Err(error) => return Ok(Err(error)),
        };
        let kv = self.capabilities.kv.clone();
        let result = self.kv_io(kv.get(&granted.full)).await;
        Ok(self.kv_outcome("kv.get", &key, result))
    }

    async fn set(
        &mut self,
        key: String,
        value: String,
        ttl_seconds: Option<u32>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let granted = match self.kv_key("kv.set", &key) {
            Ok(granted) => granted,
            Err(error) => return Ok(Err(error)),
        };
        let max = self.config.grants.kv.as_ref().map_or(0, |grant| grant.max_value_bytes);
        if value.len() > max {
            self.record("kv.set", &key, UseOutcome::Failed);
            return Ok(Err(Error::LimitExceeded(format!("values are capped at {max} bytes"))));
        }
        let kv = self.capabilities.kv.clone();
        let result = self.kv_io(kv.set(granted.space(), &granted.full, &value, ttl(ttl_seconds))).await;
        Ok(self.kv_outcome("kv.set", &key, result))
    }

    async fn incr(
        &mut self,
        key: String,
        delta: i64,
        ttl_seconds: Option<u32>,
    ) -> wasmtime::Result<Result<i64, Error>> {
        let granted = match self.kv_key("kv.incr", &key) {
            Ok(granted) => granted,
            Err(error) => return Ok(Err(error)),
        };
        let kv = self.capabilities.kv.clone();
        let result = self.kv_io(kv.incr(granted.space(), &granted.full, delta, ttl(ttl_seconds))).await;
        Ok(self.kv_outcome("kv.incr", &key, result))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, Error>> {
        let granted = match self.kv_key("kv.delete", &key) {
            Ok(granted) => granted,
            Err(error) => return Ok(Err(error)),
        };
        let kv = self.capabilities.kv.clone();
        let result = self.kv_io(kv.delete(granted.space(), &granted.full)).await;
        Ok(self.kv_outcome("kv.delete", &key, result))
    }
}
