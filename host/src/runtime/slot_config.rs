//! A slot's `<slot>.toml`: who the component is, its limits, its grants and
//! its settings. Everything is deny-by-default: a missing grant means the
//! capability answers `denied`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::allowlist::Allowlist;

/// Everything the host knows about a slot's component besides its code.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlotConfig {
    /// Name and version, for the admin API, logs and decision records.
    #[serde(default)]
    pub component: ComponentMeta,
    /// Time and memory limits per call.
    #[serde(default)]
    pub limits: Limits,
    /// Which capabilities the component may use, and how far.
    #[serde(default)]
    pub grants: Grants,
    /// Settings the component reads through the `config` capability.
    #[serde(default, deserialize_with = "settings_as_text")]
    pub config: BTreeMap<String, String>,
}

/// How the component names itself.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ComponentMeta {
    /// A human name, for example `fulfillment-express`. Defaults to the slot.
    pub name: Option<String>,
    /// The component's version, for example `1.2.0`.
    pub version: Option<String>,
}

/// Per-call limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wall-clock budget of one call, instantiation and capability I/O included.
    pub deadline_ms: u64,
    /// The most linear memory one call may use.
    pub memory_mib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { deadline_ms: 100, memory_mib: 64 }
    }
}

impl Limits {
    /// The deadline as a [`Duration`].
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// The memory limit in bytes.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// The capabilities a slot is granted. `None` means denied.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Key-value access.
    pub kv: Option<KvGrant>,
    /// Read-only SQL access.
    pub sql: Option<SqlGrant>,
    /// Outbound HTTP access.
    pub http: Option<HttpGrant>,
}

/// Key-value access under one prefix.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KvGrant {
    /// Namespace for the component's keys; defaults to the slot name, so a
    /// swapped-in version of the same slot sees the same data.
    pub prefix: Option<String>,
    /// Largest value the component may store.
    pub max_value_bytes: usize,
    /// The most its namespace may hold: key and value bytes plus 64 bytes
    /// per entry; writes past it answer `limit-exceeded`.
    pub max_bytes: u64,
    /// How long one operation may wait on the store before it answers
    /// `timeout`, leaving the component the rest of its deadline to carry
    /// on without it (a store outage need not fail the call).
    pub timeout_ms: u64,
}

impl Default for KvGrant {
    fn default() -> Self {
        Self { prefix: None, max_value_bytes: 64 << 10, max_bytes: 64 << 20, timeout_ms: 50 }
    }
}

/// Read-only SQL access to the views and tables the grant names.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SqlGrant {
    /// The views and tables the component may read (`name` or
    /// `schema.name`); nothing else is readable. On PostgreSQL the slot's
    /// own login is granted `SELECT` on exactly these; on SQLite an
    /// authorizer allows reading only these (and what a named view reads).
    pub relations: Vec<String>,
    /// Statement timeout (never past the call's deadline).
    pub timeout_ms: u64,
    /// Most rows one query may return.
    pub max_rows: usize,
    /// Most bytes (sum of cell sizes) one query may return; on SQLite also
    /// the largest single value.
    pub max_bytes: usize,
}

impl Default for SqlGrant {
    fn default() -> Self {
        Self { relations: Vec::new(), timeout_ms: 500, max_rows: 1000, max_bytes: 1 << 20 }
    }
}

impl SqlGrant {
    /// The statement timeout as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Outbound HTTP access to an allowlist of hosts.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpGrant {
    /// Where the component may send requests: `scheme://host[:port]`
    /// entries matched as Spin matches `allowed_outbound_hosts` (see
    /// [`Allowlist`]). Nothing else is reachable.
    pub allow_hosts: Vec<String>,
    /// Timeout of one request, response body included.
    pub timeout_ms: u64,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
}

impl Default for HttpGrant {
    fn default() -> Self {
        Self { allow_hosts: Vec::new(), timeout_ms: 2000, max_response_bytes: 1 << 20 }
    }
}

impl HttpGrant {
    /// The request timeout as a [`Duration`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The allowlist, parsed (see [`Allowlist`] for the rules).
    pub fn allowlist(&self) -> Result<Allowlist, String> {
        Allowlist::parse(&self.allow_hosts)
    }
}

/// Why a slot configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum SlotConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// The file is not valid TOML or has unknown keys.
    #[error("invalid slot configuration {path}: {message}")]
    Invalid { path: String, message: String },
}

