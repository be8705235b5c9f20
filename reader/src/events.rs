//! `GET /v1/users/{user}/events`: the sync timeline as Server-Sent Events, for browsers' EventSource
//! and curl. Each entry is an `entry` event whose `id` is its seq; a large group that advanced is a
//! `conversation` event whose `id` is its position. A reconnecting EventSource sends the last id as
//! `Last-Event-ID` and the stream resumes after it (or after `after`); from below the user's
//! retention floor it gets a `reset` event (`{"floor_seq": …}`, id the floor) first. The stream is read from the
//! database page by page as the client reads (hyper pulls the next event only when the previous one
//! was written), so a slow client holds one page at most; wake-ups come from [`crate::hub`].

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use httpkit::openapi::{BadRequest, Forbidden, NoSuchRoute, TooManyRequests, Unauthorized};
use httpkit::{ApiError, QueryParams};
use schemas::UserId;

use authkit::Bearer;

use crate::realtime::Realtime;
use crate::sync::sync_page;

/// Entries read per query.
const PAGE: i64 = 100;

/// Sync timeline as Server-Sent Events.
///
/// `entry` events (data: a sync entry, id: its seq) and `conversation` events (data: an advanced large
/// group, id: its position), in order, from `Last-Event-ID` (or `after`, or the start) on; a comment
/// every 15 s keeps proxies from closing the stream.
#[utoipa::path(
    get, path = "/v1/users/{user}/events", tag = "realtime",
    params(
        ("user" = schemas::UserId, Path, description = "Whose sync timeline."),
        ("after" = Option<i64>, Query, minimum = 0, description = "Start after this seq (`Last-Event-ID` wins)."),
        ("access_token" = Option<String>, Query, description = "The access token, for EventSource (it cannot set headers)."),
    ),
    responses(
        (status = 200, description = "An event stream (`text/event-stream`)."),
        BadRequest, Unauthorized, Forbidden, NoSuchRoute, TooManyRequests,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn stream(
    bearer: Bearer,
    State(realtime): State<Arc<Realtime>>,
    client: httpkit::ClientAddress,
    Path(user): Path<String>,
    headers: HeaderMap,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let user = UserId::parse("user", &user)?;
    bearer.require_user("user", &user)?;
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|v| *v >= 0)
            .ok_or_else(|| {
                ApiError::bad_field("Last-Event-ID", "must be a seq this stream sent")
            })?,
        None => params.int_in("after", 0, i64::MAX)?.unwrap_or(0),
    };
    let admitted = match realtime.admit(&bearer, client).await {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(refused),
    };
    realtime.presence.arrive(&user).await?;
    let subscription = realtime.hub.subscribe(user.as_str());
    let expires_in = (bearer.claims.exp - chrono::Utc::now().timestamp()).max(0) as u64;
    let state = StreamState {
        expires_at: tokio::time::Instant::now() + Duration::from_secs(expires_in),
        realtime,
        user: user.to_string(),
        after,
        pending: VecDeque::new(),
        subscription,
        behind: true,
        admitted,
    };
    let events = futures::stream::unfold(state, |mut state| async move {
        let event = state.next().await?;
        Some((Ok::<Event, Infallible>(event), state))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

struct StreamState {
    /// The stream ends when the token expires; the client reconnects with a fresh one and
    /// `Last-Event-ID`.
    expires_at: tokio::time::Instant,
    realtime: Arc<Realtime>,
    user: String,
    after: i64,
    pending: VecDeque<Event>,
    subscription: crate::hub::Subscription,
    behind: bool,
    /// The stream's place under the caps, held while it is open; it ends with its session.
    admitted: crate::realtime::Admitted,
}

impl StreamState {
    /// The next event, waiting for one as long as it takes; `None` ends the stream (shutdown).
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.realtime.shutdown.is_cancelled()
                || self.admitted.session.has_ended()
                || tokio::time::Instant::now() >= self.expires_at
            {
                return None;
            }
            if self.behind {
                match sync_page(
                    &self.realtime.reads,
                    &self.realtime.pool,
                    &self.user,
                    self.after,
                    PAGE,
                )
                .await
                {
                    Ok(page) => {
                        self.behind = page.has_more;
                        self.after = page.last_seq;
                        self.queue(page);
                    }
                    Err(err) => {
                        // An outage: the client keeps its stream and gets what it missed afterwards.
                        tracing::warn!(error = %err, "event stream cannot read the sync timeline");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                continue;
            }
            tokio::select! {
                () = self.subscription.woken() => self.behind = true,
                () = self.realtime.shutdown.cancelled() => return None,
                () = self.admitted.session.ended() => return None,
                () = tokio::time::sleep_until(self.expires_at) => return None,
            }
        }
    }

    fn queue(&mut self, page: schemas::api::SyncPage) {
        if page.reset {
            // Retention removed entries after the client's id: it reloads; a reconnect resumes after
            // the floor (the event's id).
            let data = serde_json::json!({ "floor_seq": page.last_seq });
            if let Ok(event) = Event::default().event("reset").json_data(data) {
                self.pending.push_back(event.id(page.last_seq.to_string()));
            }
            return;
        }
        // Entries and group positions share one sequence: sent in that order, ids only grow.
        let mut items: Vec<(i64, Event)> = Vec::new();
        for entry in &page.entries {
            if let Ok(event) = Event::default().event("entry").json_data(entry) {
                items.push((entry.seq, event));
            }
        }
        for conversation in &page.conversations {
            if let Ok(event) = Event::default()
                .event("conversation")
                .json_data(conversation)
            {
                items.push((conversation.position, event));
            }
        }
        items.sort_by_key(|(id, _)| *id);
        self.pending.extend(
            items
                .into_iter()
                .map(|(id, event)| event.id(id.to_string())),
        );
    }
}
