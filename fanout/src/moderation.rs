//! Moderation records, applied through a user's key (see [`crate::users`]): reports (a filing, keyed
//! by the reporter, and a resolution, keyed by the operator, merge into one row in either order) and
//! disabled accounts (keyed by the account, in order with its registration). Operators' removals of
//! messages and dissolutions of groups are applied with the conversation's events ([`crate::im`]).

use schemas::{AccountModeration, ReportFiled, ReportResolved};
use sqlx::{Postgres, Transaction};

use crate::outcome::ImOutcome;
use crate::sourced::SourcedEvent;

type Tx = Transaction<'static, Postgres>;

/// Records a report (its resolution may have arrived first).
pub(crate) async fn apply_report(
    tx: &mut Tx,
    report: &ReportFiled,
) -> Result<ImOutcome, sqlx::Error> {
    let written = sqlx::query(
        "INSERT INTO reports (report_id, reporter, kind, subject, context, reason, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (report_id) DO UPDATE
         SET reporter = EXCLUDED.reporter, kind = EXCLUDED.kind, subject = EXCLUDED.subject,
             context = EXCLUDED.context, reason = EXCLUDED.reason, created_at = EXCLUDED.created_at
         WHERE reports.reporter IS NULL",
    )
    .bind(&report.report_id)
    .bind(report.reporter.as_str())
    .bind(report.kind.as_str())
    .bind(&report.subject)
    .bind(report.context.as_deref())
    .bind(&report.reason)
    .bind(report.created_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(ImOutcome::applied_if(written > 0))
}

/// Records a report's resolution (its filing may arrive later); the first resolution stands.
pub(crate) async fn apply_resolved(
    tx: &mut Tx,
    resolved: &ReportResolved,
) -> Result<ImOutcome, sqlx::Error> {
    let written = sqlx::query(
        "INSERT INTO reports (report_id, resolved_by, resolution, resolved_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (report_id) DO UPDATE
         SET resolved_by = EXCLUDED.resolved_by, resolution = EXCLUDED.resolution,
             resolved_at = EXCLUDED.resolved_at
         WHERE reports.resolved_at IS NULL",
    )
    .bind(&resolved.report_id)
    .bind(resolved.by.as_str())
    .bind(&resolved.resolution)
    .bind(resolved.resolved_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(ImOutcome::applied_if(written > 0))
}

/// Disables (or re-enables) an account. The services poll `disabled_accounts` and refuse the
/// account's tokens; the readers end its sessions.
pub(crate) async fn apply_disabled(
    tx: &mut Tx,
    event: &SourcedEvent,
    change: &AccountModeration,
    disabled: bool,
) -> Result<ImOutcome, sqlx::Error> {
    let rows = if disabled {
        sqlx::query(
            "INSERT INTO disabled_accounts (user_id, disabled_by, reason, disabled_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(change.user.as_str())
        .bind(change.by.as_str())
        .bind(change.reason.as_deref())
        .bind(event.envelope.ts)
        .execute(&mut **tx)
        .await?
    } else {
        sqlx::query("DELETE FROM disabled_accounts WHERE user_id = $1")
            .bind(change.user.as_str())
            .execute(&mut **tx)
            .await?
    };
    Ok(ImOutcome::applied_if(rows.rows_affected() > 0))
}
