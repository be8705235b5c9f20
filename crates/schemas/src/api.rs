//! The HTTP API's request and response bodies, shared by the services and by clients such as the tests
//! and the bench.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Body of `POST /v1/posts`. Unknown fields are ignored so that newer clients keep working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePostRequest {
    pub author: String,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// Body of a `202 Accepted` from ingest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// Id of the post (posts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_id: Option<String>,
    pub event_id: String,
    /// Where the broker stored the event, for tracing it through the pipeline.
    pub partition: i32,
    pub offset: i64,
}

/// One post in a feed or store timeline page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedEntry {
    pub post_id: String,
    pub author: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// `GET /v1/users/{user}/feed` and `/posts`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedPage {
    pub entries: Vec<FeedEntry>,
    /// Pass as `cursor` for the next (older) page; `null` when there is none.
    pub next_cursor: Option<String>,
}

/// One entry of a sync timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncEntry {
    pub seq: i64,
    pub post_id: String,
    pub author: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// `GET /v1/users/{user}/sync`: ascending `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPage {
    pub entries: Vec<SyncEntry>,
    /// The highest seq in `entries`, or the request's `after` when there are none: poll with it next.
    pub last_seq: i64,
    /// Whether more entries follow right away.
    pub has_more: bool,
}

/// Every error response: `field` names the request field at fault, if one is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub field: Option<String>,
}
