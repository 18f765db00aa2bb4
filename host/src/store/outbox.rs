//! The outbox: messages written in the same transaction as the change they
//! announce. The relay publishes them (fulfillment jobs to the Redis queue,
//! events to the Redis stream); with no Redis, the fulfillment rows are
//! themselves the job queue (see `queue::database`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::statements::{FULFILLMENT_TOPIC, INSERT_OUTBOX, now, placeholders};
use super::{Pool, Store, StoreError, with_pool};
use crate::domain::{Job, JobItem};

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
    /// through `publish`, then marks them published. On PostgreSQL the rows
    /// are claimed `FOR UPDATE SKIP LOCKED` for the duration, so relays in
    /// several processes never publish the same row at the same time. A crash
    /// between publishing and marking publishes again: delivery is at least
    /// once, and consumers are idempotent. Returns how many were published,
    /// or `publish`'s error (nothing is marked then).
    pub async fn relay_outbox<E>(
        &self,
        topics: &[&str],
        limit: i64,
        publish: impl AsyncFnOnce(&[OutboxMessage]) -> Result<(), E>,
    ) -> Result<Result<usize, E>, StoreError> {
        let select = format!(
            "SELECT {MESSAGE_COLUMNS} FROM outbox WHERE published_at IS NULL AND dead_at IS NULL \
             AND topic IN ({}) ORDER BY id LIMIT $1",
            marks(2, topics.len())
        );
        let mark = |count: usize| format!("UPDATE outbox SET published_at = $1 WHERE id IN ({})", marks(2, count));
        match &self.pool {
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let locked = format!("{select} FOR UPDATE SKIP LOCKED");
                let mut query = sqlx::query_as::<_, OutboxMessage>(&locked).bind(limit);
                for topic in topics {
                    query = query.bind(*topic);
                }
                let messages = query.fetch_all(&mut *tx).await?;
                if messages.is_empty() {
                    return Ok(Ok(0));
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
                Ok(Ok(messages.len()))
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
                    return Ok(Ok(0));
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
                Ok(Ok(messages.len()))
            }
        }
    }

    /// Takes the oldest claimable job of the database-backed queue: marks it
    /// claimed at `now_ms` (epoch milliseconds).
    pub async fn claim_job(&self, now_ms: i64) -> Result<Option<JobRow>, StoreError> {
        let pick = format!(
            "SELECT id FROM outbox WHERE {OPEN_JOBS} AND claimed_at_ms IS NULL AND available_at_ms <= $1 \
             ORDER BY id LIMIT 1"
        );
        let claim = |pick: &str| {
            format!("UPDATE outbox SET claimed_at_ms = $1 WHERE id = ({pick}) RETURNING id, payload, attempts")
        };
        let row = match &self.pool {
            Pool::Postgres(pool) => {
                let sql = claim(&format!("{pick} FOR UPDATE SKIP LOCKED"));
                sqlx::query_as::<_, JobRow>(&sql).bind(now_ms).fetch_optional(pool).await?
            }
            Pool::Sqlite(pool) => sqlx::query_as::<_, JobRow>(&claim(&pick)).bind(now_ms).fetch_optional(pool).await?,
        };
        Ok(row)
    }

    /// Marks a job done.
    pub async fn ack_job(&self, id: i64) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query("UPDATE outbox SET published_at = $1, claimed_at_ms = NULL WHERE id = $2")
                .bind(now())
                .bind(id)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })?;
        Ok(())
    }

    /// Records a failed attempt: the job becomes claimable again at
    /// `retry_at_ms`, or dead once it has failed `max_attempts` times.
    /// Returns the attempts so far and whether it is dead.
    pub async fn fail_job(
        &self,
        id: i64,
        error: &str,
        retry_at_ms: i64,
        max_attempts: u32,
    ) -> Result<(i32, bool), StoreError> {
        let row: (i32, bool) = with_pool!(self, |pool| {
            sqlx::query_as(
                "UPDATE outbox SET attempts = attempts + 1, claimed_at_ms = NULL, available_at_ms = $1, \
                 last_error = $2, dead_at = CASE WHEN attempts + 1 >= $3 THEN $4 ELSE NULL END \
                 WHERE id = $5 RETURNING attempts, dead_at IS NOT NULL",
            )
            .bind(retry_at_ms)
            .bind(error)
            .bind(max_attempts as i32)
            .bind(now())
            .bind(id)
            .fetch_one(pool)
            .await
        })?;
        Ok(row)
    }

    /// Gives a job back without counting an attempt, claimable from `retry_at_ms`.
    pub async fn release_job(&self, id: i64, retry_at_ms: i64) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query("UPDATE outbox SET claimed_at_ms = NULL, available_at_ms = $1 WHERE id = $2")
                .bind(retry_at_ms)
                .bind(id)
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
            "UPDATE outbox SET claimed_at_ms = NULL, attempts = attempts + 1, \
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

    /// Writes a new fulfillment job for each order left `pending` since
    /// before `cutoff` with no job waiting or recently written for it (the
    /// queue lost it: Redis restarted without its data). Returns the orders.
    pub async fn republish_stale_pending(&self, cutoff: DateTime<Utc>, limit: i64) -> Result<Vec<i64>, StoreError> {
        let at = now();
        let republished = with_pool!(self, |pool| async {
            let mut tx = pool.begin().await?;
            let stale: Vec<(i64, Option<String>)> = sqlx::query_as(
                "SELECT o.id, (SELECT h.correlation_id FROM order_status_history h WHERE h.order_id = o.id \
                               ORDER BY h.id LIMIT 1) \
                 FROM orders o WHERE o.status = 'pending' AND o.updated_at < $1 AND NOT EXISTS \
                   (SELECT 1 FROM outbox b WHERE b.order_id = o.id AND b.topic = 'fulfillment' \
                    AND (b.published_at IS NULL OR b.created_at >= $1)) \
                 ORDER BY o.id LIMIT $2",
            )
            .bind(cutoff)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            if stale.is_empty() {
                return Ok::<_, StoreError>(Vec::new());
            }
            let ids: Vec<i64> = stale.iter().map(|(id, _)| *id).collect();
            let lines_sql = format!(
                "SELECT order_id, product_id, quantity FROM order_items WHERE order_id IN ({}) \
                 ORDER BY order_id, line_no",
                marks(1, ids.len())
            );
            let mut lines_query = sqlx::query_as::<_, (i64, i64, i32)>(&lines_sql);
            for id in &ids {
                lines_query = lines_query.bind(*id);
            }
            let mut items: BTreeMap<i64, Vec<JobItem>> = BTreeMap::new();
            for (order_id, product_id, quantity) in lines_query.fetch_all(&mut *tx).await? {
                items.entry(order_id).or_default().push(JobItem { product_id, quantity });
            }
            let insert = format!("{INSERT_OUTBOX}{}", placeholders(stale.len(), 5));
            let mut query = sqlx::query(&insert);
            for (id, correlation_id) in &stale {
                let correlation_id = correlation_id.clone().unwrap_or_default();
                let job = Job::new(*id, items.remove(id).unwrap_or_default(), &correlation_id);
                query = query.bind(FULFILLMENT_TOPIC).bind(job.to_json()).bind(correlation_id).bind(at).bind(*id);
            }
            query.execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(ids)
        }
        .await)?;
        if !republished.is_empty() {
            self.announce_outbox();
        }
        Ok(republished)
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
