//! Leases on `processing` orders (see `migrations/*/0004_fencing.sql`): the
//! delivery of a job that took an order holds it until its lease runs out,
//! renews the lease while its policy runs, and another delivery of the same
//! job (after a crash, a reaped claim or a recovered job) takes the order
//! over only once that lease has run out. The decision is applied under the
//! claim ([`super::Guard::From`]), so a delivery that lost the order applies
//! nothing.

use super::{Store, StoreError, with_pool};

impl Store {
    /// Gives order `id` (`processing`, held by `job`) to delivery `token`
    /// until `until_ms`, if the delivery holding it is still `previous`
    /// (none: no delivery held it yet) and its lease ran out by `now_ms`.
    /// False when another delivery holds a live lease or got there first.
    pub async fn take_over(
        &self,
        id: i64,
        job: &str,
        previous: Option<&str>,
        (token, until_ms): (&str, i64),
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let taken = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE orders SET claim_token = $1, lease_until_ms = $2 WHERE id = $3 AND status = 'processing' \
                 AND fulfillment_job = $4 AND COALESCE(claim_token, '') = COALESCE($5, '') \
                 AND COALESCE(lease_until_ms, 0) <= $6",
            )
            .bind(token)
            .bind(until_ms)
            .bind(id)
            .bind(job)
            .bind(previous)
            .bind(now_ms)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })?;
        Ok(taken == 1)
    }

    /// Extends the lease of delivery `token` on order `id` to `until_ms`;
    /// false when the delivery no longer holds the order.
    pub async fn renew_lease(&self, id: i64, token: &str, until_ms: i64) -> Result<bool, StoreError> {
        let renewed = with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE orders SET lease_until_ms = $1 WHERE id = $2 AND status = 'processing' AND claim_token = $3",
            )
            .bind(until_ms)
            .bind(id)
            .bind(token)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })?;
        Ok(renewed == 1)
    }

    /// Ends the lease of delivery `token` on order `id` at once (its attempt
    /// failed and the job goes back to the queue): the next delivery need not
    /// wait for it to run out. The token stays, so a takeover still checks it.
    pub async fn end_lease(&self, id: i64, token: &str) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            sqlx::query(
                "UPDATE orders SET lease_until_ms = 0 WHERE id = $1 AND status = 'processing' AND claim_token = $2",
            )
            .bind(id)
            .bind(token)
            .execute(pool)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }
}
