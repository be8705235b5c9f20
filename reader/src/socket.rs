//! `GET /v1/ws`: a device's realtime connection (protocol: `schemas::realtime`).
//!
//! The server streams the user's sync timeline from the device's cursor — its last acknowledged seq,
//! kept in `device_cursors` — in seq order, at most `window` entries beyond the last ack. Because the
//! stream is read from the database (never from an in-memory queue), a reconnect to any reader
//! resumes exactly after the last ack: nothing is lost, only unacknowledged entries repeat (a cursor
//! below the user's retention floor gets a `reset` frame instead of a gap). Wake-ups come from the
//! process's one LISTEN connection ([`crate::hub`]).
//!
//! Why `device_cursors` is a table the reader writes, not an event through Kafka: an ack is device
//! state, not timeline content — it has no audience, only moves forward (`GREATEST`), and must not be
//! replayed into a rebuilt database (a device's position is the device's, not history's). Sending it
//! through the topic would cost a produce and a fan-out hop per ack for nothing.
//!
//! Outgoing frames pass a bounded queue to one writer task. The stream waits for room in the queue (so
//! a reading client is never cut for being slower than the database), but a queue that stays full or a
//! write that stalls for `send_timeout` ends the connection (close 4008): memory per connection stays
//! bounded whatever the client does. Heartbeats go both ways: the server pings every `heartbeat`, and closes (4000) when the
//! client sent nothing for `heartbeat × max_missed`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use authkit::{Bearer, DisabledAccounts, TokenKey};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use httpkit::{ApiError, ClientAddress, QueryParams};
use kafkakit::Pending;
use schemas::api::{ReadRequest, SendMessageRequest};
use schemas::realtime::{close, ClientFrame, ServerFrame, BUFFER_BYTES, MAX_FRAME_BYTES};
use schemas::{DeviceId, Envelope, UserId};
use sqlx::PgPool;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::realtime::{Admitted, Realtime};
use crate::session_ends::SessionWatch;
use crate::sync::sync_page;

/// Whether a read failed on a frame or message over the size limit (tungstenite stops reading it).
fn too_large(err: &axum::Error) -> bool {
    matches!(
        std::error::Error::source(err).and_then(|e| e.downcast_ref::<tungstenite::Error>()),
        Some(tungstenite::Error::Capacity(_))
    )
}

/// Device cursors kept per user; a new device past it forgets the least recently seen one.
const MAX_DEVICES_PER_USER: i64 = 100;
/// Entries per `sync` frame.
const FRAME_ENTRIES: i64 = 100;
/// Sends and read markers of one connection waiting for the broker at once. The next client frame is
/// read when one of them is answered: a client that pipelines faster than the broker acknowledges is
/// slowed down (TCP backpressure), not refused.
const MAX_IN_FLIGHT: usize = 32;

/// Realtime connection.
///
/// Upgrades to a WebSocket that streams the user's sync timeline from the device's last ack. The
/// token comes as `Authorization: Bearer`, as `access_token`, or — browsers, keeping it out of URLs —
/// in the first frame: `{"type": "auth", "access_token": …}` within 10 s. See README "Realtime".
#[utoipa::path(
    get, path = "/v1/ws", tag = "realtime",
    params(
        ("device" = String, Query, description = "The device's id (1 to 64 of A-Z a-z 0-9 _ . -): its acks are kept per device."),
        ("after" = Option<i64>, Query, minimum = 0, description = "Resume after this seq instead of the device's last ack."),
        ("access_token" = Option<String>, Query, description = "The access token, for clients that cannot set the Authorization header."),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol."),
        httpkit::openapi::BadRequest, httpkit::openapi::Unauthorized, httpkit::openapi::Forbidden,
        httpkit::openapi::TooManyRequests,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn connect(
    bearer: Result<Bearer, ApiError>,
    State(realtime): State<Arc<Realtime>>,
    client: ClientAddress,
    headers: HeaderMap,
    params: QueryParams,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let device = params
        .get("device")
        .ok_or_else(|| ApiError::bad_field("device", "required: the device's id"))?;
    let device = DeviceId::parse("device", device)?.to_string();
    let after = params.int_in("after", 0, i64::MAX)?;
    if !realtime.origins.permits(&headers) {
        tracing::warn!(origin = ?headers.get(header::ORIGIN), "socket refused: origin not allowed");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this page's origin may not open sockets here (FANLINE_WS_ALLOWED_ORIGINS)",
        ));
    }
    let opening = Opening {
        realtime,
        client,
        device,
        after,
    };
    let bearer = match bearer {
        Ok(bearer) => bearer,
        // No token with the request: it comes in the first frame.
        Err(_)
            if !headers.contains_key(header::AUTHORIZATION)
                && params.get("access_token").is_none() =>
        {
            let waiting = opening
                .realtime
                .unauthenticated
                .clone()
                .try_acquire_owned()
                .map_err(|_| {
                    ApiError::unavailable(
                        "too many sockets waiting for their auth frame; try again",
                    )
                })?;
            return Ok(with_limits(upgrade).on_upgrade(move |socket| {
                let tasks = opening.realtime.tasks.clone();
                tasks.track_future(async move {
                    let realtime = &opening.realtime;
                    let bearer = authenticate(&realtime.key, &realtime.disabled, socket).await;
                    drop(waiting);
                    if let Some((bearer, socket)) = bearer {
                        opening.admit_then_serve(bearer, socket).await;
                    }
                })
            }));
        }
        Err(err) => return Err(err),
    };
    let admitted = match opening.realtime.admit(&bearer, client).await {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(refused),
    };
    let user = UserId::parse("token", bearer.user())?;
    opening.realtime.presence.arrive(&user).await?;
    Ok(with_limits(upgrade).on_upgrade(move |socket| {
        let tasks = opening.realtime.tasks.clone();
        tasks.track_future(opening.serve(bearer, admitted, socket))
    }))
}

