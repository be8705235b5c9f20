//! A conversation's history rows as the API shows them: the stored content (type, attachments,
//! payload), the message a reply quotes — resolved here, at read time, so a quote follows its
//! original's recall or removal — and the users a message mentions.

use schemas::api::{Message, QuotedMessage};
use schemas::Content;

/// Characters of a quoted message's snippet.
pub const QUOTE_CHARS: usize = 100;

/// A history page: the messages of `$1` (conversation) `$where` (bounds by `$2`, the history floor
/// `$4`), `$3` rows, in `$order`, each with its mentions, the message it replies to and its reactions
/// counted per key (whether `$5`, the caller, is among them).
macro_rules! history_sql {
    ($where:literal, $order:literal) => {
        concat!(
            "SELECT m.seq, m.message_id, m.sender, m.body, m.created_at, m.recalled_at IS NOT NULL,
                    m.erased_at IS NOT NULL, m.content_type, m.attachments::text, m.payload::text,
                    m.reply_to, m.forwarded,
                    (SELECT array_agg(mm.user_id ORDER BY mm.user_id) FROM message_mentions mm
                     WHERE mm.conversation_id = $1 AND mm.seq = m.seq),
                    q.sender, left(q.body, 200), q.content_type, q.attachments::text,
                    q.payload::text, q.recalled_at IS NOT NULL, q.erased_at IS NOT NULL,
                    m.version, m.edited_at,
                    (SELECT json_agg(json_build_object('key', r.key, 'count', r.n, 'me', r.me)
                                     ORDER BY r.n DESC, r.first)::text
                     FROM (SELECT key, count(*) AS n, bool_or(user_id = $5) AS me,
                                  min(reacted_at) AS first
                           FROM message_reactions
                           WHERE conversation_id = $1 AND seq = m.seq GROUP BY key) r)
             FROM (SELECT * FROM messages WHERE conversation_id = $1 AND ",
            $where,
            " AND seq > $4 ORDER BY seq ",
            $order,
            " LIMIT $3) m
             LEFT JOIN LATERAL (
                 SELECT sender, body, content_type, attachments, payload, recalled_at, erased_at
                 FROM messages r WHERE r.conversation_id = $1 AND r.seq = m.reply_to LIMIT 1
             ) q ON true
             ORDER BY m.seq ",
            $order
        )
    };
}

/// A history page scrolling back: $1 conversation, $2 seq bound (exclusive), $3 rows wanted, $4 the
/// seq the reader's history starts after, $5 the caller.
pub const HISTORY_BEFORE_SQL: &str = history_sql!("seq < $2", "DESC");

/// A history page catching up: $1 conversation, $2 seq bound (exclusive), $3 rows wanted, $4 the seq
/// the reader's history starts after, $5 the caller.
pub const HISTORY_AFTER_SQL: &str = history_sql!("seq > $2", "ASC");

/// One row of a history page; `floor` is the seq the caller's history starts after (a quote of an
/// older message shows nothing of it).
pub fn message_of(row: &tokio_postgres::Row, floor: i64) -> Result<Message, tokio_postgres::Error> {
    let content = Content::from_stored(row.try_get(7)?, row.try_get(8)?, row.try_get(9)?);
    let mentioned: Vec<String> = row
        .try_get::<_, Option<Vec<String>>>(12)?
        .unwrap_or_default();
    let reply_to: Option<i64> = row.try_get(10)?;
    Ok(Message {
        seq: row.try_get(0)?,
        message_id: row.try_get(1)?,
        sender: row.try_get(2)?,
        body: row.try_get(3)?,
        created_at: row.try_get(4)?,
        recalled: row.try_get(5)?,
        sender_deleted: row.try_get(6)?,
        read_by: None,
        content,
        reply_to: reply_to.map(|seq| quote_of(row, seq, floor)).transpose()?,
        forwarded: row.try_get(11)?,
        mention_all: mentioned.iter().any(|u| u == "*"),
        mentions: mentioned.into_iter().filter(|u| u != "*").collect(),
        version: row.try_get(20)?,
        edited_at: row.try_get(21)?,
        reactions: row
            .try_get::<_, Option<&str>>(22)?
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default(),
    })
}

/// The quoted message of a reply, from the row's `q.` columns (13 on).
fn quote_of(
    row: &tokio_postgres::Row,
    seq: i64,
    floor: i64,
) -> Result<QuotedMessage, tokio_postgres::Error> {
    let sender: Option<String> = row.try_get(13)?;
    let recalled = row.try_get::<_, Option<bool>>(18)?.unwrap_or(false);
    let erased = row.try_get::<_, Option<bool>>(19)?.unwrap_or(false);
    let unavailable = seq <= floor || sender.is_none() || erased;
    if unavailable {
        return Ok(QuotedMessage {
            seq,
            sender: None,
            snippet: String::new(),
            recalled: false,
            unavailable: true,
        });
    }
    let snippet = match recalled {
        true => String::new(),
        false => {
            let body: String = row.try_get::<_, Option<String>>(14)?.unwrap_or_default();
            let content = Content::from_stored(
                row.try_get::<_, Option<&str>>(15)?.unwrap_or("text"),
                row.try_get(16)?,
                row.try_get(17)?,
            );
            content.preview(&body, QUOTE_CHARS)
        }
    };
    Ok(QuotedMessage {
        seq,
        sender,
        snippet,
        recalled,
        unavailable: false,
    })
}
