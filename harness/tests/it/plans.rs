//! Reads stay index-driven without planner statistics, as after a crash restart (which resets the
//! counters autovacuum uses to decide when to analyze) or a bulk load autovacuum has not analyzed yet.
//! The feed query used to scan every post then (measured 475 ms for a page at 400k posts).

use harness::TestDb;
use serde_json::Value;

/// 150,000 posts by 150 authors; 20 users follow 10 authors each and hold their posts in their inboxes.
/// Two of the authors u0 follows (a7, a8) are in pull mode: their newer posts are pulled, not pushed, so
/// the feed's pull branch has work too. Autovacuum is off for these tables, so nothing gathers
/// statistics behind the test's back.
const SEED: &str = "
ALTER TABLE posts SET (autovacuum_enabled = false);
DO $$
DECLARE
    part regclass;
BEGIN
    -- A partitioned table takes no storage parameters: its partitions do.
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'sync_entries'::regclass
    LOOP
        EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = false)', part);
    END LOOP;
END
$$;
ALTER TABLE follows SET (autovacuum_enabled = false);
ALTER TABLE authors SET (autovacuum_enabled = false);
INSERT INTO posts (post_id, author, body, created_at, delivery_mode)
SELECT '01' || lpad(i::text, 24, '0'), 'a' || (i % 150), 'body ' || i, now(), 'push'
FROM generate_series(1, 150000) i;
INSERT INTO follows (followee, follower, active, src_partition, src_offset)
SELECT 'a' || ((u * 7 + k) % 150), 'u' || u, true, 0, 0
FROM generate_series(0, 19) u, generate_series(0, 9) k;
UPDATE posts SET delivery_mode = 'pull' WHERE author IN ('a7', 'a8') AND post_id > '01' || lpad('140000', 24, '0');
INSERT INTO authors (author, follower_count, mode, has_pull_posts)
SELECT 'a' || i, 0, CASE WHEN i IN (7, 8) THEN 'pull' ELSE 'push' END, i IN (7, 8)
FROM generate_series(0, 149) i;
INSERT INTO sync_entries (user_id, seq, post_id, author)
SELECT f.follower, row_number() OVER (), p.post_id, p.author
FROM follows f JOIN posts p ON p.author = f.followee AND p.delivery_mode = 'push';
";

/// Every (node type, relation) of a JSON plan, and the rows it produced in all its loops.
fn scans(plan: &Value, out: &mut Vec<(String, String, f64)>) {
    let node = plan["Node Type"].as_str().unwrap_or_default().to_owned();
    if let Some(relation) = plan["Relation Name"].as_str() {
        let rows = plan["Actual Rows"].as_f64().unwrap_or(0.0)
            * plan["Actual Loops"].as_f64().unwrap_or(1.0);
        out.push((node, relation.to_owned(), rows));
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        scans(child, out);
    }
}

#[tokio::test]
async fn reads_stay_index_driven_without_statistics() {
    let db = TestDb::create().await;
    sqlx::raw_sql(SEED).execute(&db.pool).await.unwrap();
    let (statistics,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_stats
         WHERE tablename IN ('posts', 'follows', 'authors') OR tablename LIKE 'sync_entries%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(statistics, 0, "the test needs tables without statistics");

    let mut connection = db.pool.acquire().await.unwrap();
    let statements = [
        (
            "feed",
            reader::queries::FEED_SQL,
            "(text, text, bigint)",
            "('u0', NULL, 21)",
        ),
        (
            "sync",
            reader::queries::SYNC_SQL,
            "(text, bigint, bigint)",
            "('u0', 0, 21)",
        ),
    ];
    for (name, sql, types, arguments) in statements {
        sqlx::raw_sql(&format!("PREPARE {name} {types} AS {sql}"))
            .execute(&mut *connection)
            .await
            .unwrap();
        // sqlx prepares statements; after five runs Postgres may switch to the generic plan.
        for mode in ["force_custom_plan", "force_generic_plan"] {
            sqlx::raw_sql(&format!("SET plan_cache_mode = {mode}"))
                .execute(&mut *connection)
                .await
                .unwrap();
            let (plan,): (Value,) = sqlx::query_as(&format!(
                "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}{arguments}"
            ))
            .fetch_one(&mut *connection)
            .await
            .unwrap();
            let mut found = Vec::new();
            scans(&plan[0]["Plan"], &mut found);
            assert!(
                !found.iter().any(|(node, ..)| node == "Seq Scan"),
                "{name} ({mode}) scans a whole table: {found:?}"
            );
            let inbox = found
                .iter()
                .find(|(_, relation, _)| relation.starts_with("sync_entries"))
                .unwrap_or_else(|| panic!("{name} ({mode}) reads no inbox: {found:?}"));
            assert!(inbox.0.starts_with("Index"), "{name} ({mode}): {found:?}");
            // A page reads about `limit` rows per source, not the history.
            let posts_read: f64 = found
                .iter()
                .filter(|(_, relation, _)| relation == "posts")
                .map(|(.., rows)| rows)
                .sum();
            assert!(
                posts_read <= 100.0,
                "{name} ({mode}) read {posts_read} posts for a page of 21: {found:?}"
            );
        }
    }
    // The connection goes back to the pool: leave no forced plan mode or statements behind.
    sqlx::raw_sql("RESET plan_cache_mode; DEALLOCATE ALL")
        .execute(&mut *connection)
        .await
        .unwrap();
    drop(connection);
    // And the pages themselves are right.
    let page = reader::queries::feed(&db.reads, "u0", None, 20)
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 20);
    assert!(page.entries.windows(2).all(|w| w[0].post_id > w[1].post_id));
    assert!(
        page.entries
            .iter()
            .any(|e| e.author == "a7" || e.author == "a8"),
        "the pull branch contributes to the page"
    );
    let scan = reader::queries::sync(&db.pool, "u0", 0, 20).await.unwrap();
    assert_eq!(scan.entries.len(), 20);
}

