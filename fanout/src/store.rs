//! Applies events to Postgres: store timelines, the follow graph and sync timelines.
//!
//! One batch of events is one transaction. Every write is idempotent, so a batch that is applied again
//! (Kafka redelivers after a crash or rebalance, or an operator replays the topic) changes nothing:
//! - a post is inserted with `ON CONFLICT DO NOTHING`, and it is fanned out only when this transaction
//!   inserted it — the earlier transaction that inserted it also committed its fan-out;
//! - a follow edge remembers the Kafka position of the event that last set it and ignores older events.
//!
//! Delivery is push or pull per author ([`Policy`]): a post of an author in pull mode is written to the
//! store timeline and its author's own sync timeline only (O(1) rows), and readers merge it into feeds.
//! The mode each post was delivered with is stored on the post and never changes, so an author crossing
//! the threshold changes nothing for earlier posts.
//!
//! Sync sequence numbers are drawn only under the sync seq lock ([`crate::seq_lock`]): one [`SeqLock`]
//! per batch transaction, and every statement that draws one takes its [`SeqLockHeld`] token.
//!
//! IM events are applied one by one, in their place in the batch: a user's own events by
//! [`crate::users`], a conversation's by [`crate::im`].

use chrono::{DateTime, Utc};
use schemas::{Event, FollowChange, PostCreated, PostDeleted};
use sqlx::{PgPool, Postgres, Transaction};

use crate::activity::{self, ActivityEvent};
use crate::erasure;
use crate::im::{self, ImEvent};
use crate::policy::{next_mode, DeliveryMode};
use crate::seq_lock::{SeqLock, SeqLockHeld};
use crate::users::{self, UserEvent};
// The batch's types, where the harness and the benches have always found them.
pub use crate::outcome::ApplyOutcome;
pub use crate::policy::Policy;
pub use crate::sourced::SourcedEvent;

/// Applies `events` (in Kafka order per partition) in one transaction.
#[tracing::instrument(skip_all, fields(events = events.len()))]
pub async fn apply_batch(
    pool: &PgPool,
    policy: &Policy,
    events: &[SourcedEvent],
) -> Result<ApplyOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut outcome = ApplyOutcome::default();
    let mut seq_lock = SeqLock::default();
    // Consecutive posts are written with one statement per step; a follow change between them keeps its
    // place, so a post fans out to exactly the followers its author had when it was written.
    for run in runs(events) {
        match run {
            Run::Posts(posts) => {
                outcome.add(apply_posts(&mut tx, policy, &posts, &mut seq_lock).await?);
            }
            Run::Follow(event, change, edge) => {
                outcome
                    .add(apply_follow(&mut tx, policy, event, &change, edge, &mut seq_lock).await?);
            }
            Run::Delete(event, delete) => {
                outcome.add(apply_delete(&mut tx, event, delete).await?);
            }
            Run::User(event, user_event) => {
                outcome
                    .im
                    .add(users::apply(&mut tx, policy, event, user_event).await?);
            }
            Run::Im(event, im_event) => {
                let applied = im::apply(&mut tx, policy, event, im_event, &mut seq_lock).await?;
                outcome.im.add(applied);
            }
            Run::Erasure(event, deleted) => {
                let applied = erasure::apply(&mut tx, event, deleted, &mut seq_lock).await?;
                outcome.im.add(applied);
            }
            Run::Activity(event, change) => {
                let applied =
                    activity::apply(&mut tx, policy, event, change, &mut seq_lock).await?;
                outcome.im.add(applied);
            }
        }
    }
    tx.commit().await?;
    Ok(outcome)
}

enum Run<'a> {
    Posts(Vec<&'a PostCreated>),
    Follow(&'a SourcedEvent, FollowChange, EdgeChange),
    Delete(&'a SourcedEvent, &'a PostDeleted),
    /// A user's own event (account, profile), applied on its own ([`crate::users`]).
    User(&'a SourcedEvent, UserEvent<'a>),
    /// A conversation's event, applied on its own ([`crate::im`]).
    Im(&'a SourcedEvent, ImEvent<'a>),
    /// A user's activity, applied on its own ([`crate::activity`]).
    Activity(&'a SourcedEvent, ActivityEvent<'a>),
    /// An account's deletion, applied on its own ([`crate::erasure`]).
    Erasure(&'a SourcedEvent, &'a schemas::AccountDeleted),
}

/// The run of a user's activity event.
fn activity_run(event: &SourcedEvent) -> Option<Run<'_>> {
    match &event.envelope.event {
        Event::UserActive(active) => Some(Run::Activity(event, ActivityEvent::Active(active))),
        Event::UserDormant(dormant) => Some(Run::Activity(event, ActivityEvent::Dormant(dormant))),
        _ => None,
    }
}

