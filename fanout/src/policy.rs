//! The delivery policy: when an author's posts (or a group's messages) stop being pushed into every
//! inbox and are read from the author's (the group's) own history instead, what a new follow copies
//! into the follower's inbox, and how long a message stays recallable.
//!
//! Pure rules, no SQL: the feed and IM transactions (`store`, `im`) ask [`next_mode`] and
//! [`next_mode_between`] whether an audience crossed a threshold; `config` builds the [`Policy`] from
//! the flags.

/// The defaults of the policy's flags (also [`Policy::default`]); `config::defaults` lists them beside
/// the other flags' defaults.
pub mod defaults {
    pub const PULL_THRESHOLD: i64 = 10_000;
    pub const FOLLOW_BACKFILL: i64 = 50;
    pub const RECALL_WINDOW_SECS: i64 = 120;
    /// A day: between WhatsApp's 15 minutes and Telegram's 48 hours.
    pub const EDIT_WINDOW_SECS: i64 = 24 * 3600;
    pub const GROUP_PULL_THRESHOLD: i64 = 2_000;
    /// How many active members of a pull-mode audience get a post or message in their inbox: the push
    /// threshold's cost, which a push-mode post may already have (docs/design.md "1 + M").
    pub const ACTIVE_AUDIENCE_MAX: i64 = PULL_THRESHOLD;
    /// A user silent this long is dormant (`FANLINE_ACTIVE_WINDOW_HOURS`): 14 days.
    pub const ACTIVE_WINDOW_HOURS: i64 = 14 * 24;
    /// How far back a return fills the inbox (`FANLINE_RETURN_WINDOW_HOURS`): 7 days.
    pub const RETURN_WINDOW_HOURS: i64 = 7 * 24;
    /// At most this many posts are copied into a returning user's inbox.
    pub const RETURN_MAX_POSTS: i64 = 5_000;
    /// At most this many messages of each group are copied into a returning member's inbox.
    pub const RETURN_MAX_MESSAGES_PER_GROUP: i64 = 200;

    /// The push threshold when none is given: 90% of the pull threshold.
    pub fn push_threshold(pull_threshold: i64) -> i64 {
        pull_threshold - pull_threshold / 10
    }
}

/// When posts are pushed and what a follow brings into the follower's inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// An author in push mode switches to pull mode when their follower count rises above this.
    pub pull_above: i64,
    /// An author in pull mode switches back to push mode when their follower count falls below this.
    /// Lower than `pull_above`: the gap is the hysteresis that keeps an author near the threshold from
    /// flapping on every follow and unfollow.
    pub push_below: i64,
    /// How many of the followee's most recent pushed posts a new follow copies into the inbox.
    pub follow_backfill: i64,
    /// How long after sending a message its sender may recall it.
    pub recall_window: chrono::TimeDelta,
    /// How long after sending a message its sender may edit it (`None`: always).
    pub edit_window: Option<chrono::TimeDelta>,
    /// How long after posting its author may edit a post (`None`: always, the default).
    pub post_edit_window: Option<chrono::TimeDelta>,
    /// A group switches to pull mode (read diffusion) above this many members …
    pub group_pull_above: i64,
    /// … and back to push below this many (hysteresis, as for authors).
    pub group_push_below: i64,
    /// A join that would make a group larger is refused (`group_full`); 0: no cap.
    pub max_group_members: i64,
    /// A pull-mode post or message is copied into the inboxes of at most this many active members of
    /// its audience (the "M" of 1 + M); the others read it from its store timeline.
    pub active_audience_max: i64,
    /// What a dormant user's return copies into their inbox.
    pub return_window: ReturnWindow,
    /// Whether messages and posts get their searchable form as they are stored (`schemas::search`).
    /// Off, they are stored without it (search does not find them) until the reindexer
    /// (`crate::reindex`) of a worker running with it on writes it.
    pub index_search: bool,
}

