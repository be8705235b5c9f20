\timing on
-- 200 conversations (100 direct, 100 groups of 50), 5,000 messages each = 1,000,000 messages;
-- ann wrote half of the direct ones and a tenth of the group ones; 10,000 posts by ann.
INSERT INTO conversations (conversation_id, kind, last_seq)
SELECT CASE WHEN i <= 100 THEN 'd:ann:u' || i ELSE 'g:grp' || i END,
       CASE WHEN i <= 100 THEN 'direct' ELSE 'group' END, 5000
FROM generate_series(1, 200) i;
INSERT INTO messages (conversation_id, seq, message_id, sender, body, created_at, search)
SELECT c.conversation_id, s, md5(c.conversation_id || '#' || s),
       CASE WHEN c.kind = 'direct' AND s % 2 = 0 THEN 'ann'
            WHEN c.kind = 'group' AND s % 10 = 0 THEN 'ann'
            ELSE 'other' || (s % 50) END,
       'a message body of some length ' || s, now() - make_interval(secs => 5000 - s),
       to_tsvector('simple', 'a message body of some length ' || s)
FROM conversations c, generate_series(1, 5000) s;
INSERT INTO conversation_members (user_id, conversation_id, last_activity, derived)
SELECT 'ann', conversation_id, now(), kind = 'group' FROM conversations;
INSERT INTO conversation_members (user_id, conversation_id, last_activity, derived)
SELECT 'other' || k, conversation_id, now(), kind = 'group'
FROM conversations, generate_series(0, 49) k WHERE kind = 'group';
INSERT INTO posts (post_id, author, body, created_at, search)
SELECT md5('p' || i), 'ann', 'post ' || i, now(), to_tsvector('simple', 'post ' || i)
FROM generate_series(1, 10000) i;
ANALYZE;
BEGIN;
-- erasure.rs erase_contents, the two statements, as applied:
UPDATE posts SET body = '', search = NULL, deleted_at = coalesce(deleted_at, now())
WHERE author = 'ann' AND (deleted_at IS NULL OR body <> '');
UPDATE messages m SET body = '', search = NULL, erased_at = now()
FROM conversation_members cm
WHERE cm.user_id = 'ann' AND m.conversation_id = cm.conversation_id AND m.sender = 'ann'
  AND m.erased_at IS NULL;
DELETE FROM conversation_members WHERE user_id = 'ann';
COMMIT;
