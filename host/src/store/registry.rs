//! The component registry's rows: versions (their `.wasm` stored once per
//! sha256), the version each slot serves, what happened to each slot, and
//! the processes following it. The rules layer decides; this only reads and
//! writes, each change of a slot guarded by the version it replaces.

use chrono::{DateTime, Utc};

use super::statements::now;
use super::{Pool, Store, StoreError, with_pool};

/// The channel PostgreSQL notifies on each change of a slot.
pub const REGISTRY_CHANNEL: &str = "component_registry";

/// The statement recording an event (written out per backend by `with_pool!`).
const INSERT_EVENT: &str = "INSERT INTO component_events \
     (slot, kind, version_id, component, version, sha256, source, reason, added_by, at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// [`INSERT_EVENT`] for `event`, run on `executor`.
macro_rules! insert_event {
    ($executor:expr, $event:expr) => {{
        let event: &SlotEventRow = $event;
        sqlx::query(INSERT_EVENT)
            .bind(&event.slot)
            .bind(&event.kind)
            .bind(event.version_id)
            .bind(&event.component)
            .bind(&event.version)
            .bind(&event.sha256)
            .bind(&event.source)
            .bind(&event.reason)
            .bind(&event.added_by)
            .bind(event.at)
            .execute($executor)
            .await
            .map(|_| ())
    }};
}

/// A version to store.
#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    pub slot: &'a str,
    pub fingerprint: &'a str,
    pub sha256: &'a str,
    pub wasm: &'a [u8],
    pub config_text: Option<&'a str>,
    /// JSON `[[file name, text], ...]`.
    pub fixtures: Option<&'a str>,
    pub component: &'a str,
    pub version: &'a str,
    pub source: &'a str,
    pub added_by: &'a str,
    /// The gate's report, JSON.
    pub gate_report: &'a str,
}

/// A stored version, without its `.wasm`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub id: i64,
    pub slot: String,
    pub fingerprint: String,
    pub sha256: String,
    pub config_text: Option<String>,
    pub fixtures: Option<String>,
    pub component: String,
    pub version: String,
    pub source: String,
    pub added_by: String,
    pub added_at: DateTime<Utc>,
    pub gate_report: String,
    pub failed: bool,
    pub probation_calls: i64,
    pub probation_failures: i64,
}

const VERSION_COLUMNS: &str = "id, slot, fingerprint, sha256, config_text, fixtures, component, version, source, \
     added_by, added_at, gate_report, failed, probation_calls, probation_failures";

/// The version a slot serves.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ActiveRow {
    pub slot: String,
    pub version_id: i64,
    /// What activated it.
    pub source: String,
    /// How many times the slot changed.
    pub generation: i64,
    pub changed_at: DateTime<Utc>,
}

/// Something that happened to a slot.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SlotEventRow {
    pub slot: String,
    pub kind: String,
    pub version_id: Option<i64>,
    pub component: String,
    pub version: String,
    pub sha256: String,
    pub source: String,
    pub reason: Option<String>,
    pub added_by: String,
    pub at: DateTime<Utc>,
}

/// A process following the registry, as it last reported.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProcessRow {
    pub id: String,
    pub role: String,
    pub host: String,
    pub pid: i64,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// JSON, see the migration.
    pub serving: String,
    pub problems: String,
}

/// Notifications of the registry's changes (PostgreSQL only).
pub struct RegistryChanges(sqlx::postgres::PgListener);

impl RegistryChanges {
    /// Waits for the next change. A lost connection is re-established on
    /// the next call; what changed meanwhile is found by a periodic look.
    pub async fn next(&mut self) -> Result<(), StoreError> {
        self.0.recv().await?;
        Ok(())
    }
}

/// Which version a slot must be serving for a change to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever it serves (or nothing).
    Any,
    /// Exactly this version.
    Serving(i64),
}

/// The probation count of a version after one more call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Probation {
    pub probation_calls: i64,
    pub probation_failures: i64,
}

impl Store {
    /// The store the component registry's work uses. On a SQLite file it
    /// is a connection of its own: the store's one connection writes every
    /// order, and a heartbeat waiting out a file another process holds
    /// locked must not keep an order waiting behind it. On PostgreSQL (or an
    /// in-memory SQLite database, which a second connection would not see)
    /// it is the same pool.
    pub async fn for_registry(&self) -> Result<Store, StoreError> {
        let Pool::Sqlite(pool) = &self.pool else { return Ok(self.clone()) };
        let options = (*pool.connect_options()).clone();
        if options.get_filename().as_os_str().is_empty() || options.get_filename() == std::path::Path::new(":memory:") {
            return Ok(self.clone());
        }
        let own = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        Ok(Store::new(Pool::Sqlite(own), self.components_sql.clone(), None))
    }