/// 100 users with 1,000 direct conversations each (one message each) and u0 in 5 groups, without
/// statistics: the contact list starts from the user's index range and reads about a page, not the table.
const IM_SEED: &str = "
ALTER TABLE conversation_members SET (autovacuum_enabled = false);
ALTER TABLE conversations SET (autovacuum_enabled = false);
ALTER TABLE messages SET (autovacuum_enabled = false);
ALTER TABLE groups SET (autovacuum_enabled = false);
INSERT INTO conversations (conversation_id, kind, last_seq, last_at)
SELECT 'd:u' || u || ':v' || lpad(i::text, 5, '0'), 'direct', 1, now() - i * interval '1 second'
FROM generate_series(0, 99) u, generate_series(1, 1000) i;
INSERT INTO messages (conversation_id, seq, message_id, sender, body, created_at)
SELECT conversation_id, 1, 'M' || conversation_id, split_part(conversation_id, ':', 3), 'hi', last_at
FROM conversations;
INSERT INTO conversation_members (user_id, conversation_id, delivered_seq, read_seq, unread, last_activity)
SELECT split_part(conversation_id, ':', 2), conversation_id, 1, 0, 1, last_at FROM conversations;
INSERT INTO groups (group_id, name, owner, created_at, member_count)
SELECT 'g' || i, 'group ' || i, 'u0', now(), 1 FROM generate_series(1, 5) i;
INSERT INTO conversations (conversation_id, kind, last_seq, last_at)
SELECT 'g:g' || i, 'group', 0, now() FROM generate_series(1, 5) i;
INSERT INTO conversation_members (user_id, conversation_id, last_activity, derived)
SELECT 'u0', 'g:g' || i, now(), true FROM generate_series(1, 5) i;
";

#[tokio::test]
async fn the_contact_list_stays_index_driven_without_statistics() {
    let db = TestDb::create().await;
    sqlx::raw_sql(IM_SEED).execute(&db.pool).await.unwrap();
    let mut connection = db.pool.acquire().await.unwrap();
    sqlx::raw_sql(&format!(
        "PREPARE contacts (text, timestamptz, text, bigint, integer) AS {}",
        reader::im::CONVERSATIONS_SQL
    ))
    .execute(&mut *connection)
    .await
    .unwrap();
    for mode in ["force_custom_plan", "force_generic_plan"] {
        sqlx::raw_sql(&format!("SET plan_cache_mode = {mode}"))
            .execute(&mut *connection)
            .await
            .unwrap();
        let (plan,): (Value,) = sqlx::query_as(
            "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE contacts('u0', NULL, NULL, 21, 100)",
        )
        .fetch_one(&mut *connection)
        .await
        .unwrap();
        let mut found = Vec::new();
        scans(&plan[0]["Plan"], &mut found);
        assert!(
            !found.iter().any(|(node, ..)| node == "Seq Scan"),
            "contact list ({mode}) scans a whole table: {found:?}"
        );
        let members_read: f64 = found
            .iter()
            .filter(|(_, relation, _)| relation == "conversation_members")
            .map(|(.., rows)| rows)
            .sum();
        // A page of 21 from the direct source, the 5 groups, one lookup per row of the page, and the
        // total unread count: the user's own 1,000 + 5 rows, once (one index range, not a scan).
        assert!(
            members_read <= 200.0 + 1005.0,
            "contact list ({mode}) read {members_read} member rows for a page of 21: {found:?}"
        );
    }
    sqlx::raw_sql("RESET plan_cache_mode; DEALLOCATE ALL")
        .execute(&mut *connection)
        .await
        .unwrap();
}
