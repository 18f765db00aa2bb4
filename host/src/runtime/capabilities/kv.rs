//! `orderly:platform/kv`: a key-value store namespaced per slot. Redis in
//! production, an in-process map in the embedded default and in tests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use crate::runtime::bindings::errors::Error;
use crate::runtime::bindings::kv::Host;
use crate::runtime::call::{CallState, UseOutcome};

/// Longest key a component may use (before the host's prefix).
const MAX_KEY_BYTES: usize = 512;

/// A key-value store. Keys reaching a backend are already namespaced.
#[async_trait]
pub trait KvBackend: Send + Sync {
    /// The value under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<String>, Error>;
    /// Stores `value`, optionally expiring after `ttl`.
    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), Error>;
    /// Adds `delta`; sets `ttl` only when this call created the key.
    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, Error>;
    /// Deletes `key`; whether it existed.
    async fn delete(&self, key: &str) -> Result<bool, Error>;
}

/// Redis through a self-reconnecting connection.
pub struct RedisKv {
    connection: ConnectionManager,
    namespace: String,
}

impl RedisKv {
    /// Uses an established connection manager.
    pub fn new(connection: ConnectionManager) -> Self {
        Self { connection, namespace: String::new() }
    }

    /// Prefixes every key with `namespace`, so deployments (or tests) sharing
    /// one Redis keep apart.
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_owned();
        self
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.namespace)
    }
}

fn redis_error(error: redis::RedisError) -> Error {
    if error.is_timeout() {
        return Error::Timeout;
    }
    match error.kind() {
        redis::ErrorKind::Server(_) if error.to_string().contains("not an integer") => {
            Error::Invalid("the value is not an integer".into())
        }
        _ => Error::Unavailable(format!("redis: {}", error.category())),
    }
}

#[async_trait]
impl KvBackend for RedisKv {
    async fn get(&self, key: &str) -> Result<Option<String>, Error> {
        let mut connection = self.connection.clone();
        redis::cmd("GET").arg(self.key(key)).query_async(&mut connection).await.map_err(redis_error)
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), Error> {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("SET");
        command.arg(self.key(key)).arg(value);
        if let Some(ttl) = ttl {
            command.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        command.query_async::<()>(&mut connection).await.map_err(redis_error)
    }

    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, Error> {
        let mut connection = self.connection.clone();
        let key = self.key(key);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("INCRBY").arg(&key).arg(delta);
        if let Some(ttl) = ttl {
            // NX: only a key without an expiry gets one, so a fixed window is
            // not extended by every increment.
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl.as_millis().max(1) as u64).arg("NX").ignore();
        }
        let (value,): (i64,) = pipe.query_async(&mut connection).await.map_err(redis_error)?;
        Ok(value)
    }

    async fn delete(&self, key: &str) -> Result<bool, Error> {
        let mut connection = self.connection.clone();
        let removed: i64 =
            redis::cmd("DEL").arg(self.key(key)).query_async(&mut connection).await.map_err(redis_error)?;
        Ok(removed > 0)
    }
}

/// An in-process map with expiry, for the embedded default and for tests.
/// Bounded: past `max_entries` live keys, new keys are refused.
pub struct MemoryKv {
    entries: Mutex<HashMap<String, (String, Option<Instant>)>>,
    max_entries: usize,
}

impl Default for MemoryKv {
    fn default() -> Self {
        Self { entries: Mutex::new(HashMap::new()), max_entries: 100_000 }
    }
}

impl MemoryKv {
    /// Seeds a value, as a test or fixture would.
    pub fn insert(&self, key: impl Into<String>, value: impl Into<String>) {
        self.entries.lock().unwrap().insert(key.into(), (value.into(), None));
    }

    /// A snapshot of every live key and value, for assertions.
    pub fn snapshot(&self) -> HashMap<String, String> {
        let now = Instant::now();
        let entries = self.entries.lock().unwrap();
        entries
            .iter()
            .filter(|(_, (_, expiry))| expiry.is_none_or(|at| at > now))
            .map(|(key, (value, _))| (key.clone(), value.clone()))
            .collect()
    }

