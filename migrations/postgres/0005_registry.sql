-- The component registry: every version of every slot's component, content
-- addressed, and per slot the version the whole deployment serves. Every
-- process (`host serve`, each `host worker`) loads the active versions from
-- here and follows their changes (NOTIFY on `component_registry`, and a
-- periodic look); a process's components folder is no longer the truth.

-- A `.wasm`, once, by its sha256.
CREATE TABLE component_blobs (
    sha256    TEXT PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    wasm      BYTEA NOT NULL,
    added_at  TIMESTAMPTZ NOT NULL
);

-- A version: the component, its `.toml` and its golden fixtures (the three
-- make its fingerprint), where it came from and the gate's report on it.
CREATE TABLE component_versions (
    id                  BIGSERIAL PRIMARY KEY,
    slot                TEXT NOT NULL CHECK (slot IN ('validation', 'pricing', 'fulfillment')),
    fingerprint         TEXT NOT NULL,
    sha256              TEXT NOT NULL REFERENCES component_blobs (sha256),
    config_text         TEXT,
    -- JSON: [[file name, text], ...], or NULL without fixtures.
    fixtures            TEXT,
    component           TEXT NOT NULL,
    version             TEXT NOT NULL,
    -- What added it (`startup`, `folder`, `upload`, `cli`) and which process or host.
    source              TEXT NOT NULL,
    added_by            TEXT NOT NULL,
    added_at            TIMESTAMPTZ NOT NULL,
    gate_report         TEXT NOT NULL,
    -- Rolled back for failing: never restored by a rollback.
    failed              BOOLEAN NOT NULL DEFAULT FALSE,
    -- Its first calls in production, across every process (probation).
    probation_calls     BIGINT NOT NULL DEFAULT 0,
    probation_failures  BIGINT NOT NULL DEFAULT 0,
    UNIQUE (slot, fingerprint)
);

-- The version each slot serves, what activated it (`startup`, `folder`,
-- `upload`, `cli`, `rollback`); `generation` counts the slot's changes.
CREATE TABLE component_slots (
    slot        TEXT PRIMARY KEY CHECK (slot IN ('validation', 'pricing', 'fulfillment')),
    version_id  BIGINT NOT NULL REFERENCES component_versions (id),
    source      TEXT NOT NULL,
    generation  BIGINT NOT NULL,
    changed_at  TIMESTAMPTZ NOT NULL
);

-- What happened to each slot: activations, rejections, rollbacks.
CREATE TABLE component_events (
    id          BIGSERIAL PRIMARY KEY,
    slot        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('activated', 'rejected', 'rolled-back', 'auto-rolled-back')),
    -- The version concerned; NULL for a rejected candidate (not stored).
    version_id  BIGINT REFERENCES component_versions (id),
    component   TEXT NOT NULL,
    version     TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    source      TEXT NOT NULL,
    reason      TEXT,
    added_by    TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX component_events_slot_idx ON component_events (slot, id DESC);

-- The processes following the registry and what each serves (a heartbeat).
CREATE TABLE component_processes (
    id          TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    host        TEXT NOT NULL,
    pid         BIGINT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    last_seen   TIMESTAMPTZ NOT NULL,
    -- JSON: {slot: {"version_id", "sha256", "since"}} and {slot: "why the active version is not loaded"}.
    serving     TEXT NOT NULL,
    problems    TEXT NOT NULL
);
