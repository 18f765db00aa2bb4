//! The key-value store on Redis. Every write runs as one script that also
//! keeps the namespace's books beside it (under `kvindex:<prefix>:`, out of
//! any component's reach): what each key costs, when it expires, and the
//! namespace's total, so a write past the namespace's budget is refused in
//! the same step, atomically. Keys that expire give their room back at the
//! namespace's next write.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::{KvBackend, KvSpace, entry_cost};
use crate::runtime::bindings::errors::Error;

/// The bookkeeping every write script starts with. `KEYS`: the key, the
/// namespace's expiries (sorted set), costs (hash) and total (string).
const BOOKS: &str = r"
local function now_ms()
    local time = redis.call('TIME')
    return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local function forget_expired(now)
    local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
    for _, key in ipairs(gone) do
        local cost = redis.call('HGET', KEYS[3], key)
        if cost then redis.call('DECRBY', KEYS[4], cost) end
        redis.call('HDEL', KEYS[3], key)
        redis.call('ZREM', KEYS[2], key)
    end
end
local function held()
    return tonumber(redis.call('HGET', KEYS[3], KEYS[1]) or '0')
end
local function fits(cost, budget)
    return tonumber(redis.call('GET', KEYS[4]) or '0') - held() + cost <= budget
end
local function charge(cost, expires_at)
    redis.call('INCRBY', KEYS[4], cost - held())
    redis.call('HSET', KEYS[3], KEYS[1], cost)
    redis.call('ZADD', KEYS[2], expires_at, KEYS[1])
end
";

/// `ARGV`: value, ttl in ms (0: none), budget, cost.
const SET: &str = r"
local now = now_ms()
forget_expired(now)
if not fits(tonumber(ARGV[4]), tonumber(ARGV[3])) then return redis.error_reply('QUOTA the namespace is full') end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
    charge(tonumber(ARGV[4]), now + ttl)
else
    redis.call('SET', KEYS[1], ARGV[1])
    charge(tonumber(ARGV[4]), '+inf')
end
return 1
";

/// `ARGV`: delta, ttl in ms (0: none), budget, cost. The expiry is set only
/// on a key without one, so a fixed window is not stretched by each count.
const INCR: &str = r"
local now = now_ms()
forget_expired(now)
if not fits(tonumber(ARGV[4]), tonumber(ARGV[3])) then return redis.error_reply('QUOTA the namespace is full') end
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
local expires_at = '+inf'
if ttl > 0 and redis.call('PEXPIRE', KEYS[1], ttl, 'NX') == 1 then
    expires_at = now + ttl
else
    local left = redis.call('PTTL', KEYS[1])
    if left > 0 then expires_at = now + left end
end
charge(tonumber(ARGV[4]), expires_at)
return value
";

const DELETE: &str = r"
local cost = redis.call('HGET', KEYS[3], KEYS[1])
if cost then
    redis.call('DECRBY', KEYS[4], cost)
    redis.call('HDEL', KEYS[3], KEYS[1])
    redis.call('ZREM', KEYS[2], KEYS[1])
end
return redis.call('DEL', KEYS[1])
";

/// The most bytes an integer's text takes.
const INTEGER_BYTES: usize = 20;

/// Redis through a self-reconnecting connection.
pub struct RedisKv {
    connection: ConnectionManager,
    namespace: String,
    set: redis::Script,
    incr: redis::Script,
    delete: redis::Script,
}

impl RedisKv {
    /// Uses an established connection manager.
    pub fn new(connection: ConnectionManager) -> Self {
        Self {
            connection,
            namespace: String::new(),
            set: redis::Script::new(&format!("{BOOKS}{SET}")),
            incr: redis::Script::new(&format!("{BOOKS}{INCR}")),
            delete: redis::Script::new(&format!("{BOOKS}{DELETE}")),
        }
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

    /// `script` invoked on `key` with the books of `space`.
    fn invocation<'s>(&self, script: &'s redis::Script, space: KvSpace<'_>, key: &str) -> redis::ScriptInvocation<'s> {
        let books = format!("{}kvindex:{}", self.namespace, space.prefix);
        let mut invocation = script.key(self.key(key));
        invocation.key(format!("{books}expiries")).key(format!("{books}costs")).key(format!("{books}total"));
        invocation
    }
}

fn redis_error(error: redis::RedisError) -> Error {
    if error.is_timeout() {
        return Error::Timeout;
    }
    if error.code() == Some("QUOTA") {
        return Error::LimitExceeded("the store's budget for this component is used up".into());
    }
    match error.kind() {
        redis::ErrorKind::Server(_) if error.to_string().contains("not an integer") => {
            Error::Invalid("the value is not an integer".into())
        }
        _ => Error::Unavailable(format!("redis: {}", error.category())),
    }
}

fn millis(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |ttl| (ttl.as_millis() as u64).max(1))
}

#[async_trait]
impl KvBackend for RedisKv {
    async fn get(&self, key: &str) -> Result<Option<String>, Error> {
        let mut connection = self.connection.clone();
        redis::cmd("GET").arg(self.key(key)).query_async(&mut connection).await.map_err(redis_error)
    }

    async fn set(&self, space: KvSpace<'_>, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), Error> {
        let mut invocation = self.invocation(&self.set, space, key);
        invocation.arg(value).arg(millis(ttl)).arg(space.max_bytes).arg(entry_cost(key, value.len()));
        invocation.invoke_async::<i64>(&mut self.connection.clone()).await.map_err(redis_error)?;
        Ok(())
    }

    async fn incr(&self, space: KvSpace<'_>, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64, Error> {
        let mut invocation = self.invocation(&self.incr, space, key);
        invocation.arg(delta).arg(millis(ttl)).arg(space.max_bytes).arg(entry_cost(key, INTEGER_BYTES));
        invocation.invoke_async(&mut self.connection.clone()).await.map_err(redis_error)
    }

    async fn delete(&self, space: KvSpace<'_>, key: &str) -> Result<bool, Error> {
        let removed: i64 = self
            .invocation(&self.delete, space, key)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(redis_error)?;
        Ok(removed > 0)
    }
}
