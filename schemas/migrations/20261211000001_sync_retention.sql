-- Sync timeline retention (issue 23, docs/design.md "Retention"): `sync_entries` becomes a table
-- partitioned by seq range, so removing a day of old entries is dropping a partition (35 ms and 176 KB
-- of WAL per million rows here, against 1.3 s and 340 MB for batched deletes: docs/retention-research.md).
-- Seqs come from one global sequence, so a seq range is a span of time. fanout's retention task
-- (fanout/src/retention.rs) keeps a partition ready ahead, seals the open one after a day (or when
-- full) and drops sealed ones older than the retention age, recording first, per user, the highest seq
-- it removes (`sync_floors`): a device whose cursor is below its user's floor is told to reset, never
-- left with a silent gap.

-- The existing table becomes the first partition, holding every seq drawn so far.
ALTER TABLE sync_entries RENAME TO sync_entries_legacy;
ALTER TABLE sync_entries_legacy RENAME CONSTRAINT sync_entries_pkey TO sync_entries_legacy_pkey;
ALTER TABLE sync_entries_legacy
    RENAME CONSTRAINT sync_entries_user_id_post_id_key TO sync_entries_legacy_user_id_post_id_key;
-- A partition cannot carry a trigger with transition tables: the parent gets it below.
DROP TRIGGER sync_entries_wake_readers ON sync_entries_legacy;

CREATE TABLE sync_entries (
    user_id         text   NOT NULL,
    seq             bigint NOT NULL,
    post_id         text,
    author          text   NOT NULL,
    kind            text   NOT NULL DEFAULT 'post'
        CONSTRAINT sync_entries_kind_check
        CHECK (kind IN ('post', 'message', 'recall', 'refused', 'invitation')),
    conversation_id text,
    conv_seq        bigint,
    message_id      text,
    PRIMARY KEY (user_id, seq)
) PARTITION BY RANGE (seq);
-- A unique (user_id, post_id) would have to include seq on a partitioned table, so it is an index:
-- the feed's range scan. Fan-outs that may meet a post already in an inbox check under the seq lock
-- (fanout/src/store.rs `backfill`, fanout/src/activity.rs `copy_posts`).
CREATE INDEX sync_entries_by_post ON sync_entries (user_id, post_id);

-- Which partitions exist, the seq range each takes and when it was opened and sealed: a sealed
-- partition's entries are all older than `sealed_at`, so it expires `age` after it.
CREATE TABLE sync_partitions (
    name      text        PRIMARY KEY,
    lo        bigint,            -- NULL: from the lowest bigint (the first partition)
    hi        bigint      NOT NULL,
    opened_at timestamptz NOT NULL,
    sealed_at timestamptz
);

-- Per user, the highest seq retention removed from their sync timeline; a read from below it gets a
-- reset. `feed_below`: the home feed reads posts below this id from the followed authors' store
-- timelines, as after a return from dormancy (the inbox no longer holds them).
CREATE TABLE sync_floors (
    user_id    text   PRIMARY KEY,
    floor_seq  bigint NOT NULL,
    feed_below text
);

DO $$
DECLARE
    next_seq bigint;
BEGIN
    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END INTO next_seq FROM sync_seq;
    -- Checked against every row once (a large table: one scan, under the migration's lock).
    EXECUTE format('ALTER TABLE sync_entries ATTACH PARTITION sync_entries_legacy
                    FOR VALUES FROM (MINVALUE) TO (%s)', next_seq);
    INSERT INTO sync_partitions (name, lo, hi, opened_at, sealed_at)
    VALUES ('sync_entries_legacy', NULL, next_seq, now(), now());
    -- The open partition; the retention task creates the next ones (a day or 100 million seqs each).
    EXECUTE format('CREATE TABLE %I PARTITION OF sync_entries FOR VALUES FROM (%s) TO (%s)',
                   'sync_entries_' || lpad(next_seq::text, 19, '0'), next_seq, next_seq + 100000000);
    INSERT INTO sync_partitions (name, lo, hi, opened_at)
    VALUES ('sync_entries_' || lpad(next_seq::text, 19, '0'), next_seq, next_seq + 100000000, now());
END
$$;

-- The legacy partition keeps its own unique (user_id, post_id) index; the new index is built on it too.
CREATE TRIGGER sync_entries_wake_readers
    AFTER INSERT ON sync_entries
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION fanline_notify_inboxes();
