-- Exactly one effect per IM event, whatever its outcome: the Kafka position of the last IM event applied
-- per event key (a conversation, or a user for profiles; all of a key's events share a partition). A
-- replayed event at or below it is skipped — also one that was refused when it was new and would be
-- accepted now (a read marker sent before the first message, a join sent before the group existed, a
-- removal by a member promoted later).
CREATE TABLE applied_positions (
    event_key     text    PRIMARY KEY,
    src_partition integer NOT NULL,
    src_offset    bigint  NOT NULL
);

-- Recalls in read-diffused (pull-mode) groups: members did not get the message in their inbox, so they
-- get no recall entry either; the sync scan reports the recalled seqs of a conversation whose recall
-- position lies in the scanned range.
ALTER TABLE messages ADD COLUMN recall_position bigint;
CREATE INDEX messages_recall_position ON messages (conversation_id, recall_position)
    WHERE recall_position IS NOT NULL;
