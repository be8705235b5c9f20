-- The per-user cap of sync timeline retention (FANLINE_SYNC_RETENTION_ENTRIES): how many of each user's
-- entries are in sealed partitions, counted once when a partition is sealed (one GROUP BY over it) and
-- taken off again when entries are trimmed or their partition is dropped. The open partition is not
-- counted, so a user may hold up to a partition's worth of entries over the cap until the next seal.
CREATE TABLE sync_counts (
    user_id        text   PRIMARY KEY,
    sealed_entries bigint NOT NULL CHECK (sealed_entries >= 0)
);
-- counted: its entries are in sync_counts. dropping: its floors were recorded and its counts taken off;
-- what is left is to detach and drop it (a run after a crash neither counts it nor takes it off again).
ALTER TABLE sync_partitions
    ADD COLUMN counted  boolean NOT NULL DEFAULT false,
    ADD COLUMN dropping boolean NOT NULL DEFAULT false;
