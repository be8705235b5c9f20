//! The departures sweeper: ends what a deleted account shared with others (docs/design.md "Account
//! deletion"). Every few seconds one fanout worker (a Postgres advisory lock elects it) looks at the
//! erased accounts not yet departed and writes, for each membership, follow and block they still
//! have, the event the user could have sent themselves — keyed as that event always is:
//! - a group they own: `group_updated` handing it to the longest-standing admin (else member) who
//!   is not erased, then their leave; a group with nobody else: `group_dissolved`;
//! - a group they are in, or an invitation or a request pending: `member_removed` by themselves;
//! - a follow either way: `unfollowed`;
//! - a block they set: `follow_unblocked` on both edges and `user_unblocked`.
//!
//! Why events and not updates: these decide what happens on other keys (who may send to a group,
//! whom a post reaches), and a replay applies keys in any order relative to the deletion; as events
//! in the log they are applied where they were live. An account with nothing left is marked departed
//! and not looked at again, ten minutes after the deletion at the earliest (a join or follow of theirs
//! in flight on a lagging partition is still ended). A sweep repeated (another worker, a crash before
//! the mark, a rebuild meeting state not yet caught up) writes the same events again, which change
//! nothing: a leave of a non-member, an unfollow of an inactive edge, an unblock of no block — the id
//! never gets a new owner whose relationships they could end.

use std::time::Duration;

