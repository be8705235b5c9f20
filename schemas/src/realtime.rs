//! The WebSocket protocol of `GET /v1/ws` (reader): JSON text frames, one object each, tagged by
//! `type`. README "Realtime" documents it with examples; these types are the contract.
//!
//! Server → client: `hello` once, then `sync` frames (entries in seq order, never a gap), `ping`,
//! `pong`, and the answers to the client's requests (`accepted`, `error`). Client → server: `ack`
//! (the highest seq it stored), `ping`, `pong`, `send` (a message) and `read` (a read marker).
//! Entries after the device's last `ack` are sent again after a reconnect: the client drops seqs it
//! already has.

use serde::{Deserialize, Serialize};

use crate::api::{AdvancedConversation, MessageDraft, SyncEntry};

/// Largest frame (and message) a client may send, in bytes; a larger one closes the connection
/// (1009). Frames are buffered whole before they are checked, so the frame limit is the memory limit.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Read and write buffers of one connection, in bytes: an idle connection should cost kilobytes, not
/// tungstenite's 128 KiB defaults. Larger frames still work; a buffer only grows while one is in flight.
pub const BUFFER_BYTES: usize = 4 * 1024;

/// Close codes the server uses besides the standard ones (1000 normal, 1001 the reader is shutting
/// down, 1008 a frame it cannot accept, 1011 an internal error, 1013 the database is unavailable).
pub mod close {
    /// No frame from the client for `heartbeat_secs × max_missed` seconds.
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
    /// The access token expired: reconnect with a fresh one (the device resumes from its last ack).
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// The session was revoked (logout, log out everywhere, a refresh token used twice): log in again.
    pub const SESSION_ENDED: u16 = 4002;
    /// The client did not read fast enough: its outgoing buffer was full or a write stalled.
    pub const SLOW_CONSUMER: u16 = 4008;
}

/// A frame the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame: who is connected, where the stream resumes, and the heartbeat rules.
    Hello {
        user: String,
        device: String,
        /// Entries with a greater seq follow.
        resume_after: i64,
        /// The server pings this often; the client should too.
        heartbeat_secs: u64,
        /// The server closes (4000) after this many heartbeat intervals without a frame from the client.
        max_missed: u32,
        /// At most this many entries are sent beyond the device's last ack.
        window: u32,
    },
    /// The next entries of the user's sync timeline, and the large groups that advanced. Store
    /// `last_seq` and acknowledge it once stored.
    Sync {
        entries: Vec<SyncEntry>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        conversations: Vec<AdvancedConversation>,
        last_seq: i64,
    },
    /// Entries after the device's cursor, up to `floor_seq`, were removed by retention: reload the
    /// contact list and the open histories; `sync` frames go on after `floor_seq` (acknowledge it).
    Reset {
        floor_seq: i64,
    },
    Ping,
    Pong,
    /// The broker stored a `send` or `read` (the message is delivered, with its seq, as a `sync` entry).
    Accepted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conversation_id: Option<String>,
    },
    /// A request failed, with the HTTP status the same request would get (400, 403, 503 …).
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        status: u16,
        error: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
    },
}

/// A frame the client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// The access token, as the first frame of a socket opened without one (browsers cannot set
    /// headers on sockets, and a token in the URL ends up in logs and histories).
    Auth {
        access_token: String,
    },
    /// Every entry up to `seq` is stored on the device; after a reconnect the stream resumes after it.
    Ack {
        seq: i64,
    },
    Ping,
    Pong,
    /// A message from the connected user: to a user (`to`) or a group (`group`).
    Send {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        /// The message, as `POST /v1/messages` has it without `from` (the connection's user).
        #[serde(flatten)]
        draft: MessageDraft,
    },
    /// The connected user read `conversation` up to `seq`.
    Read {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        conversation: String,
        seq: i64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_tagged_by_type() {
        let ack: ClientFrame = serde_json::from_str(r#"{"type":"ack","seq":7}"#).unwrap();
        assert_eq!(ack, ClientFrame::Ack { seq: 7 });
        let send: ClientFrame =
            serde_json::from_str(r#"{"type":"send","to":"bob","body":"hi","client_msg_id":"c1"}"#)
                .unwrap();
        assert!(matches!(
            send,
            ClientFrame::Send {
                draft: MessageDraft { to: Some(_), .. },
                ..
            }
        ));
        assert_eq!(
            serde_json::to_string(&ServerFrame::Ping).unwrap(),
            r#"{"type":"ping"}"#
        );
    }
}
