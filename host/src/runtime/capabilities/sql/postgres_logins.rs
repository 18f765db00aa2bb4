//! The PostgreSQL logins components query as: one per slot, named
//! `<prefix>_<slot>` (`orderly_rules_validation`, …). Each may log in and
//! nothing else: no superuser, no role creation, no membership in any role
//! (so `SET ROLE` and `set_config('role', …)` lead nowhere), sessions
//! read-only by default. What a login may read is exactly the `SELECT`
//! privileges the service grants it from the active version's
//! `grants.sql.relations`; every other privilege on those relations is
//! revoked.
//!
//! The service creates the logins when its own login may create roles
//! (`host migrate`, and every start). Where it may not, an operator runs the
//! SQL that the error prints, once per database cluster.

use std::collections::BTreeSet;

use sqlx::PgConnection;
use sqlx::postgres::PgPool;

use crate::runtime::Slot;
use crate::runtime::slot_config::SqlGrant;

/// How components log in to PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentLogins {
    /// Role names are `<prefix>_<slot>`.
    pub prefix: String,
    /// Their password, where the server asks for one.
    pub password: Option<String>,
}

impl Default for ComponentLogins {
    fn default() -> Self {
        Self { prefix: "orderly_rules".into(), password: None }
    }
}

impl ComponentLogins {
    /// The login of `slot`'s components.
    pub fn role(&self, slot: Slot) -> String {
        format!("{}_{}", self.prefix, slot.name())
    }
}

/// Why the components' logins are not ready.
#[derive(Debug, thiserror::Error)]
pub enum LoginSetupError {
    /// The service's login may not create roles: an operator must.
    #[error(
        "the component logins do not exist and {login} may not create roles; run this once as a \
         superuser (or a role with CREATEROLE), then start again:\n{sql}"
    )]
    CannotCreate { login: String, sql: String },
    /// A login exists with powers a component must not have.
    #[error("refusing to let components query as {role}: it {reason}")]
    Unsafe { role: String, reason: String },
    /// The database failed.
    #[error("cannot set up the component logins: {0}")]
    Database(#[from] sqlx::Error),
}

/// A login's attributes, as far as safety goes.
#[derive(sqlx::FromRow)]
struct Attributes {
    rolsuper: bool,
    rolcreaterole: bool,
    rolcreatedb: bool,
    rolreplication: bool,
    rolbypassrls: bool,
    member_of: i64,
    owns: i64,
}

/// Creates the logins that are missing (when the service's login may) and
/// checks every one of them is safe to hand to a component.
pub async fn set_up(admin: &PgPool, logins: &ComponentLogins) -> Result<(), LoginSetupError> {
    let (login, may_create): (String, bool) = sqlx::query_as(
        "SELECT current_user::text, rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(admin)
    .await?;
    let mut missing = Vec::new();
    for slot in Slot::ALL {
        let role = logins.role(slot);
        match attributes(admin, &role).await? {
            Some(found) => check_safe(&role, &found)?,
            None if may_create => create(admin, &role, logins.password.as_deref()).await?,
            None => missing.push(role),
        }
    }
    if !missing.is_empty() {
        let sql = missing.iter().map(|role| create_sql(role)).collect::<Vec<_>>().join("\n");
        return Err(LoginSetupError::CannotCreate { login, sql });
    }
    Ok(())
}

async fn attributes(admin: &PgPool, role: &str) -> Result<Option<Attributes>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls,
                (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) AS member_of,
                (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid) AS owns
         FROM pg_roles r WHERE r.rolname = $1",
    )
    .bind(role)
    .fetch_optional(admin)
    .await
}

fn check_safe(role: &str, found: &Attributes) -> Result<(), LoginSetupError> {
    let reason = if found.rolsuper {
        "is a superuser"
    } else if found.rolcreaterole || found.rolcreatedb || found.rolreplication || found.rolbypassrls {
        "may create roles or databases, replicate or bypass row security"
    } else if found.member_of > 0 {
        "is a member of another role (a component could switch to it)"
    } else if found.owns > 0 {
        "owns tables in this database"
    } else {
        return Ok(());
    };
    Err(LoginSetupError::Unsafe { role: role.into(), reason: reason.into() })
}

/// The statement that creates `role`, for an operator to run (the password,
/// if any, left for them to add).
fn create_sql(role: &str) -> String {
    format!(
        "  CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS;\n  \
         ALTER ROLE {role} SET default_transaction_read_only = on;\n  \
         ALTER ROLE {role} SET statement_timeout = '5s';\n  \
         ALTER ROLE {role} SET idle_in_transaction_session_timeout = '5s';"
    )
}