impl SlotConfig {
    /// Parses a `<slot>.toml` document.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SlotConfigError> {
        let invalid = |message: String| SlotConfigError::Invalid { path: origin.to_string(), message };
        let config: Self = toml::from_str(text).map_err(|error| {
            if error.message().contains("unknown field `role`") {
                // The old grant that switched roles per query: say what replaced it.
                return invalid(
                    "grants.sql.role is gone: components query under their slot's own login; \
                     name what they may read in grants.sql.relations"
                        .into(),
                );
            }
            invalid(error.message().to_string())
        })?;
        if let Some(grant) = &config.grants.sql {
            grant.check().map_err(invalid)?;
        }
        if let Some(grant) = &config.grants.http {
            grant.allowlist().map_err(invalid)?;
        }
        Ok(config)
    }

    /// Reads `path`; a missing file is the default configuration (no grants).
    pub fn read_or_default(path: &Path) -> Result<Self, SlotConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(SlotConfigError::Read { path: path.display().to_string(), source }),
        }
    }
}

impl SqlGrant {
    /// Refuses a relation that is not a plain (optionally schema-qualified)
    /// lower-case name.
    fn check(&self) -> Result<(), String> {
        for relation in &self.relations {
            let plain = match relation.split_once('.') {
                Some((schema, name)) => is_plain_identifier(schema) && is_plain_identifier(name),
                None => is_plain_identifier(relation),
            };
            if !plain {
                return Err(format!("grants.sql.relations: {relation:?} must be a lower-case name or schema.name"));
            }
        }
        Ok(())
    }

    /// The granted relations as (schema, name); unqualified names are
    /// `None`, resolved by the database's search path.
    pub fn relation_names(&self) -> impl Iterator<Item = (Option<&str>, &str)> {
        self.relations.iter().map(|relation| match relation.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, relation.as_str()),
        })
    }
}

/// A lower-case identifier, as grants name roles' relations.
fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

/// Settings are handed to components as text, whatever their TOML type, so
/// `tax_rate_bp = 800` and `tax_rate_bp = "800"` mean the same.
fn settings_as_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error> {
    let table = BTreeMap::<String, toml::Value>::deserialize(deserializer)?;
    Ok(table
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(text) => text,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => serde_json::to_string(&other).unwrap_or_default(),
            };
            (key, text)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_grants_nothing() {
        let config = SlotConfig::parse("", "test").unwrap();
        assert_eq!(config.grants, Grants::default());
        assert!(config.grants.kv.is_none() && config.grants.sql.is_none() && config.grants.http.is_none());
        assert_eq!(config.limits.deadline_ms, 100);
        assert_eq!(config.limits.memory_mib, 64);
    }

    #[test]
    fn settings_of_any_scalar_type_become_text() {
        let config = SlotConfig::parse("[config]\ntax_rate_bp = 800\nname = \"x\"\nflag = true\n", "t").unwrap();
        assert_eq!(config.config["tax_rate_bp"], "800");
        assert_eq!(config.config["name"], "x");
        assert_eq!(config.config["flag"], "true");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = SlotConfig::parse("[grants.kv]\nprefixx = \"a\"\n", "slot.toml").unwrap_err();
        assert!(error.to_string().contains("prefixx"), "{error}");
    }

    #[test]
    fn sql_relations_must_be_plain_names_and_the_old_role_is_refused() {
        let ok = SlotConfig::parse("[grants.sql]\nrelations = [\"open_orders\", \"rules.prices\"]\n", "t").unwrap();
        let names: Vec<_> = ok.grants.sql.as_ref().unwrap().relation_names().collect();
        assert_eq!(names, [(None, "open_orders"), (Some("rules"), "prices")]);
        for bad in ["orders; drop table x", "Orders", "a.b.c", "\"quoted\"", ""] {
            let toml = format!("[grants.sql]\nrelations = [{bad:?}]\n");
            assert!(SlotConfig::parse(&toml, "t").is_err(), "{bad:?} was accepted");
        }
        let error = SlotConfig::parse("[grants.sql]\nrole = \"rules_reader\"\n", "t").unwrap_err();
        assert!(error.to_string().contains("relations"), "{error}");
    }

    #[test]
    fn http_allowlists_are_checked_when_the_config_is_read() {
        let ok = "[grants.http]\nallow_hosts = [\"https://api.example.com\", \"http://127.0.0.1:8080\"]\n";
        assert!(SlotConfig::parse(ok, "t").is_ok());
        let error = SlotConfig::parse("[grants.http]\nallow_hosts = [\"api.example.com\"]\n", "t").unwrap_err();
        assert!(error.to_string().contains("scheme://host"), "{error}");
    }
}
