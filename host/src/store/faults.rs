//! Telling the platform's faults from the job's (or the request's): a
//! database that is down, restarting, failing over, read-only, busy, or that
//! aborted a transaction to break a deadlock is *unavailable for now*. Work
//! that meets such a fault is retried later without counting an attempt,
//! and a client is answered 503 with `Retry-After`; anything else is the
//! work's own failure (or a bug).

/// Whether a database error means "down, restarting or contended right now"
/// rather than "this work is wrong".
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => match database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            Some(postgres) => is_transient_sqlstate(postgres.code()),
            None => database.code().is_some_and(|code| is_transient_sqlite_code(&code)),
        },
        _ => false,
    }
}

/// PostgreSQL error codes that say nothing about the statement: the
/// connection broke (class 08), the server is shutting down, restarting or
/// refusing connections (57P01 `admin_shutdown`, 57P02 `crash_shutdown`,
/// 57P03 `cannot_connect_now`), it ran out of resources (class 53, e.g.
/// too many connections), it is a read-only standby after a failover
/// (25006), or it aborted the transaction to keep it consistent (40001
/// `serialization_failure`, 40P01 `deadlock_detected`); trying again later
/// can succeed.
pub fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "25006" | "40001" | "40P01")
}

/// SQLite result codes (primary or extended, as sqlx reports them) that
/// mean the file is busy or locked by another connection, or cannot be read
/// or written right now (`SQLITE_BUSY` 5, `SQLITE_LOCKED` 6, `SQLITE_IOERR`
/// 10, `SQLITE_FULL` 13, `SQLITE_CANTOPEN` 14).
pub fn is_transient_sqlite_code(code: &str) -> bool {
    code.parse::<i32>().is_ok_and(|code| matches!(code & 0xff, 5 | 6 | 10 | 13 | 14))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_faults_of_postgres_are_transient() {
        for code in ["57P01", "57P02", "57P03", "25006", "40001", "40P01", "08006", "08001", "53300"] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn faults_of_the_statement_are_not() {
        // unique_violation, check_violation, not_null, invalid text, undefined table, syntax.
        for code in ["23505", "23514", "23502", "22P02", "22021", "42P01", "42601", "57014"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn busy_and_locked_sqlite_files_are_transient_in_every_extended_form() {
        // SQLITE_BUSY, SQLITE_BUSY_SNAPSHOT (517), SQLITE_LOCKED_SHAREDCACHE (262), SQLITE_IOERR_WRITE (778).
        for code in ["5", "517", "6", "262", "10", "778", "13", "14"] {
            assert!(is_transient_sqlite_code(code), "{code}");
        }
        // SQLITE_CONSTRAINT_UNIQUE (2067), SQLITE_ERROR, SQLITE_MISMATCH, not a number.
        for code in ["2067", "19", "1", "20", "busy"] {
            assert!(!is_transient_sqlite_code(code), "{code}");
        }
    }
}
