-- applied_positions (20261125000004) arrived after the IM tables (20261125000001), and empty: on a
-- database with IM rows from before it, the first replayed event of every key passed the watermark.
-- fanout used to cover that with per-row position guards; it now relies on the watermark alone, so
-- backfill it from the positions the rows recorded. Sound because a key's events are applied in order
-- on one partition: a row that names (partition, offset) proves that every event of its key up to
-- there was applied when it was new. Keys that already have a watermark keep it (it is newer), and a
-- key whose rows name more than one partition (the topic was recreated meanwhile) is left out: which
-- partition is the current one is not in the database. On a database created after 20261125000004
-- this inserts nothing that was not there (every key with a row position already has a watermark).
INSERT INTO applied_positions (event_key, src_partition, src_offset)
SELECT event_key, min(src_partition), max(src_offset)
FROM (
    -- A group's membership changes are keyed by its conversation, 'g:' || group_id
    -- (schemas::ConversationId::group); the owner's row from the group's creation names no event (-1).
    SELECT 'g:' || group_id AS event_key, src_partition, src_offset
    FROM group_members WHERE src_offset >= 0
    -- Read markers are keyed by the conversation (default -1: no marker yet).
    UNION ALL
    SELECT conversation_id, read_src_partition, read_src_offset
    FROM conversation_members WHERE read_src_offset >= 0
    -- Profiles and registrations are keyed by the user.
    UNION ALL
    SELECT user_id, src_partition, src_offset FROM users
    UNION ALL
    SELECT user_id, src_partition, src_offset FROM accounts
) AS recorded
GROUP BY event_key
HAVING count(DISTINCT src_partition) = 1
ON CONFLICT (event_key) DO NOTHING;
