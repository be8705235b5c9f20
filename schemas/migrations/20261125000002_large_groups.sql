-- Large groups: read diffusion. A group above the group pull threshold is in 'pull' mode: a message is
-- written once (messages) plus the sender's own sync entry — O(1) rows — and members' state is derived
-- at read time from the conversation's counters (see the conversation_state view). Members' rows carry
-- `pull` so that a user's pull conversations are found without scanning their whole contact list.
ALTER TABLE conversations
    ADD COLUMN mode text NOT NULL DEFAULT 'push' CHECK (mode IN ('push', 'pull')),
    -- A sync_seq value drawn for the latest change of a pull-mode conversation: a device whose cursor
    -- is below it is told the conversation advanced (one sync poll covers every big group).
    ADD COLUMN last_position bigint;

ALTER TABLE conversation_members ADD COLUMN pull boolean NOT NULL DEFAULT false;
CREATE INDEX conversation_members_pull ON conversation_members (user_id, conversation_id) WHERE pull;

-- Recalled messages are few: counting them in a range stays cheap for any history length.
CREATE INDEX messages_recalled ON messages (conversation_id, seq) WHERE recalled_at IS NOT NULL;

-- What a member's contact-list row says, whatever the conversation's mode: stored counters for push
-- conversations (kept exact by fanout per message), derived ones for an active member of a pull
-- conversation — every message after max(read_seq, from_seq) was "delivered" by read diffusion, none of
-- them is the member's own (sending moves read_seq to the message), so unread is that range minus the
-- recalled messages in it.
CREATE VIEW conversation_state AS
SELECT cm.user_id,
       cm.conversation_id,
       cm.from_seq,
       cm.read_seq,
       cm.active,
       cm.pull,
       CASE WHEN cm.pull AND cm.active THEN c.last_seq ELSE cm.delivered_seq END AS delivered_seq,
       CASE WHEN cm.pull AND cm.active THEN
           greatest(0, c.last_seq - greatest(cm.read_seq, cm.from_seq))
           - (SELECT count(*) FROM messages m
              WHERE m.conversation_id = cm.conversation_id AND m.recalled_at IS NOT NULL
                AND m.seq > greatest(cm.read_seq, cm.from_seq) AND m.seq <= c.last_seq)
       ELSE cm.unread END AS unread,
       CASE WHEN cm.pull AND cm.active THEN greatest(cm.last_activity, coalesce(c.last_at, cm.last_activity))
       ELSE cm.last_activity END AS activity
FROM conversation_members cm
JOIN conversations c ON c.conversation_id = cm.conversation_id;