/// Small buffers: an idle connection should cost kilobytes, not tungstenite's 128 KiB defaults.
/// Frames larger than the buffer still work; the buffer only grows while one is in flight.
fn with_limits(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(BUFFER_BYTES)
        .write_buffer_size(BUFFER_BYTES)
        // Both limits: a frame is buffered whole before the message limit is checked.
        .max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(MAX_FRAME_BYTES)
}

/// How long a socket opened without a token may take to send its `auth` frame.
const AUTH_WAIT: Duration = Duration::from_secs(10);

/// The caller of a socket opened without a token, from its first frame (`{"type": "auth",
/// "access_token": …}` within [`AUTH_WAIT`]); `None` after closing it when that frame does not come
/// or its token is refused (4001: expired or unknown, refresh and reconnect; 4002: the account is
/// disabled or deleted).
async fn authenticate(
    key: &TokenKey,
    disabled: &DisabledAccounts,
    mut socket: WebSocket,
) -> Option<(Bearer, WebSocket)> {
    let token = match tokio::time::timeout(AUTH_WAIT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str(text.as_str()) {
            Ok(ClientFrame::Auth { access_token }) => Some(access_token),
            _ => None,
        },
        _ => None,
    };
    let Some(token) = token else {
        refuse(socket, 1008, "send an auth frame first").await;
        return None;
    };
    match Bearer::verify(key, Some(disabled), &token) {
        Ok(bearer) => Some((bearer, socket)),
        Err(err) if err.status == StatusCode::FORBIDDEN => {
            refuse(socket, close::SESSION_ENDED, "account disabled or deleted").await;
            None
        }
        Err(_) => {
            refuse(socket, close::TOKEN_EXPIRED, "token expired or unknown").await;
            None
        }
    }
}