fn runs(events: &[SourcedEvent]) -> Vec<Run<'_>> {
    let mut runs = Vec::new();
    for event in events {
        match &event.envelope.event {
            Event::PostCreated(post) => match runs.last_mut() {
                Some(Run::Posts(posts)) => posts.push(post),
                _ => runs.push(Run::Posts(vec![post])),
            },
            Event::Followed(change) => {
                runs.push(Run::Follow(event, change.clone(), EdgeChange::Follow));
            }
            Event::Unfollowed(change) => {
                runs.push(Run::Follow(event, change.clone(), EdgeChange::Unfollow));
            }
            Event::FollowBlocked(edge) | Event::FollowUnblocked(edge) => {
                let blocked = matches!(event.envelope.event, Event::FollowBlocked(_));
                let by_follower = edge.by == edge.follower;
                let change = FollowChange {
                    follower: edge.follower.clone(),
                    followee: edge.followee.clone(),
                };
                runs.push(Run::Follow(
                    event,
                    change,
                    EdgeChange::Block {
                        by_follower,
                        blocked,
                    },
                ));
            }
            Event::PostDeleted(delete) => runs.push(Run::Delete(event, delete)),
            Event::AccountRegistered(account) => {
                runs.push(Run::User(event, UserEvent::Registered(account)));
            }
            Event::PasswordChanged(change) => {
                runs.push(Run::User(event, UserEvent::PasswordChanged(change)));
            }
            Event::ProfileUpdated(profile) => {
                runs.push(Run::User(event, UserEvent::Profile(profile)))
            }
            Event::GroupCreated(group) => runs.push(Run::Im(event, ImEvent::GroupCreated(group))),
            Event::MemberAdded(change) => runs.push(Run::Im(event, ImEvent::MemberAdded(change))),
            Event::MemberRemoved(change) => {
                runs.push(Run::Im(event, ImEvent::MemberRemoved(change)));
            }
            Event::MessageSent(message) => runs.push(Run::Im(event, ImEvent::Message(message))),
            Event::MessageRecalled(recall) => runs.push(Run::Im(event, ImEvent::Recall(recall))),
            Event::ReadMarked(read) => runs.push(Run::Im(event, ImEvent::Read(read))),
            Event::GroupUpdated(update) => {
                runs.push(Run::Im(event, ImEvent::GroupUpdated(update)));
            }
            Event::GroupDissolved(dissolved) => {
                runs.push(Run::Im(event, ImEvent::GroupDissolved(dissolved)));
            }
            Event::MemberMuted(mute) => runs.push(Run::Im(event, ImEvent::MemberMuted(mute))),
            Event::UserBlocked(change) | Event::UserUnblocked(change) => {
                let blocked = matches!(event.envelope.event, Event::UserBlocked(_));
                runs.push(Run::Im(event, ImEvent::Block(change, blocked)));
            }
            Event::ConversationMuted(mute) | Event::ConversationUnmuted(mute) => {
                let muted = matches!(event.envelope.event, Event::ConversationMuted(_));
                runs.push(Run::Im(event, ImEvent::ConversationMute(mute, muted)));
            }
            Event::MessageRemoved(removed) => {
                runs.push(Run::Im(event, ImEvent::Removed(removed)));
            }
            Event::AccountDisabled(change) | Event::AccountEnabled(change) => {
                let disabled = matches!(event.envelope.event, Event::AccountDisabled(_));
                runs.push(Run::User(event, UserEvent::Disabled(change, disabled)));
            }
            Event::ReportFiled(report) => runs.push(Run::User(event, UserEvent::Report(report))),
            Event::UserActive(_) | Event::UserDormant(_) => runs.extend(activity_run(event)),
            Event::ReportResolved(resolved) => {
                runs.push(Run::User(event, UserEvent::ReportResolved(resolved)));
            }
            Event::AccountDeleted(deleted) => runs.push(Run::Erasure(event, deleted)),
            Event::MessageEdited(edit) => runs.push(Run::Im(event, ImEvent::Edit(edit))),
            Event::PostEdited(edit) => runs.push(Run::User(event, UserEvent::PostEdited(edit))),
            Event::ReactionAdded(reaction) | Event::ReactionRemoved(reaction) => {
                let added = matches!(event.envelope.event, Event::ReactionAdded(_));
                runs.push(Run::Im(event, ImEvent::Reaction(reaction, added)));
            }
        }
    }
    runs
}

