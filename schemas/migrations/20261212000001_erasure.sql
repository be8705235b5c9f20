-- Account deletion (issue 23; docs/design.md "Account deletion").
--
-- One row per deleted account, written by fanout from `account_deleted` (keyed by the user). It keeps
-- the id taken for good (the directory refuses its registration), and it is what the other keys'
-- events ask when they are applied after the deletion (a replay may apply them in any order across
-- partitions): a message of an erased sender is stored without its body, a direct conversation or
-- group opens no row for an erased user.
CREATE TABLE erased_users (
    user_id     text        PRIMARY KEY,
    erased_at   timestamptz NOT NULL,
    erased_by   text        NOT NULL,
    -- Set by the departures sweeper once no membership, follow or block of the user is left to end.
    departed_at timestamptz
);
CREATE INDEX erased_users_departing ON erased_users (erased_at) WHERE departed_at IS NULL;

-- Whether `account` was deleted: whatever its events' times, since the id never changes hands.
CREATE FUNCTION fanline_erased(account text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT EXISTS (SELECT 1 FROM erased_users e WHERE e.user_id = account)
$$;

-- A message whose sender deleted their account: the body is gone, the seq stays.
ALTER TABLE messages ADD COLUMN erased_at timestamptz;

-- The departures sweeper's question: the groups a user is an active member of.
CREATE INDEX group_members_by_user ON group_members (user_id) WHERE active;
