//! Can this process serve? The database answers, Redis (when configured)
//! answers, and every rule slot holds a version. Both front ends report it:
//! `GET /ready` over HTTP and `grpc.health.v1` over gRPC.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::rules::Rules;
use crate::runtime::Slot;
use crate::store::Store;

/// How long a probe waits for its server.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One dependency's state: `up`, `down`, `empty` (a slot) or `embedded`
/// (the in-process stand-in for Redis), with what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub status: &'static str,
    pub detail: Option<String>,
}

impl Check {
    fn new(status: &'static str, detail: impl Into<Option<String>>) -> Self {
        Self { status, detail: detail.into() }
    }

    /// Whether this dependency lets the process serve.
    pub fn is_ok(&self) -> bool {
        matches!(self.status, "up" | "embedded")
    }
}

/// Every check, by name (`database`, `redis`, `slot:<name>`).
#[derive(Debug, Clone)]
pub struct Readiness {
    pub checks: BTreeMap<String, Check>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.checks.values().all(Check::is_ok)
    }
}

/// The probes of one process.
pub struct Health {
    store: Store,
    redis: Option<ConnectionManager>,
    rules: Arc<Rules>,
}

impl Health {
    pub fn new(store: Store, redis: Option<ConnectionManager>, rules: Arc<Rules>) -> Self {
        Self { store, redis, rules }
    }

    /// Probes every dependency now.
    pub async fn readiness(&self) -> Readiness {
        let mut checks = BTreeMap::new();
        checks.insert("database".into(), self.database().await);
        checks.insert("redis".into(), self.redis().await);
        checks.insert("registry".into(), self.registry());
        for slot in Slot::ALL {
            checks.insert(format!("slot:{}", slot.name()), self.slot(slot));
        }
        Readiness { checks }
    }

    /// Whether every rule slot holds a version (no server is asked).
    pub fn slots_filled(&self) -> bool {
        Slot::ALL.into_iter().all(|slot| self.rules.slots().get(slot).is_some())
    }

    async fn database(&self) -> Check {
        let backend = self.store.backend().name().to_owned();
        match tokio::time::timeout(PROBE_TIMEOUT, self.store.ping()).await {
            Ok(Ok(())) => Check::new("up", backend),
            Ok(Err(error)) => Check::new("down", format!("{backend}: {error}")),
            Err(_) => Check::new("down", format!("{backend}: no answer within {PROBE_TIMEOUT:?}")),
        }
    }

    async fn redis(&self) -> Check {
        let Some(connection) = &self.redis else { return Check::new("embedded", "in-process cache".to_owned()) };
        let mut connection = connection.clone();
        let command = redis::cmd("PING");
        match tokio::time::timeout(PROBE_TIMEOUT, command.query_async::<String>(&mut connection)).await {
            Ok(Ok(_)) => Check::new("up", None),
            Ok(Err(error)) => Check::new("down", error.to_string()),
            Err(_) => Check::new("down", format!("no answer within {PROBE_TIMEOUT:?}")),
        }
    }

    /// Whether this process has loaded the component registry's active versions.
    fn registry(&self) -> Check {
        if self.rules.swaps().loaded() {
            Check::new("up", None)
        } else {
            Check::new("loading", "the registry's active versions are not loaded yet".to_owned())
        }
    }

    fn slot(&self, slot: Slot) -> Check {
        match self.rules.slots().get(slot) {
            Some(component) => Check::new("up", format!("{}@{}", component.name, component.version)),
            None => Check::new("empty", None),
        }
    }
}