    /// Stores `new` (its `.wasm` once per sha256) unless a version with its
    /// fingerprint exists; returns the version's id either way.
    pub async fn add_component_version(&self, new: &NewVersion<'_>) -> Result<i64, StoreError> {
        let at = now();
        let id = with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO component_blobs (sha256, wasm, added_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(new.sha256)
            .bind(new.wasm)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO component_versions (slot, fingerprint, sha256, config_text, fixtures, component, version, \
                 source, added_by, added_at, gate_report) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (slot, fingerprint) DO NOTHING",
            )
            .bind(new.slot)
            .bind(new.fingerprint)
            .bind(new.sha256)
            .bind(new.config_text)
            .bind(new.fixtures)
            .bind(new.component)
            .bind(new.version)
            .bind(new.source)
            .bind(new.added_by)
            .bind(at)
            .bind(new.gate_report)
            .execute(&mut *tx)
            .await?;
            let id: i64 = sqlx::query_scalar("SELECT id FROM component_versions WHERE slot = $1 AND fingerprint = $2")
                .bind(new.slot)
                .bind(new.fingerprint)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            id
        });
        Ok(id)
    }

    /// Makes version `id` serve `slot` if the slot serves what `expect`
    /// says, recording `events` (what happened, in order) in the same
    /// transaction, and notifying the processes that follow. `None` when the
    /// slot had changed in between. An empty slot meets any expectation.
    pub async fn activate_component_version(
        &self,
        slot: &str,
        id: i64,
        source: &str,
        expect: Expect,
        events: &[SlotEventRow],
    ) -> Result<Option<ActiveRow>, StoreError> {
        let guard = match expect {
            Expect::Any => String::new(),
            Expect::Serving(_) => " WHERE component_slots.version_id = $5".into(),
        };
        let upsert = format!(
            "INSERT INTO component_slots (slot, version_id, source, generation, changed_at) \
             VALUES ($1, $2, $4, 1, $3) ON CONFLICT (slot) DO UPDATE SET version_id = excluded.version_id, \
             source = excluded.source, generation = component_slots.generation + 1, \
             changed_at = excluded.changed_at{guard} RETURNING slot, version_id, source, generation, changed_at"
        );
        let notify = matches!(self.pool, Pool::Postgres(_));
        let active = with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut query = sqlx::query_as::<_, ActiveRow>(&upsert).bind(slot).bind(id).bind(now()).bind(source);
            if let Expect::Serving(current) = expect {
                query = query.bind(current);
            }
            let Some(active) = query.fetch_optional(&mut *tx).await? else { return Ok(None) };
            for event in events {
                insert_event!(&mut *tx, event)?;
            }
            if notify {
                sqlx::query("SELECT pg_notify($1, $2)").bind(REGISTRY_CHANNEL).bind(slot).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            active
        });
        Ok(Some(active))
    }

    /// Notifications of the registry's changes, where the backend sends them.
    pub async fn registry_changes(&self) -> Result<Option<RegistryChanges>, StoreError> {
        let Pool::Postgres(pool) = &self.pool else { return Ok(None) };
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(REGISTRY_CHANNEL).await?;
        Ok(Some(RegistryChanges(listener)))
    }

    /// Records something that happened to a slot without changing it (a rejection).
    pub async fn record_slot_event(&self, event: &SlotEventRow) -> Result<(), StoreError> {
        with_pool!(self, |pool| insert_event!(pool, event))?;
        Ok(())
    }

    /// The version each slot serves.
    pub async fn active_component_versions(&self) -> Result<Vec<ActiveRow>, StoreError> {
        let query = "SELECT slot, version_id, source, generation, changed_at FROM component_slots ORDER BY slot";
        Ok(with_pool!(self, |pool| sqlx::query_as(query).fetch_all(pool).await)?)
    }

    /// Version `id`, if stored.
    pub async fn component_version(&self, id: i64) -> Result<Option<VersionRow>, StoreError> {
        let query = format!("SELECT {VERSION_COLUMNS} FROM component_versions WHERE id = $1");
        Ok(with_pool!(self, |pool| sqlx::query_as(&query).bind(id).fetch_optional(pool).await)?)
    }

    /// The `.wasm` stored under `sha256`.
    pub async fn component_wasm(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let query = "SELECT wasm FROM component_blobs WHERE sha256 = $1";
        let wasm = with_pool!(self, |pool| sqlx::query_scalar(query).bind(sha256).fetch_optional(pool).await)?;
        wasm.ok_or(StoreError::NotFound)
    }

    /// The version of `slot` with `fingerprint`, if stored.
    pub async fn component_version_by_fingerprint(
        &self,
        slot: &str,
        fingerprint: &str,
    ) -> Result<Option<VersionRow>, StoreError> {
        let query = format!("SELECT {VERSION_COLUMNS} FROM component_versions WHERE slot = $1 AND fingerprint = $2");
        Ok(with_pool!(self, |pool| sqlx::query_as(&query).bind(slot).bind(fingerprint).fetch_optional(pool).await)?)
    }

    /// `slot`'s versions, the newest `limit`, oldest first.
    pub async fn component_versions(&self, slot: &str, limit: i64) -> Result<Vec<VersionRow>, StoreError> {
        let query = format!(
            "SELECT * FROM (SELECT {VERSION_COLUMNS} FROM component_versions WHERE slot = $1 ORDER BY id DESC LIMIT $2) \
             AS newest ORDER BY id"
        );
        Ok(with_pool!(self, |pool| sqlx::query_as(&query).bind(slot).bind(limit).fetch_all(pool).await)?)
    }

    /// `slot`'s events, the newest `limit`, oldest first.
    pub async fn slot_events(&self, slot: &str, limit: i64) -> Result<Vec<SlotEventRow>, StoreError> {
        let query = "SELECT slot, kind, version_id, component, version, sha256, source, reason, added_by, at FROM \
             (SELECT * FROM component_events WHERE slot = $1 ORDER BY id DESC LIMIT $2) AS newest ORDER BY id";
        Ok(with_pool!(self, |pool| sqlx::query_as(query).bind(slot).bind(limit).fetch_all(pool).await)?)
    }

    /// The version a rollback of `slot` returns to: the one most recently
    /// activated that is not `current` and never failed.
    pub async fn last_good_component_version(&self, slot: &str, current: i64) -> Result<Option<i64>, StoreError> {
        let query = "SELECT e.version_id FROM component_events e JOIN component_versions v ON v.id = e.version_id \
             WHERE e.slot = $1 AND e.kind = 'activated' AND e.version_id <> $2 AND NOT v.failed \
             ORDER BY e.id DESC LIMIT 1";
        Ok(with_pool!(self, |pool| sqlx::query_scalar(query).bind(slot).bind(current).fetch_optional(pool).await)?)
    }

    /// Marks version `id` as failed: no rollback returns to it.
    pub async fn mark_component_failed(&self, id: i64) -> Result<(), StoreError> {
        let query = "UPDATE component_versions SET failed = TRUE WHERE id = $1";
        with_pool!(self, |pool| sqlx::query(query).bind(id).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Counts one more production call of version `id` while it is on
    /// probation (fewer than `window` calls counted, not failed); `None`
    /// once it is not.
    pub async fn count_probation_call(
        &self,
        id: i64,
        failed: bool,
        window: i64,
    ) -> Result<Option<Probation>, StoreError> {
        let query = "UPDATE component_versions SET probation_calls = probation_calls + 1, \
             probation_failures = probation_failures + $2 WHERE id = $1 AND probation_calls < $3 AND NOT failed \
             RETURNING probation_calls, probation_failures";
        let counted = with_pool!(self, |pool| {
            sqlx::query_as(query).bind(id).bind(i64::from(failed)).bind(window).fetch_optional(pool).await
        })?;
        Ok(counted)
    }

    /// Records what process `row.id` serves now (inserted the first time).
    pub async fn report_process(&self, row: &ProcessRow) -> Result<(), StoreError> {
        let query = "INSERT INTO component_processes (id, role, host, pid, started_at, last_seen, serving, problems) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, \
             serving = excluded.serving, problems = excluded.problems";
        with_pool!(self, |pool| {
            sqlx::query(query)
                .bind(&row.id)
                .bind(&row.role)
                .bind(&row.host)
                .bind(row.pid)
                .bind(row.started_at)
                .bind(row.last_seen)
                .bind(&row.serving)
                .bind(&row.problems)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// Forgets process `id` (it stopped).
    pub async fn forget_process(&self, id: &str) -> Result<(), StoreError> {
        let query = "DELETE FROM component_processes WHERE id = $1";
        with_pool!(self, |pool| sqlx::query(query).bind(id).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Forgets the processes not seen since `stale` (they died without a word).
    pub async fn forget_processes_unseen_since(&self, stale: DateTime<Utc>) -> Result<(), StoreError> {
        let query = "DELETE FROM component_processes WHERE last_seen < $1";
        with_pool!(self, |pool| sqlx::query(query).bind(stale).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// The processes seen since `since`, the oldest started first.
    pub async fn processes_seen_since(&self, since: DateTime<Utc>) -> Result<Vec<ProcessRow>, StoreError> {
        let query = "SELECT id, role, host, pid, started_at, last_seen, serving, problems FROM component_processes \
             WHERE last_seen >= $1 ORDER BY started_at, id";
        Ok(with_pool!(self, |pool| sqlx::query_as(query).bind(since).fetch_all(pool).await)?)
    }
}
