-- Writes other than messages that fanout refused — group creations, membership changes, edits, reactions — so the one
-- who tried hears why, where they tried (issue 25): a `refused` entry in their sync timeline whose
-- message_id column holds the refused event's id, looked up here. (Messages keep their own
-- `refused_messages`: their refusal also answers a client_msg_id.)
CREATE TABLE refused_writes (
    event_id        text        PRIMARY KEY,
    user_id         text        NOT NULL,
    conversation_id text        NOT NULL,
    -- group_create, member_add, member_remove, edit, reaction_add, reaction_remove
    action          text        NOT NULL,
    -- Whom or what it was about: the member, the message id, the message's seq.
    subject         text        NOT NULL,
    reason          text        NOT NULL,
    refused_at      timestamptz NOT NULL DEFAULT now()
);