/// Inserts a run of posts (see [`apply_posts`]): $1 ids, $2 authors, $3 bodies, $4 idempotency keys,
/// $5 creation times, $6 search documents, $7 content types, $8 attachments, $9 payloads (JSON
/// text); returns (post id, author, mode, stored deleted).
const INSERT_POSTS_SQL: &str =
    "INSERT INTO posts (post_id, author, body, message_id, created_at, delivery_mode, deleted_at,
                        search, content_type, attachments, payload)
     SELECT t.post_id, t.author, CASE WHEN d.deleted_at IS NULL THEN t.body ELSE '' END,
            t.message_id, t.created_at, coalesce(a.mode, 'push'), d.deleted_at,
            CASE WHEN d.deleted_at IS NULL THEN t.search::tsvector END, t.content_type,
            CASE WHEN d.deleted_at IS NULL THEN t.attachments::jsonb END,
            CASE WHEN d.deleted_at IS NULL THEN t.payload::jsonb END
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
                 $7::text[], $8::text[], $9::text[])
          WITH ORDINALITY AS t(post_id, author, body, message_id, created_at, search, content_type,
                               attachments, payload, ord)
     LEFT JOIN authors a ON a.author = t.author
     -- Stored deleted: a post its author deleted, or one of an author who deleted their account
     -- (crate::erasure) — a post in flight when the account went.
     LEFT JOIN LATERAL (
         SELECT coalesce((SELECT pt.deleted_at FROM post_tombstones pt
                          WHERE pt.post_id = t.post_id AND pt.author = t.author),
                         (SELECT e.erased_at FROM erased_users e
                          WHERE e.user_id = t.author)) AS deleted_at
     ) d ON true
     -- A replay's copy of a post retention removed stays removed (crate::store_retention).
     WHERE a.posts_removed_below IS NULL OR t.post_id >= a.posts_removed_below
     -- Kafka order decides which copy of a retried request is kept: the first. The join may
     -- reorder rows, so restore the input order before they are inserted.
     ORDER BY t.ord
     ON CONFLICT DO NOTHING
     RETURNING post_id, author, delivery_mode, deleted_at IS NOT NULL";

