-- Accounts (written by fanout from `account_registered`: the first registration of an id wins),
-- login sessions (the reader's own state: refresh tokens, logout) and each device's acknowledged
-- sync position (the reader's own state: what a WebSocket resumes from).

CREATE TABLE accounts (
    user_id        text PRIMARY KEY,
    password_hash  text NOT NULL,
    registered_at  timestamptz NOT NULL,
    src_partition  integer NOT NULL,
    src_offset     bigint NOT NULL
);

-- One row per login. Only a SHA-256 of the refresh token is kept: a leaked table lets nobody in.
CREATE TABLE sessions (
    session_id    text PRIMARY KEY,
    user_id       text NOT NULL,
    refresh_hash  bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    refreshed_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Highest sync seq each device acknowledged; it only moves forward.
CREATE TABLE device_cursors (
    user_id     text NOT NULL,
    device_id   text NOT NULL,
    acked_seq   bigint NOT NULL CHECK (acked_seq >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_id)
);
