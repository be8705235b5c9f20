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

/// Body of `POST /v1/posts/batch`: up to 500 posts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRequest {
    /// Each item is checked on its own, so it stays raw JSON until then.
    pub posts: Vec<serde_json::Value>,
}

/// One item's outcome in a batch: the single call's `202` body, or its error body, with the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItemResult {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Body of the `200` answer to `POST /v1/posts/batch`: one result per item, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse {
    pub results: Vec<BatchItemResult>,
}
