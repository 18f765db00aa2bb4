//! The outbox: messages written in the same transaction as the change they
//! announce. The relay publishes them (fulfillment jobs to the Redis queue,
//! events to the Redis stream); with no Redis, the fulfillment rows are
//! themselves the job queue (see `queue::database`).

use chrono::{DateTime, Utc};

use super::statements::{FULFILLMENT_TOPIC, now};
use super::{Pool, Store, StoreError, with_pool};

/// One outbox message.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OutboxMessage {
    pub id: i64,
    /// `fulfillment` (a job) or `order_events` (an event).
    pub topic: String,
    /// The message, JSON.
    pub payload: String,
    pub correlation_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The order it is about.
    pub order_id: Option<i64>,
}

/// An order's current fulfillment job, as the outbox holds it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OpenJob {
    pub order_id: i64,
    /// Its outbox row.
    pub row: i64,
    /// The order's version when it was read.
    pub version: i64,
    /// The job, as queued.
    pub payload: String,
    pub correlation_id: Option<String>,
}

/// A job row of the database-backed queue.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct JobRow {
    pub id: i64,
    pub payload: String,
    /// Failed attempts so far.
    pub attempts: i32,
}

/// A dead-lettered job row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeadJobRow {
    pub id: i64,
    pub payload: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub dead_at: Option<DateTime<Utc>>,
}

/// How many jobs the database-backed queue holds, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub queued: i64,
    pub processing: i64,
    pub delayed: i64,
    pub dead: i64,
}

/// The advisory lock whose holder is the one relay publishing (`orderly` + 1).
const RELAY_TURN: i64 = 0x6f72_6465_726c_7931;

const MESSAGE_COLUMNS: &str = "id, topic, payload, correlation_id, created_at, order_id";
/// Unfinished, live fulfillment rows.
const OPEN_JOBS: &str = "topic = 'fulfillment' AND published_at IS NULL AND dead_at IS NULL";

