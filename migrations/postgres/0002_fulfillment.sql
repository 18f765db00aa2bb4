-- Fulfillment: the job that moved an order to `processing` (so a redelivered
-- job resumes it and a stale duplicate is skipped), and the outbox as a
-- database-backed job queue when no Redis is configured.

ALTER TABLE orders ADD COLUMN fulfillment_job TEXT;

-- The order a fulfillment job is for, so the reconciler can tell which
-- pending orders have no job in flight.
ALTER TABLE outbox ADD COLUMN order_id BIGINT;
-- The database-backed queue: when a worker claimed the row (epoch ms), when
-- it may next be claimed (retry backoff, epoch ms), and its dead-lettering.
ALTER TABLE outbox ADD COLUMN claimed_at_ms BIGINT;
ALTER TABLE outbox ADD COLUMN available_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN dead_at TIMESTAMPTZ;
ALTER TABLE outbox ADD COLUMN last_error TEXT;

UPDATE outbox SET order_id = (payload::json ->> 'order_id')::BIGINT WHERE topic = 'fulfillment';

CREATE INDEX outbox_order_idx ON outbox (order_id) WHERE order_id IS NOT NULL;
