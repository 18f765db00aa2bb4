-- The SQLite twin of migrations/postgres/0004_fencing.sql.
-- Fencing for fulfillment: the delivery of a job that holds a `processing`
-- order (its claim token) and until when its lease runs (epoch ms, renewed
-- while the policy runs). Another delivery of the job resumes the order only
-- once that lease has run out, and a decision is applied only while the
-- claim that took it still holds, so one order's policy never runs in two
-- workers at once and a worker that lost its lease applies nothing.
ALTER TABLE orders ADD COLUMN claim_token TEXT;
ALTER TABLE orders ADD COLUMN lease_until_ms BIGINT;

-- The database-backed queue's claims carry a token too: ack, fail, release
-- and renewal touch a row only while the claim is the caller's.
ALTER TABLE outbox ADD COLUMN claim_token TEXT;
