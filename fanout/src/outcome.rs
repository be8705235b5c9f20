//! What applying events did, counted for the metrics and the tests: [`ApplyOutcome`] for a batch,
//! [`ImOutcome`] for its IM events (accounts and profiles included), and why an IM event was refused
//! ([`Refusal`]).

/// What one applied batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Posts inserted into store timelines.
    pub posts_created: u64,
    /// Posts already present (redelivery, replay, or a retried request with the same message id).
    pub posts_duplicate: u64,
    /// Sync timeline entries written by push fan-out (followers of push-mode authors).
    pub sync_entries_pushed: u64,
    /// Sync timeline entries written for authors' own devices (every post, push or pull).
    pub sync_entries_own: u64,
    /// Posts delivered in pull mode (store timeline only).
    pub posts_pulled: u64,
    /// Sync entries copied into inboxes by follow backfill.
    pub sync_entries_backfilled: u64,
    /// Sync entries removed from inboxes by unfollows.
    pub sync_entries_removed: u64,
    /// Posts deleted (tombstoned).
    pub posts_deleted: u64,
    /// Authors whose delivery mode changed.
    pub mode_changes: u64,
    /// Follow edges whose state changed.
    pub follow_changes_applied: u64,
    /// Follow/unfollow events older than the edge's state (replays).
    pub follow_changes_stale: u64,
    /// IM events (messages, recalls, read markers, groups, profiles).
    pub im: ImOutcome,
}

impl ApplyOutcome {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: ApplyOutcome) {
        self.posts_created += other.posts_created;
        self.posts_duplicate += other.posts_duplicate;
        self.sync_entries_pushed += other.sync_entries_pushed;
        self.sync_entries_own += other.sync_entries_own;
        self.posts_pulled += other.posts_pulled;
        self.sync_entries_backfilled += other.sync_entries_backfilled;
        self.sync_entries_removed += other.sync_entries_removed;
        self.posts_deleted += other.posts_deleted;
        self.mode_changes += other.mode_changes;
        self.follow_changes_applied += other.follow_changes_applied;
        self.follow_changes_stale += other.follow_changes_stale;
        self.im.add(other.im);
    }
}

/// Why fanout refused an IM event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A message or read marker from a user who is not an active member.
    NotMember,
    /// An event for a group that was never created.
    NoSuchGroup,
    /// A membership change the acting user may not make (or a group created twice).
    NotAllowed,
    /// A recall after the recall window.
    RecallWindow,
    /// A recall by someone else than the sender, or of a message that does not exist.
    NoSuchMessage,
    /// A direct message between two users one of whom blocked the other.
    Blocked,
    /// A group message from a member an owner or admin muted.
    Muted,
    /// A join of a group at its member cap.
    GroupFull,
    /// An edit after the edit window.
    EditWindow,
    /// An edit of a version that is no longer current (another edit came first).
    StaleVersion,
}

impl Refusal {
    pub const ALL: [Refusal; 10] = [
        Refusal::NotMember,
        Refusal::NoSuchGroup,
        Refusal::NotAllowed,
        Refusal::RecallWindow,
        Refusal::NoSuchMessage,
        Refusal::Blocked,
        Refusal::Muted,
        Refusal::GroupFull,
        Refusal::EditWindow,
        Refusal::StaleVersion,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::NotMember => "not_member",
            Refusal::NoSuchGroup => "no_such_group",
            Refusal::NotAllowed => "not_allowed",
            Refusal::RecallWindow => "recall_window",
            Refusal::NoSuchMessage => "no_such_message",
            Refusal::Blocked => "blocked",
            Refusal::Muted => "muted",
            Refusal::GroupFull => "group_full",
            Refusal::EditWindow => "edit_window",
            Refusal::StaleVersion => "stale_version",
        }
    }
}

/// What applying one IM event did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImOutcome {
    /// The event changed state (a new message, a moved read marker, a membership change …).
    pub applied: u64,
    /// Already applied (redelivery, replay, retried request) or changing nothing.
    pub duplicate: u64,
    /// Refused, by [`Refusal`] in [`Refusal::ALL`] order.
    pub refused: [u64; Refusal::ALL.len()],
    /// Sync entries written (messages, recalls, refusals).
    pub sync_entries: u64,
}

impl ImOutcome {
    pub fn add(&mut self, other: ImOutcome) {
        self.applied += other.applied;
        self.duplicate += other.duplicate;
        self.sync_entries += other.sync_entries;
        for (total, more) in self.refused.iter_mut().zip(other.refused) {
            *total += more;
        }
    }

    pub(crate) fn applied() -> Self {
        ImOutcome {
            applied: 1,
            ..ImOutcome::default()
        }
    }

    /// Applied when the event changed something, a duplicate otherwise.
    pub(crate) fn applied_if(changed: bool) -> Self {
        if changed {
            ImOutcome::applied()
        } else {
            ImOutcome::duplicate()
        }
    }

    pub(crate) fn duplicate() -> Self {
        ImOutcome {
            duplicate: 1,
            ..ImOutcome::default()
        }
    }

    /// Why the one event this outcome is of was refused, if it was.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        let index = self.refused.iter().position(|count| *count > 0)?;
        Refusal::ALL.get(index).copied()
    }

    pub(crate) fn refused(reason: Refusal) -> Self {
        let mut outcome = ImOutcome::default();
        if let Some(index) = Refusal::ALL.iter().position(|r| *r == reason) {
            outcome.refused[index] = 1;
        }
        outcome
    }
}
