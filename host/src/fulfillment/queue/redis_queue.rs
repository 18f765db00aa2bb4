//! The fulfillment queue on Redis, in the seeds' layout: producers `LPUSH
//! fulfillment_queue`, workers `BLMOVE` the oldest job into
//! `fulfillment_queue:processing` and `LREM` it when done.
//!
//! Beside them: `:claims` (hash: job -> when it was claimed or last renewed,
//! and the claim's token, for the reaper and for fencing: ack, fail, release
//! and renewal act only for the delivery whose token is recorded), `:attempts` (hash: job -> failed attempts), `:delayed` (sorted
//! set: retries by due time) and `:dead` (list of dead letters). A job is
//! named by the SHA-1 of its payload, computed by Redis itself, so even a
//! message that is not JSON can be counted and dead-lettered. Every step that
//! touches more than one key is one Lua script, so it is atomic.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, Script};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ClaimedJob, DeadLetter, Failed, JobQueue, QueueDepth, QueueError, Reaped, new_token, now_ms};

/// The queue's keys under a namespace.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    pub queue: String,
    pub processing: String,
    pub claims: String,
    pub attempts: String,
    pub delayed: String,
    pub dead: String,
}

impl QueueKeys {
    /// `fulfillment_queue` and its companions, after `namespace`.
    pub fn new(namespace: &str) -> Self {
        let queue = format!("{namespace}fulfillment_queue");
        Self {
            processing: format!("{queue}:processing"),
            claims: format!("{queue}:claims"),
            attempts: format!("{queue}:attempts"),
            delayed: format!("{queue}:delayed"),
            dead: format!("{queue}:dead"),
            queue,
        }
    }
}

/// Records when a job was claimed, and by which delivery (`<ms> <token>`);
/// answers its failed attempts so far.
static MARK_CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local id = redis.sha1hex(ARGV[1])
        redis.call('HSET', KEYS[1], id, ARGV[2] .. ' ' .. ARGV[3])
        return tonumber(redis.call('HGET', KEYS[2], id) or '0')
        ",
    )
});

/// The start of every script that acts for one delivery: `id` names the job
/// (ARGV[1]), and the script stops, answering `GONE`, unless the claim in
/// KEYS[2] carries the delivery's token (ARGV[2]): its claim expired and
/// the job was requeued, maybe claimed again by another worker.
macro_rules! for_the_claim_holder {
    ($gone:literal, $body:literal) => {
        concat!(
            r"
        local id = redis.sha1hex(ARGV[1])
        local claim = redis.call('HGET', KEYS[2], id)
        if not claim or string.match(claim, ' (.+)$') ~= ARGV[2] then return ",
            $gone,
            " end",
            $body
        )
    };
}

/// Renews a claim (the worker is alive and still at it): the reaper times it from now.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(for_the_claim_holder!(
        "0",
        r"
        redis.call('HSET', KEYS[2], id, ARGV[3] .. ' ' .. ARGV[2])
        return 1
        "
    ))
});

/// Removes a finished job from the processing list and forgets its bookkeeping.
static ACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(for_the_claim_holder!(
        "0",
        r"
        redis.call('HDEL', KEYS[2], id)
        redis.call('HDEL', KEYS[3], id)
        return redis.call('LREM', KEYS[1], 1, ARGV[1])
        "
    ))
});

/// A failed attempt: schedule a retry, or dead-letter the job. Answers
/// {attempts, 0 = the claim was gone, 1 = retrying, 2 = dead}.
static FAIL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(for_the_claim_holder!(
        "{0, 0}",
        r"
        if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return {0, 0} end
        redis.call('HDEL', KEYS[2], id)
        local attempts = redis.call('HINCRBY', KEYS[3], id, 1)
        if attempts >= tonumber(ARGV[4]) then
          redis.call('HDEL', KEYS[3], id)
          redis.call('LPUSH', KEYS[5], cjson.encode({id = id, payload = ARGV[1], attempts = attempts,
                                                     error = ARGV[5], dead_at = ARGV[6]}))
          return {attempts, 2}
        end
        redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
        return {attempts, 1}
        "
    ))
});

