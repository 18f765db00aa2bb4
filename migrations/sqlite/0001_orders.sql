-- The SQLite twin of migrations/postgres/0001_orders.sql (the embedded default):
-- timestamps are RFC 3339 text, booleans 0/1, ids AUTOINCREMENT.
-- Products, orders, their items and history, the outbox and idempotency keys.
-- Money is an integer amount of the currency's minor unit everywhere.

CREATE TABLE products (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sku         TEXT NOT NULL UNIQUE CHECK (length(sku) BETWEEN 1 AND 64),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    price       BIGINT NOT NULL CHECK (price >= 0),
    currency    TEXT NOT NULL CHECK (currency GLOB '[A-Z][A-Z][A-Z]'),
    stock       BIGINT NOT NULL CHECK (stock >= 0),
    active      INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE orders (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id       BIGINT NOT NULL CHECK (user_id >= 0),
    status        TEXT NOT NULL CHECK (status IN
                    ('pending', 'processing', 'on_hold', 'fulfilled', 'shipped', 'delivered', 'cancelled')),
    status_reason TEXT,
    currency      TEXT NOT NULL CHECK (currency GLOB '[A-Z][A-Z][A-Z]'),
    subtotal      BIGINT NOT NULL CHECK (subtotal >= 0),
    discount      BIGINT NOT NULL CHECK (discount >= 0 AND discount <= subtotal),
    tax           BIGINT NOT NULL CHECK (tax >= 0),
    shipping      BIGINT NOT NULL CHECK (shipping >= 0),
    total         BIGINT NOT NULL CHECK (total = subtotal - discount + tax + shipping),
    notes         TEXT NOT NULL DEFAULT '[]',
    attributes    TEXT NOT NULL DEFAULT '[]',
    shipment      TEXT,
    version       BIGINT NOT NULL DEFAULT 1 CHECK (version >= 1),
    validated_by  TEXT NOT NULL,
    priced_by     TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX orders_user_idx ON orders (user_id, id DESC);
CREATE INDEX orders_status_idx ON orders (status, id DESC);

CREATE TABLE order_items (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id      BIGINT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no       INTEGER NOT NULL CHECK (line_no >= 0),
    product_id    BIGINT NOT NULL REFERENCES products (id),
    sku           TEXT NOT NULL,
    product_name  TEXT NOT NULL,
    unit_price    BIGINT NOT NULL CHECK (unit_price >= 0),
    quantity      INTEGER NOT NULL CHECK (quantity > 0),
    line_total    BIGINT NOT NULL CHECK (line_total = unit_price * quantity),
    UNIQUE (order_id, line_no)
);

CREATE TABLE order_status_history (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id       BIGINT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    from_status    TEXT,
    to_status      TEXT NOT NULL,
    reason         TEXT,
    correlation_id TEXT,
    changed_at     TEXT NOT NULL
);
CREATE INDEX order_status_history_order_idx ON order_status_history (order_id, id);

-- Which component (slot, name, version, sha256) took part in an order, and how long its call took.
CREATE TABLE order_decisions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id     BIGINT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    slot         TEXT NOT NULL CHECK (slot IN ('validation', 'pricing', 'fulfillment')),
    component    TEXT NOT NULL,
    version      TEXT NOT NULL,
    digest       TEXT NOT NULL,
    duration_us  BIGINT NOT NULL CHECK (duration_us >= 0),
    decided_at   TEXT NOT NULL
);
CREATE INDEX order_decisions_order_idx ON order_decisions (order_id, id);

-- Written in the same transaction as the change it announces; a relay publishes it.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    topic           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    correlation_id  TEXT,
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    published_at    TEXT
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;

CREATE TABLE idempotency_keys (
    key              TEXT PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    request_hash     TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('in_progress', 'completed')),
    response_status  INTEGER,
    response_body    TEXT,
    order_id         BIGINT REFERENCES orders (id) ON DELETE SET NULL,
    created_at       TEXT NOT NULL,
    expires_at       TEXT NOT NULL
);
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);
