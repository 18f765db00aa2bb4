-- The SQLite twin of migrations/postgres/0002_fulfillment.sql.
-- Fulfillment: the job that moved an order to `processing` (so a redelivered
-- job resumes it and a stale duplicate is skipped), and the outbox as a
-- database-backed job queue when no Redis is configured.

ALTER TABLE orders ADD COLUMN fulfillment_job TEXT;

ALTER TABLE outbox ADD COLUMN order_id BIGINT;
ALTER TABLE outbox ADD COLUMN claimed_at_ms BIGINT;
ALTER TABLE outbox ADD COLUMN available_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN dead_at TEXT;
ALTER TABLE outbox ADD COLUMN last_error TEXT;

UPDATE outbox SET order_id = json_extract(payload, '$.order_id') WHERE topic = 'fulfillment';

CREATE INDEX outbox_order_idx ON outbox (order_id) WHERE order_id IS NOT NULL;