/// Gives a job back for later without counting an attempt.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(for_the_claim_holder!(
        "0",
        r"
        if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
        redis.call('HDEL', KEYS[2], id)
        redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
        return 1
        "
    ))
});

/// Moves due retries to the back of the queue.
static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
        for _, payload in ipairs(due) do
          redis.call('ZREM', KEYS[1], payload)
          redis.call('LPUSH', KEYS[2], payload)
        end
        return #due
        ",
    )
});

/// Requeues claims older than the visibility timeout (a job whose claim was
/// never recorded, because its worker died right after taking it, is timed
/// from when the reaper first sees it); dead-letters those out of attempts.
/// Answers {requeued, {dead payloads}}.
static REAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local now = tonumber(ARGV[1])
        local requeued = 0
        local dead = {}
        local seen = {}
        for _, payload in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
          local id = redis.sha1hex(payload)
          if not seen[id] then
            seen[id] = true
            local claimed = redis.call('HGET', KEYS[2], id)
            if not claimed then
              redis.call('HSET', KEYS[2], id, ARGV[1])
            elseif now - tonumber(string.match(claimed, '^(%d+)')) > tonumber(ARGV[2]) then
              redis.call('LREM', KEYS[1], 1, payload)
              redis.call('HDEL', KEYS[2], id)
              local attempts = redis.call('HINCRBY', KEYS[3], id, 1)
              if attempts >= tonumber(ARGV[3]) then
                redis.call('HDEL', KEYS[3], id)
                redis.call('LPUSH', KEYS[5], cjson.encode({id = id, payload = payload, attempts = attempts,
                  error = 'the worker holding it stopped answering (claim expired)', dead_at = ARGV[4]}))
                table.insert(dead, payload)
              else
                redis.call('LPUSH', KEYS[4], payload)
                requeued = requeued + 1
              end
            end
          end
        end
        for _, id in ipairs(redis.call('HKEYS', KEYS[2])) do
          if not seen[id] then redis.call('HDEL', KEYS[2], id) end
        end
        return {requeued, dead}
        ",
    )
});

/// Takes one dead letter out; with a queue key, puts its job back in the queue.
static TAKE_DEAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
        if KEYS[2] then redis.call('LPUSH', KEYS[2], cjson.decode(ARGV[1]).payload) end
        return 1
        ",
    )
});

/// Which of the payloads in ARGV are anywhere in the queue: waiting, held,
/// delayed or dead. One pass over each key, so the answer is one snapshot
/// (no job moves between keys while a script runs). Answers 1 or 0 each.
static HOLDS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local held = {}
        for _, key in ipairs({KEYS[1], KEYS[2]}) do
          for _, payload in ipairs(redis.call('LRANGE', key, 0, -1)) do held[payload] = true end
        end
        for _, payload in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do held[payload] = true end
        for _, entry in ipairs(redis.call('LRANGE', KEYS[4], 0, -1)) do
          local ok, letter = pcall(cjson.decode, entry)
          if ok and type(letter) == 'table' and type(letter.payload) == 'string' then held[letter.payload] = true end
        end
        local answer = {}
        for index, payload in ipairs(ARGV) do answer[index] = held[payload] and 1 or 0 end
        return answer
        ",
    )
});

/// A dead letter as stored in `:dead`.
#[derive(serde::Deserialize)]
struct Envelope {
    id: String,
    payload: String,
    attempts: u32,
    error: String,
    dead_at: Option<String>,
}

/// How many dead letters a lookup by id reads at most.
const DEAD_SCAN: isize = 10_000;

