//! Seeding for the benches: events applied through fanout's own store code (the same path Kafka events
//! take), and the few shapes that would take too long event by event, written straight into the tables.

use chrono::Utc;
use fanout::store::{apply_batch, ApplyOutcome, Policy, SourcedEvent};
use schemas::{Envelope, FollowChange, GroupCreated, GroupId, UserId};
use sqlx::PgPool;

/// A user id from a name the bench made up (panics on an invalid one: a bench bug).
pub fn user(name: &str) -> UserId {
    UserId::parse("user", name).unwrap_or_else(|e| panic!("bench user id {name:?}: {e}"))
}

/// The one bigint `sql` answers (a count, a sum), for checking what seeding or a measured step wrote.
pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    n
}

/// Events numbered like one partition's offsets, applied with [`apply_batch`].
#[derive(Default)]
pub struct EventLog {
    offset: i64,
    pending: Vec<SourcedEvent>,
}

impl EventLog {
    /// Events per `apply_batch` call when applying what was queued.
    const BATCH: usize = 2000;

    /// `envelope` at the next offset, for the caller to apply itself.
    pub fn at(&mut self, envelope: Envelope) -> SourcedEvent {
        self.offset += 1;
        SourcedEvent {
            partition: 0,
            offset: self.offset,
            envelope,
        }
    }

    /// Queues `envelope` for [`EventLog::apply`].
    pub fn push(&mut self, envelope: Envelope) {
        let event = self.at(envelope);
        self.pending.push(event);
    }

    pub fn follow(&mut self, follower: &str, followee: &str) {
        self.push(Envelope::followed(FollowChange {
            follower: user(follower),
            followee: user(followee),
        }));
    }

    /// Events queued and not applied yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Applies the queued events in order, in batches, and sums their outcomes.
    pub async fn apply(&mut self, pool: &PgPool, policy: &Policy) -> ApplyOutcome {
        let mut total = ApplyOutcome::default();
        for chunk in self.pending.chunks(Self::BATCH) {
            let outcome = apply_batch(pool, policy, chunk)
                .await
                .unwrap_or_else(|e| panic!("seeding failed: {e}"));
            total.add(outcome);
        }
        self.pending.clear();
        total
    }
}

/// A group created through fanout, its `members - 1` members besides the owner (`{name}_owner`) written
/// straight into the tables as `{name}_m{i}` (seeding 100,000 joins event by event would measure joins,
/// not messages), in pull mode when the policy says so.
pub async fn seed_group(
    pool: &PgPool,
    log: &mut EventLog,
    policy: &Policy,
    name: &str,
    members: i64,
) -> GroupId {
    let group = GroupId::parse("group", name).unwrap_or_else(|e| panic!("group {name:?}: {e}"));
    let created = log.at(Envelope::group_created(GroupCreated {
        group: group.clone(),
        owner: user(&format!("{name}_owner")),
        name: name.to_owned(),
        group_type: None,
        description: None,
        join_rule: None,
        history: None,
        created_at: Utc::now(),
    }));
    let seed = async {
        apply_batch(pool, policy, &[created]).await?;
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id, role, active, src_partition, src_offset)
             SELECT $1, $1 || '_m' || i, 'member', true, -1, -1 FROM generate_series(1, $2 - 1) i",
        )
        .bind(name)
        .bind(members)
        .execute(pool)
        .await?;
        sqlx::query(
            "INSERT INTO conversation_members (user_id, conversation_id, last_activity, derived)
             SELECT $1 || '_m' || i, 'g:' || $1, now(), true FROM generate_series(1, $2 - 1) i",
        )
        .bind(name)
        .bind(members)
        .execute(pool)
        .await?;
        sqlx::query("UPDATE groups SET member_count = $2 WHERE group_id = $1")
            .bind(name)
            .bind(members)
            .execute(pool)
            .await?;
        if members > policy.group_pull_above {
            sqlx::query(
                "UPDATE conversations SET mode = 'pull' WHERE conversation_id = 'g:' || $1",
            )
            .bind(name)
            .execute(pool)
            .await?;
        }
        sqlx::query("ANALYZE").execute(pool).await?;
        Ok::<_, sqlx::Error>(())
    };
    seed.await
        .unwrap_or_else(|e| panic!("seeding group {name}: {e}"));
    group
}