/// The attachments of the posts just stored live (`inserted`: id, author, mode), for downloads and
/// the orphan sweep (`crate::im::content`).
async fn record_post_attachments(
    tx: &mut Transaction<'static, Postgres>,
    posts: &[&PostCreated],
    inserted: &[(String, String, String)],
) -> Result<(), sqlx::Error> {
    let (mut post_ids, mut attachment_ids) = (Vec::new(), Vec::new());
    for post in posts {
        if inserted
            .iter()
            .any(|(id, _, _)| id == post.post_id.as_str())
        {
            for attachment in &post.content.attachments {
                post_ids.push(post.post_id.as_str());
                attachment_ids.push(attachment.id.as_str());
            }
        }
    }
    if !post_ids.is_empty() {
        sqlx::query(
            "INSERT INTO post_attachments (post_id, attachment_id)
             SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
        )
        .bind(&post_ids)
        .bind(&attachment_ids)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn apply_posts(
    tx: &mut Transaction<'static, Postgres>,
    policy: &Policy,
    posts: &[&PostCreated],
    seq_lock: &mut SeqLock,
) -> Result<ApplyOutcome, sqlx::Error> {
    let post_ids: Vec<&str> = posts.iter().map(|p| p.post_id.as_str()).collect();
    let authors: Vec<&str> = posts.iter().map(|p| p.author.as_str()).collect();
    let bodies: Vec<&str> = posts.iter().map(|p| p.body.as_str()).collect();
    let message_ids: Vec<Option<&str>> = posts.iter().map(|p| p.message_id.as_deref()).collect();
    let created_at: Vec<DateTime<Utc>> = posts.iter().map(|p| p.created_at).collect();
    let searchable: Vec<Option<String>> = posts
        .iter()
        .map(|p| policy.searchable(&crate::im::searchable_text(&p.body, &p.content)))
        .collect();
    let content_types: Vec<&str> = posts
        .iter()
        .map(|p| p.content.content_type.label())
        .collect();
    let attachments: Vec<Option<String>> = posts
        .iter()
        .map(|p| crate::im::attachments_json(&p.content).map(|v| v.to_string()))
        .collect();
    let payloads: Vec<Option<String>> = posts
        .iter()
        .map(|p| p.content.payload.as_ref().map(|v| v.to_string()))
        .collect();

    // DO NOTHING without a conflict target covers the post id (a post applied before, also one
    // stored deleted) and (author, message_id), also for two copies of one retried request inside this very batch. The
    // author's current mode is stamped on the post: it decides the delivery once and for all.
    // A post its own author deleted before it arrived (a tombstone of the same author and id) is
    // stored deleted: it keeps its id and idempotency key, so a retried copy stays a duplicate, and
    // it is fanned out to nobody. Another author's tombstone of the id suppresses nothing.
    let inserted: Vec<(String, String, String, bool)> = sqlx::query_as(INSERT_POSTS_SQL)
        .bind(&post_ids)
        .bind(&authors)
        .bind(&bodies)
        .bind(&message_ids)
        .bind(&created_at)
        .bind(&searchable)
        .bind(&content_types)
        .bind(&attachments)
        .bind(&payloads)
        .fetch_all(&mut **tx)
        .await?;

    let mut outcome = ApplyOutcome {
        posts_created: inserted.len() as u64,
        posts_duplicate: (posts.len() - inserted.len()) as u64,
        ..ApplyOutcome::default()
    };
    if outcome.posts_duplicate > 0 && message_ids.iter().any(Option::is_some) {
        record_aliases(tx, &post_ids, &authors, &message_ids).await?;
    }
    let inserted: Vec<(String, String, String)> = inserted
        .into_iter()
        .filter(|(_, _, _, deleted)| !deleted)
        .map(|(post_id, author, mode, _)| (post_id, author, mode))
        .collect();
    if inserted.is_empty() {
        return Ok(outcome);
    }
    record_post_attachments(tx, posts, &inserted).await?;
    outcome.posts_pulled = mark_pull_authors(tx, &inserted).await?;
    // Seqs in Kafka order, whatever order `RETURNING` gave: an inbox reads the same however the
    // events were batched.
    let order: std::collections::HashMap<&str, usize> = post_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i))
        .collect();
    let mut inserted = inserted;
    inserted.sort_by_key(|(post_id, _, _)| order.get(post_id.as_str()).copied());
    let held = seq_lock.acquire(tx).await?;
    let (new_ids, new_authors, modes): (Vec<String>, Vec<String>, Vec<String>) =
        columns_of(inserted);
    let audience = Audience {
        post_ids: &new_ids,
        authors: &new_authors,
        modes: &modes,
        pull_max: policy.active_audience_max,
    };
    let (own, pushed) = write_sync_entries(tx, audience, held).await?;
    outcome.sync_entries_own = own;
    outcome.sync_entries_pushed = pushed;
    Ok(outcome)
}

/// Marks the authors of pull-mode posts among `inserted` as having some (the feed reads only those
/// authors' timelines); returns how many pull-mode posts there were.
async fn mark_pull_authors(
    tx: &mut Transaction<'static, Postgres>,
    inserted: &[(String, String, String)],
) -> Result<u64, sqlx::Error> {
    let pull_authors: Vec<&str> = inserted
        .iter()
        .filter(|(_, _, mode)| mode == "pull")
        .map(|(_, author, _)| author.as_str())
        .collect();
    if !pull_authors.is_empty() {
        sqlx::query(
            "UPDATE authors SET has_pull_posts = true WHERE author = ANY($1) AND NOT has_pull_posts",
        )
        .bind(&pull_authors)
        .execute(&mut **tx)
        .await?;
    }
    Ok(pull_authors.len() as u64)
}