/// The queue on Redis.
pub struct RedisJobQueue {
    /// Shared, multiplexed: every non-blocking command.
    connection: ConnectionManager,
    client: Client,
    keys: QueueKeys,
    /// This worker's own connection for `BLMOVE`, which would stall every
    /// command queued behind it on a shared one. Opened on first use.
    blocking: tokio::sync::Mutex<Option<ConnectionManager>>,
}

impl RedisJobQueue {
    /// The queue under `namespace` on `connection` (opened from `client`).
    pub fn new(client: Client, connection: ConnectionManager, namespace: &str) -> Self {
        Self { connection, client, keys: QueueKeys::new(namespace), blocking: tokio::sync::Mutex::new(None) }
    }

    /// Its keys.
    pub fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    async fn find_dead(&self, id: &str) -> Result<Option<String>, QueueError> {
        let entries: Vec<String> = ::redis::cmd("LRANGE")
            .arg(&self.keys.dead)
            .arg(0)
            .arg(DEAD_SCAN - 1)
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(entries.into_iter().find(|raw| serde_json::from_str::<Envelope>(raw).is_ok_and(|entry| entry.id == id)))
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339()
}

#[async_trait]
impl JobQueue for RedisJobQueue {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn fork(&self) -> Arc<dyn JobQueue> {
        Arc::new(Self::new(self.client.clone(), self.connection.clone(), "").with_keys(self.keys.clone()))
    }

    async fn claim(&self, wait: Duration) -> Result<Option<ClaimedJob>, QueueError> {
        let mut blocking = self.blocking.lock().await;
        if blocking.is_none() {
            // Longer than the block itself, or every empty wait would look like a dead server.
            // One reconnection attempt per claim: the worker paces its own retries (a
            // second apart), so it takes jobs again as soon as Redis is back instead of
            // waiting out a growing reconnection backoff.
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(wait + Duration::from_secs(5)))
                .set_number_of_retries(0);
            *blocking = Some(ConnectionManager::new_with_config(self.client.clone(), config).await?);
        }
        let connection = blocking.as_mut().expect("opened above");
        let payload: Option<String> = ::redis::cmd("BLMOVE")
            .arg(&self.keys.queue)
            .arg(&self.keys.processing)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(wait.as_secs_f64())
            .query_async(connection)
            .await?;
        drop(blocking);
        let Some(payload) = payload else { return Ok(None) };
        let token = new_token();
        let attempts: u32 = MARK_CLAIM
            .key(&self.keys.claims)
            .key(&self.keys.attempts)
            .arg(&payload)
            .arg(now_ms())
            .arg(&token)
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(Some(ClaimedJob { payload, attempts, token, row: None }))
    }

