//! Post edits: the author replaces a live post's text and content (within `FANLINE_POST_EDIT_WINDOW_SECS`
//! of the post's time, unlimited by default). Feeds, timelines and inboxes read the post's current row,
//! so nothing is fanned out again. Applied once per event by the author key's watermark
//! ([`crate::watermark`], through [`crate::users`]), so a replay leaves the same version.

use schemas::PostEdited;

use crate::im::{attachments_json, searchable_text, ImOutcome, Refusal};
use crate::policy::Policy;

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// Applies an edit: refused for a post that is not the author's, deleted, missing or past the window.
pub(crate) async fn apply(
    tx: &mut Tx,
    policy: &Policy,
    edit: &PostEdited,
) -> Result<ImOutcome, sqlx::Error> {
    let found: Option<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT post_id, created_at FROM posts
         WHERE post_id = coalesce((SELECT post_id FROM post_aliases WHERE alias_post_id = $1), $1)
           AND author = $2 AND deleted_at IS NULL",
    )
    .bind(edit.post_id.as_str())
    .bind(edit.author.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let Some((post_id, created_at)) = found else {
        return Ok(ImOutcome::refused(Refusal::NoSuchMessage));
    };
    if policy
        .post_edit_window
        .is_some_and(|window| edit.edited_at - created_at > window)
    {
        return Ok(ImOutcome::refused(Refusal::EditWindow));
    }
    sqlx::query(
        "UPDATE posts
         SET body = $2, content_type = $3, attachments = $4::jsonb, payload = $5,
             search = $6::tsvector, version = version + 1, edited_at = $7
         WHERE post_id = $1",
    )
    .bind(&post_id)
    .bind(&edit.body)
    .bind(edit.content.content_type.label())
    .bind(attachments_json(&edit.content))
    .bind(edit.content.payload.as_ref())
    .bind(policy.searchable(&searchable_text(&edit.body, &edit.content)))
    .bind(edit.edited_at)
    .execute(&mut **tx)
    .await?;
    let kept: Vec<&str> = edit
        .content
        .attachments
        .iter()
        .map(|a| a.id.as_str())
        .collect();
    // Attachments the post no longer names lose this holder (the sweep may delete them).
    sqlx::query(
        "DELETE FROM post_attachments WHERE post_id = $1 AND attachment_id <> ALL($2::text[])",
    )
    .bind(&post_id)
    .bind(&kept)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO post_attachments (post_id, attachment_id)
         SELECT $1, id FROM unnest($2::text[]) AS id ON CONFLICT DO NOTHING",
    )
    .bind(&post_id)
    .bind(&kept)
    .execute(&mut **tx)
    .await?;
    Ok(ImOutcome {
        applied: 1,
        ..ImOutcome::default()
    })
}