    fn live<'a>(
        entries: &'a mut HashMap<String, (String, Option<Instant>)>,
        key: &str,
    ) -> Option<&'a mut (String, Option<Instant>)> {
        let now = Instant::now();
        if entries.get(key).is_some_and(|(_, expiry)| expiry.is_some_and(|at| at <= now)) {
            entries.remove(key);
        }
        entries.get_mut(key)
    }

    fn make_room(&self, entries: &mut HashMap<String, (String, Option<Instant>)>, key: &str) -> Result<(), Error> {
        if entries.len() >= self.max_entries && !entries.contains_key(key) {
            let now = Instant::now();
            entries.retain(|_, (_, expiry)| expiry.is_none_or(|at| at > now));
            if entries.len() >= self.max_entries {
                return Err(Error::LimitExceeded(format!(
                    "the embedded store holds at most {} keys",
                    self.max_entries
                )));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl KvBackend for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<String>, Error> {
        let mut entries = self.entries.lock().unwrap();
        Ok(Self::live(&mut entries, key).map(|(value, _)| value.clone()))
    }

    async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), Error> {
        let mut entries = self.entries.lock().unwrap();
        self.make_room(&mut entries, key)?;
        entries.insert(key.to_string(), (value.to_string(), ttl.map(|ttl| Instant::now() + ttl)));
        Ok(())
    }

    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, Error> {
        let mut entries = self.entries.lock().unwrap();
        if let Some((value, _)) = Self::live(&mut entries, key) {
            let current: i64 = value.parse().map_err(|_| Error::Invalid("the value is not an integer".into()))?;
            let next = current.checked_add(delta).ok_or_else(|| Error::Invalid("increment overflows".into()))?;
            *value = next.to_string();
            return Ok(next);
        }
        self.make_room(&mut entries, key)?;
        entries.insert(key.to_string(), (delta.to_string(), ttl.map(|ttl| Instant::now() + ttl)));
        Ok(delta)
    }

    async fn delete(&self, key: &str) -> Result<bool, Error> {
        let mut entries = self.entries.lock().unwrap();
        let existed = Self::live(&mut entries, key).is_some();
        entries.remove(key);
        Ok(existed)
    }
}

impl CallState {
    /// Checks the grant and the key; returns the namespaced key.
    fn kv_key(&mut self, capability: &'static str, key: &str) -> Result<String, Error> {
        let Some(grant) = &self.config.grants.kv else {
            self.record(capability, key, UseOutcome::Denied);
            return Err(Error::Denied(format!("the {} slot has no kv grant", self.info.slot)));
        };
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            self.record(capability, key, UseOutcome::Failed);
            return Err(Error::Invalid(format!("keys must be 1 to {MAX_KEY_BYTES} bytes long")));
        }
        let prefix = grant.prefix.as_deref().unwrap_or(self.info.slot.name());
        Ok(format!("kv:{prefix}:{key}"))
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
        let full = match self.kv_key("kv.get", &key) {
            Ok(full) => full,
            Err(error) => return Ok(Err(error)),
        };
        let kv = self.capabilities.kv.clone();
        let result = self.kv_io(kv.get(&full)).await;
        Ok(self.kv_outcome("kv.get", &key, result))
    }

    async fn set(
        &mut self,
        key: String,
        value: String,
        ttl_seconds: Option<u32>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let full = match self.kv_key("kv.set", &key) {
            Ok(full) => full,
            Err(error) => return Ok(Err(error)),
        };
        let max = self.config.grants.kv.as_ref().map_or(0, |grant| grant.max_value_bytes);
        if value.len() > max {
            self.record("kv.set", &key, UseOutcome::Failed);
            return Ok(Err(Error::LimitExceeded(format!("values are capped at {max} bytes"))));
        }
        let kv = self.capabilities.kv.clone();
        let result = self.kv_io(kv.set(&full, &value, ttl(ttl_seconds))).await;
        Ok(self.kv_outcome("kv.set", &key, result))
    }

    async fn incr(
        &mut self,
        key: String,
        delta: i64,
        ttl_seconds: Option<u32>,
    ) -> wasmtime::Result<Result<i64, Error>> {
        let full = match self.kv_key("kv.incr", &key) {
            Ok(full) => full,
            Err(error) => return Ok(Err(error)),
        };
        let kv = self.capabilities.kv.clone();
        let result = self.kv_io(kv.incr(&full, delta, ttl(ttl_seconds))).await;
        Ok(self.kv_outcome("kv.incr", &key, result))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, Error>> {
        let full = match self.kv_key("kv.delete", &key) {
            Ok(full) => full,
            Err(error) => return Ok(Err(error)),
        };
        let kv = self.capabilities.kv.clone();
        let result = self.kv_io(kv.delete(&full)).await;
        Ok(self.kv_outcome("kv.delete", &key, result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_kv_expires_and_counts() {
        let kv = MemoryKv::default();
        kv.set("a", "1", Some(Duration::from_millis(30))).await.unwrap();
        assert_eq!(kv.get("a").await.unwrap().as_deref(), Some("1"));
        assert_eq!(kv.incr("c", 2, Some(Duration::from_millis(30))).await.unwrap(), 2);
        assert_eq!(kv.incr("c", 3, None).await.unwrap(), 5);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(kv.get("a").await.unwrap(), None);
        assert_eq!(kv.incr("c", 1, None).await.unwrap(), 1, "the window expired");
        assert!(kv.delete("c").await.unwrap());
        assert!(!kv.delete("c").await.unwrap());
    }

    #[tokio::test]
    async fn memory_kv_refuses_non_integers_and_bounds_keys() {
        let kv = MemoryKv { entries: Mutex::new(HashMap::new()), max_entries: 2 };
        kv.set("a", "x", None).await.unwrap();
        assert!(matches!(kv.incr("a", 1, None).await, Err(Error::Invalid(_))));
        kv.set("b", "y", None).await.unwrap();
        assert!(matches!(kv.set("c", "z", None).await, Err(Error::LimitExceeded(_))));
        kv.set("a", "replaced", None).await.unwrap();
    }
}