use kafkakit::EventProducer;
use schemas::{
    BlockChange, Envelope, FollowBlock, FollowChange, GroupDissolved, GroupId, GroupUpdated,
    MembershipChange, UserId,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::dormancy::SweepError;
use crate::election::{every, if_elected};

/// Key of the transaction-scoped advisory lock held by the worker that sweeps ("FANLDEPT").
const SWEEP_LOCK: i64 = 0x4641_4e4c_4445_5054;
/// Accounts looked at per sweep.
const PAGE: i64 = 1_000;
/// How long after a deletion an account is still swept although nothing was left to end: an event of
/// theirs sent just before their tokens were refused may still be behind on its partition.
const SETTLE: Duration = Duration::from_secs(600);

/// Ends the relationships of deleted accounts through the log.
pub struct Departures {
    pub pool: PgPool,
    pub producer: EventProducer,
    /// Time between sweeps.
    pub every: Duration,
}

impl Departures {
    /// Sweeps every `every` until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let this = &self;
        every(self.every, cancel, "departures sweep", || async move {
            let written = this.sweep().await?;
            if written > 0 {
                tracing::info!(written, "deleted accounts' relationships ended");
            }
            Ok::<_, SweepError>(())
        })
        .await;
    }

    /// One sweep, if no other worker is sweeping: the events written.
    pub async fn sweep(&self) -> Result<usize, SweepError> {
        let swept = if_elected(&self.pool, SWEEP_LOCK, self.sweep_elected()).await?;
        Ok(swept.unwrap_or(0))
    }

    async fn sweep_elected(&self) -> Result<usize, SweepError> {
        let users: Vec<(String, bool)> = sqlx::query_as(
            "SELECT user_id, erased_at < now() - make_interval(secs => $2) FROM erased_users
             WHERE departed_at IS NULL ORDER BY erased_at LIMIT $1",
        )
        .bind(PAGE)
        .bind(SETTLE.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        let mut written = 0;
        for (user, settled) in users {
            let Ok(user) = UserId::parse("user", &user) else {
                continue;
            };
            let events = departures_of(&self.pool, &user).await?;
            // Marked departed only once nothing of theirs can still be on its way (their tokens were
            // refused within seconds; SETTLE covers a lagging partition).
            if events.is_empty() && settled {
                sqlx::query("UPDATE erased_users SET departed_at = now() WHERE user_id = $1")
                    .bind(user.as_str())
                    .execute(&self.pool)
                    .await?;
                continue;
            }
            if events.is_empty() {
                continue;
            }
            // Enqueued in order: a group's hand-over before its leave (one key, one partition).
            let pending: Vec<_> = events.iter().map(|e| self.producer.enqueue(e)).collect();
            for event in pending {
                event.acknowledged().await?;
                written += 1;
            }
        }
        Ok(written)
    }
}

/// The events that end `user`'s remaining memberships, follows and blocks (none: departed).
pub async fn departures_of(pool: &PgPool, user: &UserId) -> Result<Vec<Envelope>, sqlx::Error> {
    let mut events = groups_left(pool, user).await?;
    let (following, followers): (Vec<String>, Vec<String>) = (
        sqlx::query_scalar("SELECT followee FROM follows WHERE follower = $1 AND active")
            .bind(user.as_str())
            .fetch_all(pool)
            .await?,
        sqlx::query_scalar("SELECT follower FROM follows WHERE followee = $1 AND active")
            .bind(user.as_str())
            .fetch_all(pool)
            .await?,
    );
    let edges = following
        .iter()
        .filter_map(|f| Some((user.clone(), UserId::parse("followee", f).ok()?)))
        .chain(
            followers
                .iter()
                .filter_map(|f| Some((UserId::parse("follower", f).ok()?, user.clone()))),
        );
    events.extend(
        edges.map(|(follower, followee)| Envelope::unfollowed(FollowChange { follower, followee })),
    );
    let blocked: Vec<String> = sqlx::query_scalar("SELECT target FROM blocks WHERE blocker = $1")
        .bind(user.as_str())
        .fetch_all(pool)
        .await?;
    for target in blocked
        .iter()
        .filter_map(|t| UserId::parse("target", t).ok())
    {
        for edge in FollowBlock::both_ways(user, &target) {
            events.push(Envelope::follow_blocked(edge, false));
        }
        let change = BlockChange {
            blocker: user.clone(),
            target,
        };
        events.extend(Envelope::user_blocked(change, false));
    }
    Ok(events)
}

/// Leaves (after handing over, or dissolving, what they own) and withdrawals of what is pending.
async fn groups_left(pool: &PgPool, user: &UserId) -> Result<Vec<Envelope>, sqlx::Error> {
    // (group, role, successor): the successor only for a group they own.
    let memberships: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT gm.group_id, gm.role,
                CASE WHEN gm.role = 'owner' THEN (
                    SELECT o.user_id FROM group_members o
                    WHERE o.group_id = gm.group_id AND o.active AND o.user_id <> $1
                      AND NOT EXISTS (SELECT 1 FROM erased_users e WHERE e.user_id = o.user_id)
                    ORDER BY o.role = 'admin' DESC, o.updated_at, o.user_id LIMIT 1) END
         FROM group_members gm JOIN groups g ON g.group_id = gm.group_id
         WHERE gm.user_id = $1 AND gm.active AND g.dissolved_at IS NULL
         UNION ALL
         SELECT group_id, 'pending', NULL FROM group_pending WHERE user_id = $1",
    )
    .bind(user.as_str())
    .fetch_all(pool)
    .await?;
    let mut events = Vec::new();
    for (group, role, successor) in memberships {
        let Ok(group) = GroupId::parse("group", &group) else {
            continue;
        };
        let successor = successor.and_then(|s| UserId::parse("owner", &s).ok());
        if role == "owner" {
            let Some(owner) = successor else {
                events.push(Envelope::group_dissolved(GroupDissolved {
                    group,
                    by: user.clone(),
                    by_operator: false,
                }));
                continue;
            };
            events.push(Envelope::group_updated(GroupUpdated {
                group: group.clone(),
                by: user.clone(),
                name: None,
                description: None,
                join_rule: None,
                history: None,
                owner: Some(owner),
                retention_days: None,
            }));
        }
        events.push(Envelope::member_removed(MembershipChange {
            group,
            user: user.clone(),
            by: user.clone(),
            role: None,
        }));
    }
    Ok(events)
}
