//! The payloads of activity: whether fan-out writes a user's inbox (docs/design.md "1 + M").
//!
//! A reader reports that a user was there (`user_active`, throttled: a few a day per user, never one per
//! request); fanout's sweeper reports that one was not for the active window (`user_dormant`). Both are
//! keyed by the user, so they are applied in the order they were written, also on a replay.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::UserId;

/// Payload of `user_active` (keyed by the user): one of the user's devices logged in, synced or held a
/// realtime connection at `at`. A dormant user's inbox is filled with what they missed when it is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserActive {
    pub user: UserId,
    pub at: DateTime<Utc>,
}

/// Payload of `user_dormant` (keyed by the user): nothing was heard of the user since `last_active_at`,
/// longer ago than the active window. Applied only while that is still the user's last activity, so a
/// `user_active` written meanwhile wins in any order of sweeps and returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserDormant {
    pub user: UserId,
    pub last_active_at: DateTime<Utc>,
}
