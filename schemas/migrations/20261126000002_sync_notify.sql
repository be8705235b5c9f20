-- Realtime wake-ups come from the commit: every statement that adds sync entries notifies channel
-- `fanline_sync` with the users whose inbox grew, and every statement that advances a large (pull-mode)
-- group notifies its conversation id (`g:GROUP`). NOTIFY is delivered when the transaction commits and
-- never if it rolls back, so a woken reader always finds the entries. Triggers rather than calls in
-- fanout's code: every writer (fanout, replay, rebuild) wakes readers the same way.
-- Payloads are comma-separated and chunked to 100 ids (user ids are at most 64 bytes: < 8,000 bytes,
-- NOTIFY's payload limit). Identical notifications in one transaction are folded by Postgres.

CREATE FUNCTION fanline_notify_inboxes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    chunk text;
BEGIN
    FOR chunk IN
        SELECT string_agg(user_id, ',')
        FROM (SELECT user_id, (row_number() OVER (ORDER BY user_id) - 1) / 100 AS part
              FROM (SELECT DISTINCT user_id FROM inserted) AS users) AS numbered
        GROUP BY part
    LOOP
        PERFORM pg_notify('fanline_sync', chunk);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER sync_entries_wake_readers
    AFTER INSERT ON sync_entries
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION fanline_notify_inboxes();

CREATE FUNCTION fanline_notify_large_groups() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    chunk text;
BEGIN
    FOR chunk IN
        SELECT string_agg(conversation_id, ',')
        FROM (SELECT now_.conversation_id,
                     (row_number() OVER (ORDER BY now_.conversation_id) - 1) / 100 AS part
              FROM changed AS now_ JOIN previous USING (conversation_id)
              WHERE now_.mode = 'pull'
                AND now_.last_position IS DISTINCT FROM previous.last_position) AS numbered
        GROUP BY part
    LOOP
        PERFORM pg_notify('fanline_sync', chunk);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER conversations_wake_readers
    AFTER UPDATE ON conversations
    REFERENCING NEW TABLE AS changed OLD TABLE AS previous
    FOR EACH STATEMENT EXECUTE FUNCTION fanline_notify_large_groups();