/// How far back a return fills the inbox, and how much at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReturnWindow {
    /// Posts and messages older than this before the return are not copied.
    pub span: chrono::TimeDelta,
    /// At most this many posts are copied (the newest); the feed reads the rest.
    pub max_posts: i64,
    /// At most this many messages per group are copied (the newest); its history has the rest.
    pub max_messages_per_group: i64,
}

impl Default for ReturnWindow {
    fn default() -> Self {
        ReturnWindow {
            span: chrono::TimeDelta::hours(defaults::RETURN_WINDOW_HOURS),
            max_posts: defaults::RETURN_MAX_POSTS,
            max_messages_per_group: defaults::RETURN_MAX_MESSAGES_PER_GROUP,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            pull_above: defaults::PULL_THRESHOLD,
            push_below: defaults::push_threshold(defaults::PULL_THRESHOLD),
            follow_backfill: defaults::FOLLOW_BACKFILL,
            recall_window: chrono::TimeDelta::seconds(defaults::RECALL_WINDOW_SECS),
            edit_window: Some(chrono::TimeDelta::seconds(defaults::EDIT_WINDOW_SECS)),
            post_edit_window: None,
            group_pull_above: defaults::GROUP_PULL_THRESHOLD,
            group_push_below: defaults::push_threshold(defaults::GROUP_PULL_THRESHOLD),
            max_group_members: schemas::DEFAULT_MAX_GROUP_MEMBERS,
            active_audience_max: defaults::ACTIVE_AUDIENCE_MAX,
            return_window: ReturnWindow::default(),
            index_search: true,
        }
    }
}

impl Policy {
    /// The `tsvector` literal stored with `text` (a message or post body), or none when search
    /// indexing is off.
    pub fn searchable(&self, text: &str) -> Option<String> {
        self.index_search.then(|| schemas::search::document(text))
    }
}

/// The delivery mode an author with `followers` followers should have, given their current one.
pub fn next_mode(current: DeliveryMode, followers: i64, policy: &Policy) -> DeliveryMode {
    next_mode_between(current, followers, policy.pull_above, policy.push_below)
}

/// The mode for an audience of `size` given the current one: pull above `pull_above`, push again only
/// below `push_below`.
pub fn next_mode_between(
    current: DeliveryMode,
    size: i64,
    pull_above: i64,
    push_below: i64,
) -> DeliveryMode {
    match current {
        DeliveryMode::Push if size > pull_above => DeliveryMode::Pull,
        DeliveryMode::Pull if size < push_below => DeliveryMode::Push,
        unchanged => unchanged,
    }
}

/// How an author's posts (a group's messages) reach their audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Written into every follower's (member's) inbox.
    Push,
    /// Read diffusion: written once, read from the author's (group's) history.
    Pull,
}

impl DeliveryMode {
    /// The mode as the `mode` columns spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryMode::Push => "push",
            DeliveryMode::Pull => "pull",
        }
    }

    /// The mode a `mode` column holds (anything but `pull` is push, the columns' default).
    pub(crate) fn parse(text: &str) -> DeliveryMode {
        if text == "pull" {
            DeliveryMode::Pull
        } else {
            DeliveryMode::Push
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_change_only_past_the_thresholds() {
        let policy = Policy {
            pull_above: 10,
            push_below: 8,
            follow_backfill: 5,
            ..Policy::default()
        };
        use DeliveryMode::{Pull, Push};
        assert_eq!(next_mode(Push, 10, &policy), Push);
        assert_eq!(next_mode(Push, 11, &policy), Pull);
        // Between the thresholds an author keeps the mode they have: no flapping.
        assert_eq!(next_mode(Pull, 9, &policy), Pull);
        assert_eq!(next_mode(Pull, 8, &policy), Pull);
        assert_eq!(next_mode(Pull, 7, &policy), Push);
        assert_eq!(next_mode(Push, 9, &policy), Push);
    }

    #[test]
    fn a_mode_reads_back_as_written() {
        for mode in [DeliveryMode::Push, DeliveryMode::Pull] {
            assert_eq!(DeliveryMode::parse(mode.as_str()), mode);
        }
    }
}
