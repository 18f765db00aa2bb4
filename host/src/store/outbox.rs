//! The outbox: messages written in the same transaction as the change they
//! announce, waiting for the relay to publish them.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, with_pool};

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
}

impl Store {
    /// The oldest unpublished messages, at most `limit`.
    pub async fn outbox_backlog(&self, limit: i64) -> Result<Vec<OutboxMessage>, StoreError> {
        let messages = with_pool!(self, |pool| {
            sqlx::query_as::<_, OutboxMessage>(
                "SELECT id, topic, payload, correlation_id, created_at FROM outbox \
                 WHERE published_at IS NULL ORDER BY id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await
        })?;
        Ok(messages)
    }
}