async fn refuse(mut socket: WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// A socket on its way in: where it comes from, for which device, from where in the timeline.
struct Opening {
    realtime: Arc<Realtime>,
    client: ClientAddress,
    device: String,
    after: Option<i64>,
}

impl Opening {
    /// Admits a socket authenticated by its first frame as [`connect`] admits others before the
    /// upgrade: past the caps it closes 1013 (try again later), for an ended session 4002.
    async fn admit_then_serve(self, bearer: Bearer, socket: WebSocket) {
        let admitted = match self.realtime.admit(&bearer, self.client).await {
            Ok(admitted) => admitted,
            Err(refused) if refused.status() == StatusCode::UNAUTHORIZED => {
                return refuse(socket, close::SESSION_ENDED, "session ended: log in again").await;
            }
            Err(_) => return refuse(socket, 1013, "too many connections; try again later").await,
        };
        let arrived = match UserId::parse("token", bearer.user()) {
            Ok(user) => self.realtime.presence.arrive(&user).await.is_ok(),
            Err(_) => false,
        };
        if !arrived {
            return refuse(socket, 1013, "database unavailable, try again later").await;
        }
        self.serve(bearer, admitted, socket).await;
    }

    async fn serve(self, bearer: Bearer, admitted: Admitted, socket: WebSocket) {
        let realtime = &self.realtime;
        realtime.metrics.open.inc();
        let reason = serve(
            realtime,
            bearer,
            &admitted.session,
            self.device,
            self.after,
            socket,
        )
        .await;
        realtime.metrics.open.dec();
        drop(admitted);
        realtime
            .metrics
            .closed
            .with_label_values(&[reason.label()])
            .inc();
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    ClientClosed,
    HeartbeatTimeout,
    TokenExpired,
    SessionEnded,
    FrameTooLarge,
    SlowConsumer,
    ShuttingDown,
    DatabaseUnavailable,
}

impl End {
    fn label(self) -> &'static str {
        match self {
            End::ClientClosed => "client_closed",
            End::HeartbeatTimeout => "heartbeat_timeout",
            End::TokenExpired => "token_expired",
            End::SessionEnded => "session_ended",
            End::FrameTooLarge => "frame_too_large",
            End::SlowConsumer => "slow_consumer",
            End::ShuttingDown => "shutting_down",
            End::DatabaseUnavailable => "database_unavailable",
        }
    }

    fn close_frame(self) -> Option<(u16, &'static str)> {
        match self {
            End::ClientClosed => None,
            End::HeartbeatTimeout => Some((close::HEARTBEAT_TIMEOUT, "heartbeat timeout")),
            End::TokenExpired => Some((close::TOKEN_EXPIRED, "token expired")),
            End::SessionEnded => Some((close::SESSION_ENDED, "session ended: log in again")),
            End::FrameTooLarge => Some((1009, "frame larger than 64 KiB")),
            End::SlowConsumer => Some((close::SLOW_CONSUMER, "slow consumer")),
            End::ShuttingDown => Some((1001, "the server is shutting down")),
            End::DatabaseUnavailable => Some((1013, "database unavailable, try again later")),
        }
    }
}

/// The sending half: a bounded queue to the writer task. A full queue means the client is not
/// reading: the connection is cut instead of buffering without bound.
#[derive(Clone)]
struct Outbox {
    frames: mpsc::Sender<Message>,
    overflowed: CancellationToken,
}

impl Outbox {
    /// Queues a frame of the stream, waiting up to `patience` for room: a client that reads keeps up
    /// with what we fetch; one that does not is cut.
    async fn push_waiting(&self, frame: &ServerFrame, patience: Duration) {
        let text = serde_json::to_string(frame).unwrap_or_default();
        let queued = tokio::time::timeout(
            patience,
            self.frames.send(Message::Text(Utf8Bytes::from(text))),
        )
        .await;
        if !matches!(queued, Ok(Ok(()))) {
            self.overflowed.cancel();
        }
    }

    /// Queues a small frame (heartbeat, answer) without waiting; no room means the client is not
    /// reading.
    fn push(&self, frame: &ServerFrame) {
        let text = serde_json::to_string(frame).unwrap_or_default();
        if self
            .frames
            .try_send(Message::Text(Utf8Bytes::from(text)))
            .is_err()
        {
            self.overflowed.cancel();
        }
    }
}

async fn load_ack(pool: &PgPool, user: &str, device: &str) -> Result<i64, sqlx::Error> {
    let acked: Option<i64> = sqlx::query_scalar(
        "SELECT acked_seq FROM device_cursors WHERE user_id = $1 AND device_id = $2",
    )
    .bind(user)
    .bind(device)
    .fetch_optional(pool)
    .await?;
    Ok(acked.unwrap_or(0))
}

async fn store_ack(pool: &PgPool, user: &str, device: &str, seq: i64) -> Result<(), sqlx::Error> {
    let inserted: bool = sqlx::query_scalar(
        "INSERT INTO device_cursors (user_id, device_id, acked_seq) VALUES ($1, $2, $3)
         ON CONFLICT (user_id, device_id) DO UPDATE
         SET acked_seq = GREATEST(device_cursors.acked_seq, EXCLUDED.acked_seq), updated_at = now()
         RETURNING xmax = 0",
    )
    .bind(user)
    .bind(device)
    .bind(seq)
    .fetch_one(pool)
    .await?;
    if inserted {
        // A new device: keep the user's most recently seen ones only, so device ids a client makes
        // up cannot grow the table without bound (issue 19, finding 8). A forgotten device resumes
        // from the start, or from `after`.
        sqlx::query(
            "DELETE FROM device_cursors WHERE user_id = $1 AND device_id NOT IN (
                 SELECT device_id FROM device_cursors WHERE user_id = $1
                 ORDER BY updated_at DESC, device_id LIMIT $2)",
        )
        .bind(user)
        .bind(MAX_DEVICES_PER_USER)
        .execute(pool)
        .await?;
    }
    Ok(())
}

