//! The floor rule, for every place that removes sync entries (partition drops in [`crate::retention`],
//! the cap's trims in [`crate::entry_cap`]): a user's floor is the highest seq removed from their sync
//! timeline (a cursor below it gets a reset), their feed cut lies right above the highest post id
//! removed (the home feed reads below it from the authors' timelines), and both only rise.

/// The feed cut of a user's removed entries (columns `kind`, `post_id`): right above the highest post id
/// among them (`id || '0'` sorts above `id` and below every greater id).
pub const FEED_CUT: &str = "max(post_id) FILTER (WHERE kind = 'post') || '0'";
/// The tail of every `INSERT INTO sync_floors`, wherever entries are removed: floors and feed cuts
/// only rise.
pub const FLOORS_ONLY_RISE: &str = "ON CONFLICT (user_id) DO UPDATE
    SET floor_seq = greatest(sync_floors.floor_seq, EXCLUDED.floor_seq),
        feed_below = greatest(sync_floors.feed_below, EXCLUDED.feed_below)";