    async fn ack(&self, job: &ClaimedJob) -> Result<(), QueueError> {
        let _: i64 = ACK
            .key(&self.keys.processing)
            .key(&self.keys.claims)
            .key(&self.keys.attempts)
            .arg(&job.payload)
            .arg(&job.token)
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    async fn renew(&self, job: &ClaimedJob) -> Result<bool, QueueError> {
        let renewed: i64 = RENEW
            .key(&self.keys.processing)
            .key(&self.keys.claims)
            .arg(&job.payload)
            .arg(&job.token)
            .arg(now_ms())
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(renewed == 1)
    }

    async fn fail(
        &self,
        job: &ClaimedJob,
        error: &str,
        retry_in: Duration,
        max_attempts: u32,
    ) -> Result<Failed, QueueError> {
        let (attempts, state): (u32, u8) = FAIL
            .key(&self.keys.processing)
            .key(&self.keys.claims)
            .key(&self.keys.attempts)
            .key(&self.keys.delayed)
            .key(&self.keys.dead)
            .arg(&job.payload)
            .arg(&job.token)
            .arg(now_ms() + retry_in.as_millis() as i64)
            .arg(max_attempts.max(1))
            .arg(error)
            .arg(rfc3339(Utc::now()))
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(match state {
            0 => Failed::Gone,
            1 => Failed::Retrying { attempts },
            _ => Failed::Dead { attempts },
        })
    }

    async fn release(&self, job: &ClaimedJob, retry_in: Duration) -> Result<(), QueueError> {
        let _: i64 = RELEASE
            .key(&self.keys.processing)
            .key(&self.keys.claims)
            .key(&self.keys.delayed)
            .arg(&job.payload)
            .arg(&job.token)
            .arg(now_ms() + retry_in.as_millis() as i64)
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    async fn promote_due(&self) -> Result<u64, QueueError> {
        let moved: u64 = PROMOTE
            .key(&self.keys.delayed)
            .key(&self.keys.queue)
            .arg(now_ms())
            .arg(500)
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(moved)
    }

    async fn reap(&self, visibility: Duration, max_attempts: u32) -> Result<Reaped, QueueError> {
        let (requeued, dead): (u64, Vec<String>) = REAP
            .key(&self.keys.processing)
            .key(&self.keys.claims)
            .key(&self.keys.attempts)
            .key(&self.keys.queue)
            .key(&self.keys.dead)
            .arg(now_ms())
            .arg(visibility.as_millis() as i64)
            .arg(max_attempts.max(1))
            .arg(rfc3339(Utc::now()))
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(Reaped { requeued, dead })
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let entries: Vec<String> = ::redis::cmd("LRANGE")
            .arg(&self.keys.dead)
            .arg(0)
            .arg(limit.max(1) as isize - 1)
            .query_async(&mut self.connection.clone())
            .await?;
        entries
            .iter()
            .map(|raw| {
                let entry: Envelope = serde_json::from_str(raw)
                    .map_err(|error| QueueError::Corrupt(format!("unreadable dead letter: {error}")))?;
                let dead_at = entry.dead_at.as_deref().and_then(|at| DateTime::parse_from_rfc3339(at).ok());
                Ok(DeadLetter::new(
                    entry.id,
                    entry.payload,
                    entry.attempts,
                    entry.error,
                    dead_at.map(|at| at.with_timezone(&Utc)),
                ))
            })
            .collect()
    }

    async fn requeue_dead(&self, id: &str) -> Result<bool, QueueError> {
        let Some(raw) = self.find_dead(id).await? else { return Ok(false) };
        let taken: i64 = TAKE_DEAD
            .key(&self.keys.dead)
            .key(&self.keys.queue)
            .arg(raw)
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(taken == 1)
    }

    async fn remove_dead(&self, id: &str) -> Result<bool, QueueError> {
        let Some(raw) = self.find_dead(id).await? else { return Ok(false) };
        let taken: i64 = TAKE_DEAD.key(&self.keys.dead).arg(raw).invoke_async(&mut self.connection.clone()).await?;
        Ok(taken == 1)
    }

    fn can_lose_jobs(&self) -> bool {
        true
    }

    async fn holds(&self, payloads: &[String]) -> Result<Vec<bool>, QueueError> {
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        let mut script = HOLDS.prepare_invoke();
        script.key(&self.keys.queue).key(&self.keys.processing).key(&self.keys.delayed).key(&self.keys.dead);
        for payload in payloads {
            script.arg(payload);
        }
        let held: Vec<u8> = script.invoke_async(&mut self.connection.clone()).await?;
        Ok(held.into_iter().map(|held| held == 1).collect())
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let (queued, processing, delayed, dead): (u64, u64, u64, u64) = ::redis::pipe()
            .cmd("LLEN")
            .arg(&self.keys.queue)
            .cmd("LLEN")
            .arg(&self.keys.processing)
            .cmd("ZCARD")
            .arg(&self.keys.delayed)
            .cmd("LLEN")
            .arg(&self.keys.dead)
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(QueueDepth { queued, processing, delayed, dead })
    }
}

impl RedisJobQueue {
    fn with_keys(mut self, keys: QueueKeys) -> Self {
        self.keys = keys;
        self
    }
}
