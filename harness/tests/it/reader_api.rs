//! The read API: parameter validation, pagination and database outages.

use harness::{seed_followed_posts, spawn_reader, Api, TestDb};
use reqwest::{Method, StatusCode};
use serde_json::Value;

async fn seed(db: &TestDb, posts: usize) {
    seed_followed_posts(&db.pool, (0..posts).map(|i| format!("post {i}"))).await;
}

#[tokio::test]
async fn pages_neither_repeat_nor_skip_even_while_new_posts_arrive() {
    let db = TestDb::create().await;
    seed(&db, 45).await;
    let reader = spawn_reader(&db.url).await;
    let api = Api::new("", reader.url("")).as_user("bob");
    let first = api.feed_page("bob", 20, None).await;
    assert_eq!(first.entries.len(), 20);
    // New posts land at the top and must not shift the pages after the cursor.
    seed(&db, 5).await;
    let mut all = first.entries.clone();
    let mut cursor = first.next_cursor.clone();
    while let Some(next) = cursor {
        let page = api.feed_page("bob", 20, Some(&next)).await;
        all.extend(page.entries);
        cursor = page.next_cursor;
    }
    assert_eq!(all.len(), 45);
    assert!(all.windows(2).all(|w| w[0].post_id > w[1].post_id));
    assert_eq!(all[0].body, "post 44");
    assert_eq!(all[44].body, "post 0");
    // Default limit, and an exact last page has no cursor.
    assert_eq!(api.feed_page("bob", 50, None).await.next_cursor, None);
    let (_, value) = api
        .raw(Method::GET, &reader.url("/v1/users/bob/feed"), None, None)
        .await;
    assert_eq!(value["entries"].as_array().unwrap().len(), 20);
    // Unknown users have empty timelines, not errors.
    let empty = api.sync("nobody", 0, 10).await;
    assert!(empty.entries.is_empty());
    assert_eq!(empty.last_seq, 0);
    assert!(!empty.has_more);
    let page = api.sync("bob", 0, 10).await;
    assert!(page.has_more);
    assert_eq!(page.last_seq, page.entries[9].seq);
    reader.stop().await;
}

#[tokio::test]
async fn bad_parameters_get_a_json_error_naming_the_field() {
    let db = TestDb::create().await;
    let reader = spawn_reader(&db.url).await;
    let api = Api::new("", reader.url("")).as_user("bob");
    let cases = [
        ("/v1/users/bob/feed?limit=0", "limit"),
        ("/v1/users/bob/feed?limit=201", "limit"),
        ("/v1/users/bob/feed?limit=ten", "limit"),
        ("/v1/users/bob/feed?cursor=garbage", "cursor"),
        ("/v1/users/bob/feed?limit=1&limit=2", "limit"),
        ("/v1/users/bob/posts?cursor=cDE6eA", "cursor"),
        ("/v1/users/bad%20name/feed", "user"),
        ("/v1/users/bob/sync?after=-1", "after"),
        ("/v1/users/bob/sync?after=1.5", "after"),
        ("/v1/users/bob/sync?limit=100000", "limit"),
    ];
    for (path, field) in cases {
        let (status, value) = api.raw(Method::GET, &reader.url(path), None, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {value}");
        assert_eq!(value["field"], Value::from(field), "{path}: {value}");
        assert!(value["error"].is_string());
    }
    let (status, value) = api
        .raw(Method::POST, &reader.url("/v1/users/bob/feed"), None, None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(value["error"].is_string());
    reader.stop().await;
}

#[tokio::test]
async fn a_database_outage_gets_503_not_an_empty_page() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let reader = spawn_reader(&format!("postgres://root@127.0.0.1:{port}/fanline")).await;
    let api = Api::new("", reader.url("")).as_user("bob");
    for path in [
        "/v1/users/bob/feed",
        "/v1/users/bob/sync?after=3",
        "/v1/users/bob/posts",
        "/v1/users/bob/conversations",
        "/v1/conversations/d:alice:bob/messages",
        "/readyz",
    ] {
        let (status, value) = api.raw(Method::GET, &reader.url(path), None, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {value}");
        assert!(value["error"].is_string());
    }
    reader.stop().await;
}

/// Page reads share a few long-lived connections; one that Postgres closed (a restart, an
/// administrator's `pg_terminate_backend`) is opened again by the next read, and a read caught on it
/// gets 503 (retry), never 500 or a wrong page.
#[tokio::test]
async fn page_reads_reconnect_after_postgres_closed_their_connections() {
    let db = TestDb::create().await;
    seed(&db, 3).await;
    let reader = spawn_reader(&db.url).await;
    let api = Api::new("", reader.url("")).as_user("bob");
    let path = reader.url("/v1/users/bob/feed");
    let (status, _) = api.raw(Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::OK);
    let terminated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                               WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(terminated >= 1, "the reader's connections were open");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, value) = api.raw(Method::GET, &path, None, None).await;
        statuses.push(status);
        if status == StatusCode::OK {
            assert_eq!(value["entries"].as_array().unwrap().len(), 3);
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{value}");
    }
    assert_eq!(statuses.last(), Some(&StatusCode::OK), "{statuses:?}");
    reader.stop().await;
}

/// A page connection whose peer went silent without a reset (a dead host, a partition) is given up after
/// twice the query timeout: that read gets 503, and the next read opens another connection instead of
/// waiting on the silent one until the kernel gives up on it.
#[tokio::test]
async fn a_page_connection_gone_silent_is_replaced() {
    let db = TestDb::create().await;
    seed(&db, 3).await;
    let proxy =
        harness::proxy::TcpProxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], 5432))).await;
    let url = db.url.replacen(":5432/", &format!(":{}/", proxy.port()), 1);
    assert_ne!(url, db.url, "the test database URL names port 5432");
    let mut config = reader::Config::for_database(&url);
    config.query_timeout_ms = 300;
    let reader = harness::spawn_reader_with(config).await;
    let api = Api::new("", reader.url("")).as_user("bob");
    let path = reader.url("/v1/users/bob/feed");
    let (status, _) = api.raw(Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::OK);
    proxy.stall_open_connections();
    let (status, value) = api.raw(Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{value}");
    let (status, value) = api.raw(Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value["entries"].as_array().unwrap().len(), 3);
    reader.stop().await;
}