/// (post id, author, mode) rows as three columns.
fn columns_of(rows: Vec<(String, String, String)>) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut columns = (Vec::with_capacity(rows.len()), Vec::new(), Vec::new());
    for (post_id, author, mode) in rows {
        columns.0.push(post_id);
        columns.1.push(author);
        columns.2.push(mode);
    }
    columns
}

/// Keeps the post ids of duplicate requests resolvable to the post that was kept.
async fn record_aliases(
    tx: &mut Transaction<'static, Postgres>,
    post_ids: &[&str],
    authors: &[&str],
    message_ids: &[Option<&str>],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO post_aliases (alias_post_id, post_id)
         SELECT a.post_id, p.post_id
         FROM UNNEST($1::text[], $2::text[], $3::text[]) AS a(post_id, author, message_id)
         JOIN posts p ON p.author = a.author AND p.message_id = a.message_id
         WHERE p.post_id <> a.post_id
         ON CONFLICT DO NOTHING",
    )
    .bind(post_ids)
    .bind(authors)
    .bind(message_ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The posts a run fans out, with their delivery modes, and the bound of a pull-mode audience.
struct Audience<'a> {
    post_ids: &'a [String],
    authors: &'a [String],
    modes: &'a [String],
    pull_max: i64,
}

/// One sync entry per post for its author (their other devices) and one for each *active* follower
/// (`follower_active`, [`crate::activity`]): all of them for a push-mode post, the first `pull_max` (by
/// id: replays choose alike) for a pull-mode one, whose other followers read it from the store timeline.
/// Seqs are drawn in the posts' Kafka order (under the seq lock: `held`), only for posts this
/// transaction inserted.
/// Returns (entries for authors, entries for followers).
///
/// No `ON CONFLICT`: none can arise. Seqs are fresh, and a `(user, post)` row cannot exist yet for a post
/// this very transaction created (a duplicate or replayed post is not fanned out at all; a follow
/// backfill or a return only copies posts that exist, and runs in Kafka order or seq-lock order after the
/// post's own fan-out). The conflict check cost a third of the insert (measured: 1M rows 14.4 s with it,
/// 9.7 s without). Since the inbox is partitioned by seq no unique index stands behind the invariant
/// (it would have to include seq); `fanout_store::applying_a_batch_again_changes_nothing` and the
/// replay tests do.
async fn write_sync_entries(
    tx: &mut Transaction<'static, Postgres>,
    audience: Audience<'_>,
    _held: SeqLockHeld<'_>,
) -> Result<(u64, u64), sqlx::Error> {
    let written = sqlx::query(
        "INSERT INTO sync_entries (user_id, seq, post_id, author)
         SELECT audience.user_id, nextval('sync_seq'), audience.post_id, audience.author
         FROM (
             SELECT a.user_id, p.post_id, p.author
             FROM UNNEST($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
                  AS p(post_id, author, mode, ord)
             CROSS JOIN LATERAL (
                 SELECT p.author AS user_id
                 UNION ALL
                 SELECT f.follower FROM follows f
                 WHERE p.mode = 'push' AND f.followee = p.author AND f.active
                   AND f.follower_active AND f.follower <> p.author
                 UNION ALL
                 (SELECT f.follower FROM follows f
                  WHERE p.mode = 'pull' AND f.followee = p.author AND f.active
                    AND f.follower_active AND f.follower <> p.author
                  ORDER BY f.follower
                  LIMIT $4)
             ) AS a
             -- Seqs in the order of the posts (Kafka's); one post's recipients' order does not matter.
             ORDER BY p.ord
         ) AS audience",
    )
    .bind(audience.post_ids)
    .bind(audience.authors)
    .bind(audience.modes)
    .bind(audience.pull_max)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    // Every post has exactly one entry for its author.
    let own = audience.post_ids.len() as u64;
    Ok((own, written.saturating_sub(own)))
}

/// What an event does to a follow edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EdgeChange {
    Follow,
    Unfollow,
    /// A block between the two users (by the follower or the followee) is set or lifted: while one
    /// stands the edge is inactive and a follow changes nothing; lifting one restores nothing.
    Block {
        by_follower: bool,
        blocked: bool,
    },
}

/// Sets a follow edge unless the edge was last set by a later event of the same partition. When the
/// edge really changes, it keeps the followee's follower count and delivery mode up to date and brings
/// the followee's recent pushed posts into the follower's inbox (follow) or takes them out (unfollow,
/// block).
async fn apply_follow(
    tx: &mut Transaction<'static, Postgres>,
    policy: &Policy,
    event: &SourcedEvent,
    change: &FollowChange,
    edge: EdgeChange,
    seq_lock: &mut SeqLock,
) -> Result<ApplyOutcome, sqlx::Error> {
    let mut outcome = ApplyOutcome::default();
    if edge == EdgeChange::Follow {
        // The edge copies the follower's activity (`follower_active`): under the seq lock, a return or
        // a dormancy of the follower comes wholly before the copy or wholly after it.
        seq_lock.acquire(tx).await?;
    }
    let Some((was_active, active)) = set_edge(tx, event, change, edge).await? else {
        outcome.follow_changes_stale = 1;
        return Ok(outcome);
    };
    outcome.follow_changes_applied = 1;
    if was_active == active {
        // Follow of a followed user, unfollow of an unfollowed one, a follow across a block: nothing
        // else changes.
        return Ok(outcome);
    }
    if count_follower(tx, policy, change, active).await? {
        outcome.mode_changes = 1;
    }
    if !active {
        outcome.sync_entries_removed = take_posts_out(tx, change).await?;
    } else if !erasure::is_erased(tx, change.follower.as_str()).await? {
        // A deleted follower (crate::erasure) is copied nothing.
        let held = seq_lock.acquire(tx).await?;
        if policy.follow_backfill > 0 {
            outcome.sync_entries_backfilled =
                backfill(tx, change, policy.follow_backfill, held).await?;
        }
        keep_feed_exact(tx, change, policy.follow_backfill).await?;
    }
    Ok(outcome)
}

/// A follower who returned from dormancy reads every followed author's posts below their feed's cut
/// from the store timelines, and above it from the inbox ([`crate::activity`]). A follow copies only
/// the followee's `copied` newest pushed posts, so when the followee has more above the cut, the cut
/// rises to just above the newest one not copied: the feed stays exact, with no hole between the
/// copies and the cut.
async fn keep_feed_exact(
    tx: &mut Transaction<'static, Postgres>,
    change: &FollowChange,
    copied: i64,
) -> Result<(), sqlx::Error> {
    // `id || '0'` sorts right above `id` and below every greater id.
    sqlx::query(
        "UPDATE user_activity ua SET feed_pull_below = r.post_id || '0'
         FROM (SELECT post_id FROM posts
               WHERE author = $2 AND delivery_mode = 'push' AND deleted_at IS NULL
               ORDER BY post_id DESC
               OFFSET $3 LIMIT 1) AS r
         WHERE ua.user_id = $1 AND ua.feed_pull_below IS NOT NULL
           AND r.post_id >= ua.feed_pull_below",
    )
    .bind(change.follower.as_str())
    .bind(change.followee.as_str())
    .bind(copied.max(0))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies `edge` to the edge unless it was last set by a later event; `None` for such a stale event,
/// otherwise whether the edge was active before and is now.
async fn set_edge(
    tx: &mut Transaction<'static, Postgres>,
    event: &SourcedEvent,
    change: &FollowChange,
    edge: EdgeChange,
) -> Result<Option<(bool, bool)>, sqlx::Error> {
    // $3: the activity asked for (none: a block's change keeps it, but a standing block forces it
    // off); $6, $7: the block flags set (none: kept).
    let (want, by_follower, by_followee) = match edge {
        EdgeChange::Follow => (Some(true), None, None),
        EdgeChange::Unfollow => (Some(false), None, None),
        EdgeChange::Block {
            by_follower: true,
            blocked,
        } => (None, Some(blocked), None),
        EdgeChange::Block { blocked, .. } => (None, None, Some(blocked)),
    };
    // Events of one edge share a key (the followee) and so a partition, where offsets order them. An
    // event from another partition means the topic was repartitioned or replaced: it is newer.
    let (was_active, now_active): (Option<bool>, Option<bool>) = sqlx::query_as(
        "WITH previous AS (
             SELECT active FROM follows WHERE followee = $1 AND follower = $2
         ), updated AS (
             INSERT INTO follows (followee, follower, active, src_partition, src_offset,
                                  blocked_by_follower, blocked_by_followee, follower_active)
             VALUES ($1, $2, coalesce($3, false) AND NOT coalesce($6, false)
                             AND NOT coalesce($7, false),
                     $4, $5, coalesce($6, false), coalesce($7, false),
                     -- An erased follower (a follow replayed after the deletion) is copied nothing
                     -- until the departures' unfollow ends the edge (crate::erasure).
                     coalesce((SELECT active FROM user_activity WHERE user_id = $2), true)
                     AND NOT fanline_erased($2))
             ON CONFLICT (followee, follower) DO UPDATE
             -- Only a follow, which holds the seq lock, copies the follower's activity: a block's
             -- change may run beside a return or a dormancy and would write what it read before.
             SET follower_active = CASE WHEN $3 THEN EXCLUDED.follower_active
                                        ELSE follows.follower_active END,
                 blocked_by_follower = coalesce($6, follows.blocked_by_follower),
                 blocked_by_followee = coalesce($7, follows.blocked_by_followee),
                 active = coalesce($3, follows.active)
                          AND NOT coalesce($6, follows.blocked_by_follower)
                          AND NOT coalesce($7, follows.blocked_by_followee),
                 src_partition = EXCLUDED.src_partition,
                 src_offset = EXCLUDED.src_offset, updated_at = now()
             WHERE follows.src_partition <> EXCLUDED.src_partition
                OR follows.src_offset < EXCLUDED.src_offset
             RETURNING active
         )
         SELECT (SELECT active FROM previous), (SELECT active FROM updated)",
    )
    .bind(change.followee.as_str())
    .bind(change.follower.as_str())
    .bind(want)
    .bind(event.partition)
    .bind(event.offset)
    .bind(by_follower)
    .bind(by_followee)
    .fetch_one(&mut **tx)
    .await?;
    Ok(now_active.map(|now| (was_active.unwrap_or(false), now)))
}

/// Counts the follower in (or out) and switches the followee's delivery mode when the count crossed a
/// threshold; whether it did.
async fn count_follower(
    tx: &mut Transaction<'static, Postgres>,
    policy: &Policy,
    change: &FollowChange,
    active: bool,
) -> Result<bool, sqlx::Error> {
    let delta: i64 = if active { 1 } else { -1 };
    let (followers, mode): (i64, String) = sqlx::query_as(
        "INSERT INTO authors (author, follower_count) VALUES ($1, greatest($2, 0))
         ON CONFLICT (author) DO UPDATE SET follower_count = greatest(authors.follower_count + $2, 0)
         RETURNING follower_count, mode",
    )
    .bind(change.followee.as_str())
    .bind(delta)
    .fetch_one(&mut **tx)
    .await?;
    let current = DeliveryMode::parse(&mode);
    let next = next_mode(current, followers, policy);
    if next == current {
        return Ok(false);
    }
    sqlx::query("UPDATE authors SET mode = $2, mode_changed_at = now() WHERE author = $1")
        .bind(change.followee.as_str())
        .bind(next.as_str())
        .execute(&mut **tx)
        .await?;
    tracing::info!(author = %change.followee, followers, mode = next.as_str(), "delivery mode changed");
    Ok(true)
}

/// Copies the followee's `limit` most recent pushed posts into the new follower's inbox; returns the
/// entries written. Pull-mode posts need no copy: the feed reads them from the store timeline.
async fn backfill(
    tx: &mut Transaction<'static, Postgres>,
    change: &FollowChange,
    limit: i64,
    _held: SeqLockHeld<'_>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO sync_entries (user_id, seq, post_id, author)
         SELECT $1, nextval('sync_seq'), recent.post_id, recent.author
         FROM (
             SELECT post_id, author FROM posts
             WHERE author = $2 AND delivery_mode = 'push' AND deleted_at IS NULL
             ORDER BY post_id DESC
             LIMIT $3
         ) AS recent
         -- No unique index can say it on a partitioned inbox; the seq lock makes the check exact.
         WHERE NOT EXISTS (SELECT 1 FROM sync_entries s
                           WHERE s.user_id = $1 AND s.post_id = recent.post_id)
         ORDER BY recent.post_id",
    )
    .bind(change.follower.as_str())
    .bind(change.followee.as_str())
    .bind(limit)
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected())
}