/// Creates `role`; a concurrent start that created it first is fine.
async fn create(admin: &PgPool, role: &str, password: Option<&str>) -> Result<(), sqlx::Error> {
    // format() quotes the name and the password; neither can take a bound parameter here.
    let statement: String = sqlx::query_scalar(
        "SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION \
         NOBYPASSRLS PASSWORD %L', $1::text, $2::text)",
    )
    .bind(role)
    .bind(password)
    .fetch_one(admin)
    .await?;
    match sqlx::raw_sql(&statement).execute(admin).await {
        Ok(_) => {}
        // duplicate_object: another process created it a moment ago.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42710") => return Ok(()),
        Err(error) => return Err(error),
    }
    // Defaults for every session, should the service ever forget its own.
    for setting in
        ["default_transaction_read_only = on", "statement_timeout = '5s'", "idle_in_transaction_session_timeout = '5s'"]
    {
        let statement: String = sqlx::query_scalar("SELECT format('ALTER ROLE %I SET ', $1::text) || $2")
            .bind(role)
            .bind(setting)
            .fetch_one(admin)
            .await?;
        sqlx::raw_sql(&statement).execute(admin).await?;
    }
    tracing::info!(role, "created the components' login");
    Ok(())
}

/// Grants `role` `SELECT` on what `grant` names (and `USAGE` on their
/// schemas) and revokes every privilege it holds on any other relation.
///
/// In one transaction: a relation granted before and after is never
/// without its privilege in between (the version serving keeps querying
/// while the next one is installed). Under a lock: two processes installing
/// at once would otherwise update the same catalog rows concurrently, and
/// PostgreSQL refuses the second.
pub async fn apply_grant(admin: &PgPool, role: &str, grant: Option<&SqlGrant>) -> Result<(), String> {
    let fail = |error: sqlx::Error| format!("cannot grant {role} its relations: {error}");
    let mut transaction = admin.begin().await.map_err(fail)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('orderly component grants'))")
        .execute(&mut *transaction)
        .await
        .map_err(fail)?;
    let mut wanted = BTreeSet::new();
    let named: Vec<String> = grant
        .into_iter()
        .flat_map(SqlGrant::relation_names)
        .map(|(schema, name)| schema.map_or_else(|| name.to_string(), |schema| format!("{schema}.{name}")))
        .collect();
    for qualified in named {
        let found: Option<(String, String)> = sqlx::query_as(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = to_regclass($1)",
        )
        .bind(&qualified)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(fail)?;
        let relation = found.ok_or_else(|| format!("grants.sql.relations names {qualified}, which does not exist"))?;
        wanted.insert(relation);
    }
    let held: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT n.nspname::text, c.relname::text
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
         WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)",
    )
    .bind(role)
    .fetch_all(&mut *transaction)
    .await
    .map_err(fail)?;
    for statement in grant_statements(role, &held, &wanted) {
        run_formatted(&mut transaction, statement.template, statement.identifiers).await.map_err(fail)?;
    }
    transaction.commit().await.map_err(fail)
}

/// One statement of a grant, before the server quotes its identifiers.
struct GrantStatement {
    template: &'static str,
    identifiers: Vec<String>,
}

/// What makes `role` hold exactly `wanted`: revoke what it `held` beyond
/// that, then for each wanted relation its schema's usage and `SELECT` alone.
fn grant_statements(role: &str, held: &[(String, String)], wanted: &BTreeSet<(String, String)>) -> Vec<GrantStatement> {
    let statement = |template, identifiers: &[&str]| GrantStatement {
        template,
        identifiers: identifiers.iter().map(|identifier| identifier.to_string()).collect(),
    };
    let revoked = held.iter().filter(|relation| !wanted.contains(*relation));
    let mut statements: Vec<GrantStatement> =
        revoked.map(|(schema, name)| statement("REVOKE ALL ON TABLE %I.%I FROM %I", &[schema, name, role])).collect();
    for (schema, name) in wanted {
        statements.push(statement("GRANT USAGE ON SCHEMA %I TO %I", &[schema, role]));
        statements.push(statement("REVOKE ALL ON TABLE %I.%I FROM %I", &[schema, name, role]));
        statements.push(statement("GRANT SELECT ON TABLE %I.%I TO %I", &[schema, name, role]));
    }
    statements
}

/// Runs `template` with its `%I` identifiers quoted by the server.
async fn run_formatted(
    connection: &mut PgConnection,
    template: &'static str,
    identifiers: Vec<String>,
) -> Result<(), sqlx::Error> {
    let statement: String = sqlx::query_scalar("SELECT format($1, VARIADIC $2::text[])")
        .bind(template)
        .bind(identifiers)
        .fetch_one(&mut *connection)
        .await?;
    // Not cached: each grant's text is used once. (`raw_sql` would do, but
    // its future is not `Send` for every lifetime inside a transaction.)
    sqlx::query(&statement).persistent(false).execute(connection).await?;
    Ok(())
}
