//! What a failed database call answers: one mapping for the sqlx pool and the page reads.

use httpkit::ApiError;
use schemas::db::DbFailure;

/// 503 while the database is unavailable (the client may retry); 500 for anything else, which is a
/// bug on our side and must not look like an outage.
pub(crate) fn database_error(err: sqlx::Error) -> ApiError {
    failure_response(schemas::db::classify(&err), &err)
}

/// The same for a page read ([`crate::db::ReadPool`]).
pub(crate) fn read_error(err: crate::db::ReadError) -> ApiError {
    failure_response(err.failure(), &err)
}

fn failure_response(failure: DbFailure, err: &dyn std::fmt::Display) -> ApiError {
    match failure {
        DbFailure::Unavailable => {
            tracing::warn!(error = %err, "database unavailable");
            ApiError::unavailable("database unavailable")
        }
        DbFailure::Refused | DbFailure::Bug => {
            tracing::error!(error = %err, "query failed");
            ApiError::internal()
        }
    }
}