/// Takes the followee's posts out of the former follower's inbox; returns the entries removed. Posts
/// only: the followee's messages to the follower stay.
async fn take_posts_out(
    tx: &mut Transaction<'static, Postgres>,
    change: &FollowChange,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "DELETE FROM sync_entries WHERE user_id = $1 AND author = $2 AND kind = 'post'",
    )
    .bind(change.follower.as_str())
    .bind(change.followee.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected())
}

/// Tombstones a post (the id may be a retried duplicate's alias) of the deleting author. A delete for a
/// post not applied yet leaves a tombstone of that author, so that author's create is stored deleted
/// whenever it arrives; it cannot touch another author's post of the same id.
async fn apply_delete(
    tx: &mut Transaction<'static, Postgres>,
    event: &SourcedEvent,
    delete: &PostDeleted,
) -> Result<ApplyOutcome, sqlx::Error> {
    let (post_id,): (String,) = sqlx::query_as(
        "SELECT coalesce((SELECT post_id FROM post_aliases WHERE alias_post_id = $1), $1)",
    )
    .bind(delete.post_id.as_str())
    .fetch_one(&mut **tx)
    .await?;
    let deleted = sqlx::query(
        "UPDATE posts SET deleted_at = now(), body = '', search = NULL
         WHERE post_id = $1 AND author = $2 AND deleted_at IS NULL",
    )
    .bind(&post_id)
    .bind(delete.author.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if deleted == 0 {
        // Already deleted or another author's post: nothing to do. Not applied yet: a tombstone of
        // this author, which suppresses only this author's post of this id when it arrives.
        sqlx::query(
            "INSERT INTO post_tombstones (post_id, author, deleted_at)
             SELECT $1, $2, $3
             WHERE NOT EXISTS (SELECT 1 FROM posts WHERE post_id = $1)
             ON CONFLICT DO NOTHING",
        )
        .bind(&post_id)
        .bind(delete.author.as_str())
        .bind(event.envelope.ts)
        .execute(&mut **tx)
        .await?;
    }
    Ok(ApplyOutcome {
        posts_deleted: deleted,
        ..ApplyOutcome::default()
    })
}

/// Whether a failed apply should be retried rather than dead-lettered: everything but data that
/// Postgres refuses (see [`schemas::db`]). Unknown errors and SQL bugs count as transient: retrying a
/// healthy event forever is visible and recoverable, dead-lettering it is silent data loss.
pub fn is_transient(err: &sqlx::Error) -> bool {
    schemas::db::classify(err) != schemas::db::DbFailure::Refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{Envelope, PostId, UserId};

    fn user(name: &str) -> UserId {
        UserId::parse("user", name).unwrap()
    }

    fn sourced(offset: i64, envelope: Envelope) -> SourcedEvent {
        SourcedEvent {
            partition: 0,
            offset,
            envelope,
        }
    }

    fn post(author: &str) -> Envelope {
        Envelope::post_created(PostCreated {
            post_id: PostId::generate(),
            author: user(author),
            body: "x".into(),
            content: Default::default(),
            message_id: None,
            created_at: Utc::now(),
        })
    }

    fn follow(follower: &str, followee: &str) -> Envelope {
        Envelope::followed(FollowChange {
            follower: user(follower),
            followee: user(followee),
        })
    }

    #[test]
    fn consecutive_posts_share_a_run_and_follows_keep_their_place() {
        let events = vec![
            sourced(0, post("a")),
            sourced(1, post("b")),
            sourced(2, follow("c", "a")),
            sourced(3, post("a")),
        ];
        let shape: Vec<usize> = runs(&events)
            .iter()
            .map(|run| match run {
                Run::Posts(posts) => posts.len(),
                Run::Follow(..)
                | Run::Delete(..)
                | Run::User(..)
                | Run::Im(..)
                | Run::Activity(..)
                | Run::Erasure(..) => 0,
            })
            .collect();
        assert_eq!(shape, vec![2, 0, 1]);
    }
}
