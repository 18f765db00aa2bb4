//! Idempotency keys for `POST /orders`.
//!
//! A request with a key first claims it (a row `in_progress`); the create
//! transaction completes the row with the answer, atomically with the order.
//! A failed request releases its claim so the client can retry with the same
//! key. Only successful creations are replayed.

use chrono::{DateTime, Duration, Utc};

use super::{Store, StoreError, with_pool};

/// What a claim on a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new (or its earlier use expired): this request owns it,
    /// by the claim made at `since` (what its release names).
    Fresh { since: DateTime<Utc> },
    /// The same request completed earlier: replay this answer.
    Replay { status: u16, body: String },
    /// The key was used with another request body.
    Mismatch,
    /// The same request is running right now.
    InProgress,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    request_hash: String,
    state: String,
    response_status: Option<i32>,
    response_body: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl Store {
    /// Claims `key` for a request whose body hashes to `request_hash`.
    /// Completed keys live for `ttl`; an `in_progress` claim older than
    /// `abandon_after` belonged to a request that died and is taken over.
    pub async fn claim_idempotency_key(
        &self,
        key: &str,
        request_hash: &str,
        ttl: Duration,
        abandon_after: Duration,
    ) -> Result<Claim, StoreError> {
        // Two rounds at most: the second follows removing an expired row.
        for _ in 0..3 {
            let now = super::statements::now();
            let inserted = with_pool!(self, |pool| {
                sqlx::query(
                    "INSERT INTO idempotency_keys (key, request_hash, state, created_at, expires_at) \
                     VALUES ($1, $2, 'in_progress', $3, $4) ON CONFLICT (key) DO NOTHING",
                )
                .bind(key)
                .bind(request_hash)
                .bind(now)
                .bind(now + ttl)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
            })?;
            if inserted == 1 {
                return Ok(Claim::Fresh { since: now });
            }
            let found = with_pool!(self, |pool| {
                sqlx::query_as::<_, KeyRow>(
                    "SELECT request_hash, state, response_status, response_body, created_at, expires_at \
                     FROM idempotency_keys WHERE key = $1",
                )
                .bind(key)
                .fetch_optional(pool)
                .await
            })?;
            let Some(row) = found else { continue };
            let abandoned = row.state == "in_progress" && row.created_at + abandon_after < now;
            if row.expires_at < now || abandoned {
                // Delete exactly the row seen, so two requests cannot both take it over.
                with_pool!(self, |pool| {
                    sqlx::query("DELETE FROM idempotency_keys WHERE key = $1 AND created_at = $2")
                        .bind(key)
                        .bind(row.created_at)
                        .execute(pool)
                        .await
                        .map(|done| done.rows_affected())
                })?;
                continue;
            }
            if row.request_hash != request_hash {
                return Ok(Claim::Mismatch);
            }
            return Ok(match (row.state.as_str(), row.response_status, row.response_body) {
                ("completed", Some(status), Some(body)) => Claim::Replay { status: status as u16, body },
                _ => Claim::InProgress,
            });
        }
        Ok(Claim::InProgress)
    }

    /// Gives up the claim on `key` made at `since` after a failed request, so
    /// the key can be retried. A later claim of the same key (the first was
    /// abandoned and taken over) is left alone, however late this arrives.
    pub async fn release_idempotency_key(&self, key: &str, since: DateTime<Utc>) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query("DELETE FROM idempotency_keys WHERE key = $1 AND state = 'in_progress' AND created_at = $2")
                .bind(key)
                .bind(since)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })?;
        Ok(())
    }

    /// Deletes expired keys; returns how many.
    pub async fn purge_idempotency_keys(&self) -> Result<u64, StoreError> {
        let purged = with_pool!(self, |pool| {
            sqlx::query("DELETE FROM idempotency_keys WHERE expires_at < $1")
                .bind(super::statements::now())
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })?;
        Ok(purged)
    }
}