fn error_frame(request_id: Option<String>, err: &ApiError) -> ServerFrame {
    ServerFrame::Error {
        request_id,
        status: err.status.as_u16(),
        error: err.message.to_string(),
        field: err.field.as_ref().map(|f| f.to_string()),
    }
}

async fn serve(
    realtime: &Realtime,
    bearer: Bearer,
    session: &SessionWatch,
    device: String,
    after: Option<i64>,
    socket: WebSocket,
) -> End {
    let settings = realtime.settings;
    let user = bearer.user().to_owned();
    let (mut sink, mut incoming) = socket.split();
    let (frames, mut queued) = mpsc::channel::<Message>(settings.buffer_frames.max(2));
    let outbox = Outbox {
        frames,
        overflowed: CancellationToken::new(),
    };
    // The writer ends when the queue closes (after the close frame) or a write stalls.
    let stalled = CancellationToken::new();
    let writer = {
        let stalled = stalled.clone();
        tokio::spawn(async move {
            while let Some(frame) = queued.recv().await {
                let closing = matches!(frame, Message::Close(_));
                match tokio::time::timeout(settings.send_timeout, sink.send(frame)).await {
                    Ok(Ok(())) => {}
                    _ => {
                        stalled.cancel();
                        return;
                    }
                }
                if closing {
                    break;
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
        })
    };

    let mut subscription = realtime.hub.subscribe(&user);
    let resume_after = match after {
        Some(after) => Ok(after),
        None => load_ack(&realtime.pool, &user, &device).await,
    };
    let end = match resume_after {
        Ok(resume_after) => {
            outbox.push(&ServerFrame::Hello {
                user: user.clone(),
                device: device.clone(),
                resume_after,
                heartbeat_secs: settings.heartbeat.as_secs().max(1),
                max_missed: settings.max_missed,
                window: settings.window,
            });
            let mut connection = Connection {
                realtime,
                user: &user,
                device: &device,
                outbox: outbox.clone(),
                sent_upto: resume_after,
                unacked: VecDeque::new(),
                in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            };
            connection
                .run(&mut incoming, &mut subscription, &bearer, session, &stalled)
                .await
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the device's cursor");
            End::DatabaseUnavailable
        }
    };
    if end == End::SlowConsumer {
        // The queue is full or a write stalled: a close frame would not get through either.
        writer.abort();
    } else {
        if let Some((code, reason)) = end.close_frame() {
            let _ = outbox.frames.try_send(Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            })));
        }
        drop(outbox);
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    }
    tracing::debug!(user = %user, device = %device, reason = end.label(), "socket ended");
    end
}

struct Connection<'a> {
    realtime: &'a Realtime,
    user: &'a str,
    device: &'a str,
    outbox: Outbox,
    /// The last seq (or large-group position) sent.
    sent_upto: i64,
    /// Seqs sent and not yet acknowledged, ascending.
    unacked: VecDeque<i64>,
    in_flight: Arc<Semaphore>,
}

