-- Group conversations keep no per-message counters for their members, in either delivery mode: a push
-- group message writes one inbox entry per member (as a post does per follower) and touches only the
-- sender's row; every member's delivered seq, unread count and activity are derived from the group's
-- counters (conversation_state). This keeps group fan-out at the cost of feed fan-out — updating every
-- member's counter too halved it (fanline-im-bench: 0.50×). Direct conversations (two members) keep
-- their stored counters. `pull` on member rows becomes `derived`: true for every group row.
DROP VIEW conversation_state;
ALTER TABLE conversation_members RENAME COLUMN pull TO derived;
ALTER INDEX conversation_members_pull RENAME TO conversation_members_derived;
UPDATE conversation_members cm SET derived = true
FROM conversations c
WHERE c.conversation_id = cm.conversation_id AND c.kind = 'group' AND NOT cm.derived;

CREATE VIEW conversation_state AS
SELECT cm.user_id,
       cm.conversation_id,
       cm.from_seq,
       cm.read_seq,
       cm.active,
       cm.derived,
       CASE WHEN cm.derived AND cm.active THEN c.last_seq ELSE cm.delivered_seq END AS delivered_seq,
       CASE WHEN cm.derived AND cm.active THEN
           greatest(0, c.last_seq - greatest(cm.read_seq, cm.from_seq))
           - (SELECT count(*) FROM messages m
              WHERE m.conversation_id = cm.conversation_id AND m.recalled_at IS NOT NULL
                AND m.seq > greatest(cm.read_seq, cm.from_seq) AND m.seq <= c.last_seq)
       ELSE cm.unread END AS unread,
       CASE WHEN cm.derived AND cm.active
           THEN greatest(cm.last_activity, coalesce(c.last_at, cm.last_activity))
       ELSE cm.last_activity END AS activity
FROM conversation_members cm
JOIN conversations c ON c.conversation_id = cm.conversation_id;

-- A message's inbox entries are written only by the transaction that inserted the message (and a
-- recall's by the one that tombstoned it), as a post's are: this unique index guarded nothing the
-- transaction does not, and cost every recipient a third index write.
DROP INDEX sync_entries_message;
