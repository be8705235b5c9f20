//! What a failed Postgres call means for its caller, decided once for every service.
//!
//! fanout retries [`DbFailure::Unavailable`] and [`DbFailure::Bug`] (a SQL bug must not dead-letter good
//! events: after the fix and a restart they apply) and dead-letters [`DbFailure::Refused`]; the reader
//! answers `503` to `Unavailable` and `500` to the rest, so a SQL bug never looks like an outage.

/// The `LISTEN` channel readers wake on: the inbox triggers' notifications, and session ends written
/// as [`SESSION_ENDED_PREFIX`] + the session id (by the reader's logout and revocations, and by fanout
/// when an account is deleted).
pub const SYNC_CHANNEL: &str = "fanline_sync";
/// The prefix of a session end's notification on [`SYNC_CHANNEL`].
pub const SESSION_ENDED_PREFIX: &str = "s:";

/// The kind of a Postgres failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFailure {
    /// The database is down, restarting, overloaded or too slow (connection errors, timeouts,
    /// serialization failures, deadlocks, admin shutdown): the same call may succeed later.
    Unavailable,
    /// The data was refused (SQLSTATE classes 22 data exception and 23 integrity constraint): the same
    /// call fails again.
    Refused,
    /// Our SQL or schema is wrong (undefined table or column, syntax, a type that does not decode).
    Bug,
}

/// check_violation: also what Postgres raises for a row that fits no partition.
const NO_PARTITION: &str = "23514";

/// Classifies a sqlx error.
pub fn classify(err: &sqlx::Error) -> DbFailure {
    match err {
        // A row for which no partition exists yet (a seq past the partitions fanout's retention task
        // created: it was not running) is refused without a constraint name, unlike a CHECK: it
        // applies once the partition is there, so it is retried, never dead-lettered.
        sqlx::Error::Database(db)
            if db.code().as_deref() == Some(NO_PARTITION) && db.constraint().is_none() =>
        {
            DbFailure::Unavailable
        }
        sqlx::Error::Database(db) => classify_sqlstate(db.code().as_deref().unwrap_or_default()),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => DbFailure::Unavailable,
        sqlx::Error::Encode(_) => DbFailure::Refused,
        _ => DbFailure::Bug,
    }
}

/// Classifies a SQLSTATE code (five characters; the first two are its class).
pub fn classify_sqlstate(code: &str) -> DbFailure {
    match code.get(..2).unwrap_or_default() {
        "22" | "23" => DbFailure::Refused,
        // 08 connection exception, 40 transaction rollback (serialization, deadlock), 53 insufficient
        // resources, 57 operator intervention (statement timeout, admin shutdown, cannot connect now),
        // 58 system error.
        "08" | "40" | "53" | "57" | "58" => DbFailure::Unavailable,
        // Of class 55 only "lock not available" passes with time; the rest (e.g. currval before
        // nextval) is our SQL.
        _ if code == "55P03" => DbFailure::Unavailable,
        _ => DbFailure::Bug,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified_by_class() {
        assert_eq!(classify_sqlstate("23505"), DbFailure::Refused);
        assert_eq!(classify_sqlstate("22P02"), DbFailure::Refused);
        assert_eq!(
            classify_sqlstate("57014"),
            DbFailure::Unavailable,
            "statement timeout"
        );
        assert_eq!(
            classify_sqlstate("57P01"),
            DbFailure::Unavailable,
            "admin shutdown"
        );
        assert_eq!(
            classify_sqlstate("40001"),
            DbFailure::Unavailable,
            "serialization failure"
        );
        assert_eq!(classify_sqlstate("08006"), DbFailure::Unavailable);
        assert_eq!(
            classify_sqlstate("42P01"),
            DbFailure::Bug,
            "undefined table"
        );
        assert_eq!(
            classify_sqlstate("42703"),
            DbFailure::Bug,
            "undefined column"
        );
        assert_eq!(
            classify_sqlstate("55P03"),
            DbFailure::Unavailable,
            "lock not available"
        );
        assert_eq!(
            classify_sqlstate("55000"),
            DbFailure::Bug,
            "currval before nextval"
        );
        assert_eq!(classify_sqlstate(""), DbFailure::Bug);
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), DbFailure::Unavailable);
        assert_eq!(classify(&sqlx::Error::RowNotFound), DbFailure::Bug);
    }
}