impl Connection<'_> {
    async fn run(
        &mut self,
        incoming: &mut futures::stream::SplitStream<WebSocket>,
        subscription: &mut crate::hub::Subscription,
        bearer: &Bearer,
        session: &SessionWatch,
        stalled: &CancellationToken,
    ) -> End {
        let settings = self.realtime.settings;
        let silence_limit = settings.heartbeat * settings.max_missed.max(1);
        let mut last_heard = Instant::now();
        let mut ping =
            tokio::time::interval_at(Instant::now() + settings.heartbeat, settings.heartbeat);
        let expires_in = (bearer.claims.exp - chrono::Utc::now().timestamp()).max(0) as u64;
        let expiry = tokio::time::sleep(Duration::from_secs(expires_in));
        tokio::pin!(expiry);
        let mut behind = true;
        let mut failures = 0u32;
        loop {
            if behind && self.unacked.len() < settings.window as usize {
                match self.send_next_page().await {
                    Ok(more) => {
                        behind = more;
                        failures = 0;
                    }
                    Err(err) => {
                        failures += 1;
                        tracing::warn!(error = %err, failures, "cannot read the sync timeline");
                        if failures >= 10 {
                            return End::DatabaseUnavailable;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                if self.outbox.overflowed.is_cancelled() {
                    return End::SlowConsumer;
                }
                continue;
            }
            tokio::select! {
                frame = incoming.next() => {
                    last_heard = Instant::now();
                    match frame {
                        // An ack that opens the window needs nothing more: `behind` is still set.
                        Some(Ok(Message::Text(text))) => self.handle(text.as_str()).await,
                        Some(Ok(Message::Binary(_))) => {
                            self.outbox.push(&error_frame(None, &ApiError::bad_field("type", "frames are JSON text")));
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Err(err)) if too_large(&err) => return End::FrameTooLarge,
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return End::ClientClosed,
                    }
                }
                () = subscription.woken() => {
                    // The page that woke us, if it starts where we are; else read for ourselves.
                    match subscription.batch() {
                        Some(batch) if !behind && self.can_take(&batch) => self.take(&batch).await,
                        _ => behind = true,
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() >= silence_limit {
                        return End::HeartbeatTimeout;
                    }
                    self.outbox.push(&ServerFrame::Ping);
                }
                () = &mut expiry => return End::TokenExpired,
                () = session.ended() => return End::SessionEnded,
                () = self.realtime.shutdown.cancelled() => return End::ShuttingDown,
                () = self.outbox.overflowed.cancelled() => return End::SlowConsumer,
                () = stalled.cancelled() => return End::SlowConsumer,
            }
        }
    }

    /// A message spends the user's budget, a 1:1 message's recipient must have an account, and its
    /// attachments must have been uploaded, as at ingest ([`authkit::WriteLimiter`],
    /// [`authkit::AccountDirectory`], [`blobkit::check_content`]).
    async fn may_send(&self, message: &schemas::MessageSent) -> Result<(), ApiError> {
        let me = UserId::parse("from", self.user)?;
        if let Err(wait) = self
            .realtime
            .writes
            .check(authkit::WriteKind::Message, self.user, 1)
        {
            return Err(ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many messages from this user: try again in {} s",
                    wait.as_secs().max(1)
                ),
            ));
        }
        if let Some(recipient) = message.conversation.other_party(&me) {
            self.realtime.directory.require("to", &recipient).await?;
        }
        let blobs = self.realtime.blobs.as_deref();
        let age = blobkit::Age::Fresh;
        blobkit::check_content(blobs, &message.content, self.user, age).await?;
        Ok(())
    }

    fn can_take(&self, batch: &crate::hub::Batch) -> bool {
        batch.after == self.sent_upto
            && self.unacked.len() + batch.entries.len() <= self.realtime.settings.window as usize
    }

    /// Sends a page the hub read for every connection of the user.
    async fn take(&mut self, batch: &crate::hub::Batch) {
        self.unacked.extend(batch.entries.iter().map(|e| e.seq));
        self.sent_upto = batch.last_seq;
        let frame = ServerFrame::Sync {
            entries: batch.entries.clone(),
            conversations: Vec::new(),
            last_seq: batch.last_seq,
        };
        self.outbox
            .push_waiting(&frame, self.realtime.settings.send_timeout)
            .await;
    }

    /// Sends the next page after `sent_upto`; `Ok(true)` when more is waiting.
    async fn send_next_page(&mut self) -> Result<bool, ApiError> {
        let room = self.realtime.settings.window as i64 - self.unacked.len() as i64;
        let limit = room.clamp(1, FRAME_ENTRIES);
        let page = sync_page(
            &self.realtime.reads,
            &self.realtime.pool,
            self.user,
            self.sent_upto,
            limit,
        )
        .await?;
        if page.reset {
            // Retention removed entries this device never got: it reloads, then acks the floor and
            // takes the entries after it as usual.
            self.sent_upto = page.last_seq;
            let frame = ServerFrame::Reset {
                floor_seq: page.last_seq,
            };
            self.outbox
                .push_waiting(&frame, self.realtime.settings.send_timeout)
                .await;
            return Ok(true);
        }
        // A page can hold nothing to show yet move the cursor (entries of deleted posts are scanned,
        // not returned): that is progress too, sent as an empty frame the client can ack past.
        if page.last_seq <= self.sent_upto {
            self.realtime.hub.caught_up(self.user, self.sent_upto);
            return Ok(false);
        }
        if !page.has_more && page.conversations.is_empty() {
            self.realtime.hub.caught_up(self.user, page.last_seq);
        }
        self.unacked.extend(page.entries.iter().map(|e| e.seq));
        self.sent_upto = page.last_seq;
        let more = page.has_more;
        let frame = ServerFrame::Sync {
            entries: page.entries,
            conversations: page.conversations,
            last_seq: page.last_seq,
        };
        self.outbox
            .push_waiting(&frame, self.realtime.settings.send_timeout)
            .await;
        Ok(more)
    }

    /// Handles one client frame.
    async fn handle(&mut self, text: &str) {
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(err) => {
                let err = ApiError::bad_field("type", format!("not a client frame: {err}"));
                self.outbox.push(&error_frame(None, &err));
                return;
            }
        };
        match frame {
            ClientFrame::Auth { .. } => {
                let err = ApiError::bad_field("type", "this socket is authenticated already");
                self.outbox.push(&error_frame(None, &err));
            }
            ClientFrame::Ping => self.outbox.push(&ServerFrame::Pong),
            ClientFrame::Pong => {}
            ClientFrame::Ack { seq } => self.ack(seq).await,
            ClientFrame::Send { request_id, draft } => {
                let request = SendMessageRequest {
                    from: self.user.to_owned(),
                    draft,
                };
                let checked = match request.into_event() {
                    Ok(message) => self.may_send(&message).await.map(|()| message),
                    Err(err) => Err(err.into()),
                };
                match checked {
                    Ok(message) => {
                        let answer = ServerFrame::Accepted {
                            request_id: request_id.clone(),
                            message_id: Some(message.message_id.to_string()),
                            conversation_id: Some(message.conversation.to_string()),
                        };
                        self.produce(request_id, Envelope::message_sent(message), answer)
                            .await;
                    }
                    Err(err) => self.outbox.push(&error_frame(request_id, &err)),
                }
            }
            ClientFrame::Read {
                request_id,
                conversation,
                seq,
            } => match (ReadRequest { seq }).into_event(self.user, &conversation) {
                Ok(marker) => {
                    let answer = ServerFrame::Accepted {
                        request_id: request_id.clone(),
                        message_id: None,
                        conversation_id: Some(marker.conversation.to_string()),
                    };
                    self.produce(request_id, Envelope::read_marked(marker), answer)
                        .await;
                }
                Err(err) => self.outbox.push(&error_frame(request_id, &err.into())),
            },
        }
    }

    async fn ack(&mut self, seq: i64) {
        if seq < 0 || seq > self.sent_upto {
            let err = ApiError::bad_field("seq", "must be a seq this connection sent");
            self.outbox.push(&error_frame(None, &err));
            return;
        }
        if let Err(err) = store_ack(&self.realtime.pool, self.user, self.device, seq).await {
            tracing::warn!(error = %err, "cannot store an ack");
            let err = ApiError::unavailable("database unavailable: ack again");
            self.outbox.push(&error_frame(None, &err));
            return;
        }
        while self.unacked.front().is_some_and(|&s| s <= seq) {
            self.unacked.pop_front();
        }
    }

    /// Appends an event without holding up the stream; the answer goes out when the broker acked.
    /// The event is handed to the producer here, in the order the frames came: one sender's
    /// messages on one connection are stored in the order they were sent (one request in flight per
    /// broker connection keeps them so). Only the wait for the broker's answer runs on its own.
    async fn produce(&self, request_id: Option<String>, envelope: Envelope, answer: ServerFrame) {
        let permit = tokio::select! {
            permit = self.in_flight.clone().acquire_owned() => permit,
            () = self.realtime.shutdown.cancelled() => return,
        };
        let Ok(permit) = permit else { return };
        let pending: Pending = self.realtime.producer.enqueue(&envelope);
        let outbox = self.outbox.clone();
        tokio::spawn(async move {
            match pending.acknowledged().await {
                Ok(_) => outbox.push(&answer),
                Err(err) => outbox.push(&error_frame(request_id, &ApiError::from(err))),
            }
            drop(permit);
        });
    }
}
