//! The operators' read API: the moderation queue (`GET /v1/admin/reports`). Operators are the
//! deployment's configuration (`FANLINE_OPERATORS`); everyone else gets `403`.

use std::sync::Arc;

use authkit::{Bearer, Operators};
use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use httpkit::openapi::{BadRequest, Forbidden, InternalError, Unauthorized, Unavailable};
use httpkit::{ApiError, QueryParams};
use schemas::api::{decode_time_cursor, encode_time_cursor, ReportItem, ReportPage};
use sqlx::PgPool;

use crate::failure::database_error;
use crate::params::{cursor_param, page_limit, page_of};

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/v1/admin/reports", get(reports))
        .with_state(pool)
}

/// Reports after the cursor ($1 time, $2 id), oldest first, open ones only unless $3; $4 rows. The
/// reported message's or post's current text comes along.
const REPORTS_SQL: &str = "SELECT r.report_id, r.reporter, r.kind, r.subject, r.context, r.reason,
            r.created_at, coalesce(m.body, p.body), r.resolved_by, r.resolution, r.resolved_at
     FROM reports r
     LEFT JOIN messages m ON r.kind = 'message' AND m.message_id = r.subject
     LEFT JOIN posts p ON r.kind = 'post' AND p.post_id = r.subject
     WHERE r.reporter IS NOT NULL AND ($3 OR r.resolved_at IS NULL)
       AND (r.created_at, r.report_id) > (coalesce($1, '-infinity'::timestamptz), coalesce($2, ''))
     ORDER BY r.created_at, r.report_id LIMIT $4";

type ReportRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    DateTime<Utc>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
);

/// The moderation queue (operators).
///
/// Reports, oldest first: the open ones, or all with `state=all`. Each carries the reported message's
/// or post's current text. Resolve one with `PUT /v1/admin/reports/{report_id}` at ingest.
#[utoipa::path(
    get, path = "/v1/admin/reports", tag = "moderation",
    params(
        ("state" = Option<String>, Query, description = "`open` (the default) or `all`."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size, 20 when not given."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of reports.", body = ReportPage),
        BadRequest, Unauthorized, Forbidden, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn reports(
    bearer: Bearer,
    State(pool): State<PgPool>,
    Extension(operators): Extension<Arc<Operators>>,
    params: QueryParams,
) -> Result<Json<ReportPage>, ApiError> {
    operators.require(bearer.user())?;
    let all = match params.get("state") {
        None | Some("open") => false,
        Some("all") => true,
        Some(_) => return Err(ApiError::bad_field("state", "must be open or all")),
    };
    let limit = page_limit(&params)?;
    let (at, after) = cursor_param(&params, decode_time_cursor)?.unzip();
    let rows: Vec<ReportRow> = sqlx::query_as(REPORTS_SQL)
        .bind(at)
        .bind(after)
        .bind(all)
        .bind(limit + 1)
        .fetch_all(&pool)
        .await
        .map_err(database_error)?;
    let reports: Vec<ReportItem> = rows
        .into_iter()
        .map(|r| ReportItem {
            report_id: r.0,
            reporter: r.1,
            kind: r.2,
            subject: r.3,
            context: r.4,
            reason: r.5,
            created_at: r.6,
            content: r.7,
            resolved_by: r.8,
            resolution: r.9,
            resolved_at: r.10,
        })
        .collect();
    let (reports, next_cursor) = page_of(reports, limit, |last| {
        encode_time_cursor(last.created_at, &last.report_id)
    });
    Ok(Json(ReportPage {
        reports,
        next_cursor,
    }))
}