fn marks(from: usize, count: usize) -> String {
    (from..from + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

impl Store {
    /// Every message written about order `order_id`, published or not, oldest first.
    pub async fn outbox_of(&self, order_id: i64) -> Result<Vec<OutboxMessage>, StoreError> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM outbox WHERE order_id = $1 ORDER BY id");
        let messages =
            with_pool!(self, |pool| sqlx::query_as::<_, OutboxMessage>(&sql).bind(order_id).fetch_all(pool).await)?;
        Ok(messages)
    }

    /// Publishes up to `limit` of the oldest unpublished messages of `topics`
    /// through `publish`, in the order they were written, then marks them
    /// published. On PostgreSQL one relay publishes at a time, whichever
    /// process it runs in (a transaction-scoped advisory lock), so one
    /// order's events always leave in the order they were written; the rows
    /// are also claimed `FOR UPDATE SKIP LOCKED`. A crash between publishing
    /// and marking publishes again: delivery is at least once, and every
    /// message carries its outbox id, so consumers can tell a repeat. Returns
    /// how many were published (`None` when another process's relay has the
    /// turn), or `publish`'s error (nothing is marked then).
    pub async fn relay_outbox<E>(
        &self,
        topics: &[&str],
        limit: i64,
        publish: impl AsyncFnOnce(&[OutboxMessage]) -> Result<(), E>,
    ) -> Result<Result<Option<usize>, E>, StoreError> {
        let select = format!(
            "SELECT {MESSAGE_COLUMNS} FROM outbox WHERE published_at IS NULL AND dead_at IS NULL \
             AND topic IN ({}) ORDER BY id LIMIT $1",
            marks(2, topics.len())
        );
        let mark = |count: usize| format!("UPDATE outbox SET published_at = $1 WHERE id IN ({})", marks(2, count));
        match &self.pool {
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let turn: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                    .bind(RELAY_TURN)
                    .fetch_one(&mut *tx)
                    .await?;
                if !turn {
                    return Ok(Ok(None));
                }
                let locked = format!("{select} FOR UPDATE SKIP LOCKED");
                let mut query = sqlx::query_as::<_, OutboxMessage>(&locked).bind(limit);
                for topic in topics {
                    query = query.bind(*topic);
                }
                let messages = query.fetch_all(&mut *tx).await?;
                if messages.is_empty() {
                    return Ok(Ok(Some(0)));
                }
                if let Err(error) = publish(&messages).await {
                    return Ok(Err(error));
                }
                let mark = mark(messages.len());
                let mut update = sqlx::query(&mark).bind(now());
                for message in &messages {
                    update = update.bind(message.id);
                }
                update.execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(Ok(Some(messages.len())))
            }
            // One process owns an embedded database, and it runs one relay:
            // no claim is needed, and the single writer connection is not
            // held while Redis is slow or down.
            Pool::Sqlite(pool) => {
                let mut query = sqlx::query_as::<_, OutboxMessage>(&select).bind(limit);
                for topic in topics {
                    query = query.bind(*topic);
                }
                let messages = query.fetch_all(pool).await?;
                if messages.is_empty() {
                    return Ok(Ok(Some(0)));
                }
                if let Err(error) = publish(&messages).await {
                    return Ok(Err(error));
                }
                let mark = mark(messages.len());
                let mut update = sqlx::query(&mark).bind(now());
                for message in &messages {
                    update = update.bind(message.id);
                }
                update.execute(pool).await?;
                Ok(Ok(Some(messages.len())))
            }
        }
    }

    /// Takes the oldest claimable job of the database-backed queue: marks it
    /// claimed at `now_ms` (epoch milliseconds) by delivery `token`.
    pub async fn claim_job(&self, now_ms: i64, token: &str) -> Result<Option<JobRow>, StoreError> {
        let pick = format!(
            "SELECT id FROM outbox WHERE {OPEN_JOBS} AND claimed_at_ms IS NULL AND available_at_ms <= $1 \
             ORDER BY id LIMIT 1"
        );
        let claim = |pick: &str| {
            format!(
                "UPDATE outbox SET claimed_at_ms = $1, claim_token = $2 WHERE id = ({pick}) \
                 RETURNING id, payload, attempts"
            )
        };
        let row = match &self.pool {
            Pool::Postgres(pool) => {
                let sql = claim(&format!("{pick} FOR UPDATE SKIP LOCKED"));
                sqlx::query_as::<_, JobRow>(&sql).bind(now_ms).bind(token).fetch_optional(pool).await?
            }
            Pool::Sqlite(pool) => {
                sqlx::query_as::<_, JobRow>(&claim(&pick)).bind(now_ms).bind(token).fetch_optional(pool).await?
            }
        };
        Ok(row)
    }

    /// Marks a job done, if delivery `token` still holds it.
    pub async fn ack_job(&self, id: i64, token: &str) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE outbox SET published_at = $1, claimed_at_ms = NULL, claim_token = NULL \
                 WHERE id = $2 AND claim_token = $3",
            )
            .bind(now())
            .bind(id)
            .bind(token)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })?;
        Ok(())
    }

    /// Records a failed attempt of delivery `token`: the job becomes
    /// claimable again at `retry_at_ms`, or dead once it has failed
    /// `max_attempts` times. Returns the attempts so far and whether it is
    /// dead; `None` if the delivery no longer holds the job.
    pub async fn fail_job(
        &self,
        (id, token): (i64, &str),
        error: &str,
        retry_at_ms: i64,
        max_attempts: u32,
    ) -> Result<Option<(i32, bool)>, StoreError> {
        let row: Option<(i32, bool)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "UPDATE outbox SET attempts = attempts + 1, claimed_at_ms = NULL, claim_token = NULL, \
                 available_at_ms = $1, last_error = $2, dead_at = CASE WHEN attempts + 1 >= $3 THEN $4 ELSE NULL END \
                 WHERE id = $5 AND claim_token = $6 RETURNING attempts, dead_at IS NOT NULL",
            )
            .bind(retry_at_ms)
            .bind(error)
            .bind(max_attempts as i32)
            .bind(now())
            .bind(id)
            .bind(token)
            .fetch_optional(pool)
            .await
        })?;
        Ok(row)
    }

    /// Renews delivery `token`'s claim on job `id` (timed from `now_ms`);
    /// false if it no longer holds it.
    pub async fn renew_job(&self, id: i64, token: &str, now_ms: i64) -> Result<bool, StoreError> {
        let renewed = with_pool!(self, |pool| {
            sqlx::query(&format!(
                "UPDATE outbox SET claimed_at_ms = $1 WHERE id = $2 AND claim_token = $3 AND {OPEN_JOBS}"
            ))
            .bind(now_ms)
            .bind(id)
            .bind(token)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })?;
        Ok(renewed == 1)
    }

    /// Gives a job back without counting an attempt, claimable from
    /// `retry_at_ms`, if delivery `token` still holds it.
    pub async fn release_job(&self, id: i64, token: &str, retry_at_ms: i64) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE outbox SET claimed_at_ms = NULL, claim_token = NULL, available_at_ms = $1 \
                 WHERE id = $2 AND claim_token = $3",
            )
            .bind(retry_at_ms)
            .bind(id)
            .bind(token)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })?;
        Ok(())
    }

    /// Returns claims older than `cutoff_ms` to the queue, counting an
    /// attempt each (a worker died holding them); those that reach
    /// `max_attempts` die instead. Returns the rows that died.
    pub async fn reap_jobs(&self, cutoff_ms: i64, max_attempts: u32) -> Result<(u64, Vec<JobRow>), StoreError> {
        let sql = format!(
            "UPDATE outbox SET claimed_at_ms = NULL, claim_token = NULL, attempts = attempts + 1, \
             last_error = 'the worker holding it stopped answering (claim expired)', \
             dead_at = CASE WHEN attempts + 1 >= $1 THEN $2 ELSE NULL END \
             WHERE {OPEN_JOBS} AND claimed_at_ms < $3 RETURNING id, payload, attempts, dead_at IS NOT NULL AS dead"
        );
        let rows: Vec<(i64, String, i32, bool)> = with_pool!(self, |pool| {
            sqlx::query_as(&sql).bind(max_attempts as i32).bind(now()).bind(cutoff_ms).fetch_all(pool).await
        })?;
        let reaped = rows.len() as u64;
        let dead = rows
            .into_iter()
            .filter(|(.., dead)| *dead)
            .map(|(id, payload, attempts, _)| JobRow { id, payload, attempts })
            .collect();
        Ok((reaped, dead))
    }

    /// The dead jobs, newest first.
    pub async fn dead_jobs(&self, limit: i64) -> Result<Vec<DeadJobRow>, StoreError> {
        let rows = with_pool!(self, |pool| {
            sqlx::query_as::<_, DeadJobRow>(
                "SELECT id, payload, attempts, last_error, dead_at FROM outbox \
                 WHERE topic = 'fulfillment' AND published_at IS NULL AND dead_at IS NOT NULL \
                 ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows)
    }

    /// Gives a dead job a fresh start; false if it is not dead (any more).
    pub async fn revive_job(&self, id: i64) -> Result<bool, StoreError> {
        let revived = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE outbox SET dead_at = NULL, attempts = 0, available_at_ms = 0, claimed_at_ms = NULL, \
                 last_error = NULL WHERE id = $1 AND dead_at IS NOT NULL AND published_at IS NULL",
            )
            .bind(id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })?;
        if revived > 0 {
            self.announce_outbox();
        }
        Ok(revived > 0)
    }

    /// How many jobs the database-backed queue holds, by state.
    pub async fn job_counts(&self, now_ms: i64) -> Result<JobCounts, StoreError> {
        let sql = format!(
            "SELECT \
               COALESCE(SUM(CASE WHEN dead_at IS NULL AND claimed_at_ms IS NULL AND available_at_ms <= $1 THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN dead_at IS NULL AND claimed_at_ms IS NOT NULL THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN dead_at IS NULL AND claimed_at_ms IS NULL AND available_at_ms > $1 THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END), 0) \
             FROM outbox WHERE topic = '{FULFILLMENT_TOPIC}' AND published_at IS NULL"
        );
        let (queued, processing, delayed, dead): (i64, i64, i64, i64) =
            with_pool!(self, |pool| sqlx::query_as(&sql).bind(now_ms).fetch_one(pool).await)?;
        Ok(JobCounts { queued, processing, delayed, dead })
    }

    /// The jobs that should be in the queue, as the database knows them: for
    /// each order still `pending` or `processing` (after order `after`, at
    /// most `limit`), its latest fulfillment message, once the relay has
    /// published it. A message not yet published is the relay's to send.
    pub async fn open_jobs(&self, after: i64, limit: i64) -> Result<Vec<OpenJob>, StoreError> {
        let jobs = with_pool!(self, |pool| {
            sqlx::query_as::<_, OpenJob>(
                "SELECT o.id AS order_id, b.id AS row, o.version, b.payload, b.correlation_id FROM orders o \
                 JOIN outbox b ON b.id = (SELECT max(x.id) FROM outbox x \
                                          WHERE x.order_id = o.id AND x.topic = 'fulfillment') \
                 WHERE o.status IN ('pending', 'processing') AND o.id > $1 \
                   AND b.published_at IS NOT NULL AND b.dead_at IS NULL \
                 ORDER BY o.id LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await
        })?;
        Ok(jobs)
    }

    /// Writes `job` to the outbox again, exactly as it was (same job id), so
    /// the relay queues it once more; unless its order changed since `job`
    /// was read (a worker moved it on: the job is not lost, it is done), or
    /// a newer message for it was written meanwhile (another process's
    /// recovery got there first: the order row is locked while checking, so
    /// of several processes recovering at once exactly one writes). Returns
    /// whether it was written.
    pub async fn republish(&self, job: &OpenJob) -> Result<bool, StoreError> {
        let written = with_pool!(self, |pool| async {
            let mut tx = pool.begin().await?;
            let still_open = sqlx::query(
                "UPDATE orders SET version = version WHERE id = $1 AND version = $2 \
                 AND status IN ('pending', 'processing')",
            )
            .bind(job.order_id)
            .bind(job.version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if still_open == 0 {
                return Ok::<u64, StoreError>(0);
            }
            let written = sqlx::query(
                "INSERT INTO outbox (topic, payload, correlation_id, created_at, order_id) \
                 SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS \
                   (SELECT 1 FROM outbox WHERE order_id = $5 AND topic = $1 AND id > $6)",
            )
            .bind(FULFILLMENT_TOPIC)
            .bind(&job.payload)
            .bind(&job.correlation_id)
            .bind(now())
            .bind(job.order_id)
            .bind(job.row)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok(written)
        }
        .await)?;
        if written > 0 {
            self.announce_outbox();
        }
        Ok(written > 0)
    }
}

impl Store {
    /// Closes a dead job for good (its job was written to the outbox again);
    /// false if it is not dead.
    pub async fn bury_job(&self, id: i64) -> Result<bool, StoreError> {
        let buried = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE outbox SET published_at = $1 WHERE id = $2 AND dead_at IS NOT NULL AND published_at IS NULL",
            )
            .bind(now())
            .bind(id)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })?;
        Ok(buried > 0)
    }
}
