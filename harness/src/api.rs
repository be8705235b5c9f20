//! A client for Fanline's public HTTP API, as the tests and the bench use it.

use reqwest::{Method, StatusCode};
use schemas::api::{Accepted, CreatePostRequest, FeedEntry, FeedPage, SyncEntry, SyncPage};
use serde_json::Value;

#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    pub ingest: String,
    pub reader: String,
}

impl Api {
    /// `ingest` and `reader` are base URLs such as `http://127.0.0.1:8080`.
    pub fn new(ingest: impl Into<String>, reader: impl Into<String>) -> Api {
        Api {
            client: reqwest::Client::new(),
            ingest: ingest.into(),
            reader: reader.into(),
        }
    }

    /// Any request; returns the status and the body parsed as JSON (`Value::Null` if it is not JSON).
    pub async fn raw(
        &self,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
        content_type: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, url);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(body) = body {
            request = request.body(body.to_vec());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn try_post(
        &self,
        author: &str,
        body: &str,
        message_id: Option<&str>,
    ) -> (StatusCode, Value) {
        let request = CreatePostRequest {
            author: author.to_owned(),
            body: body.to_owned(),
            message_id: message_id.map(str::to_owned),
        };
        let body = serde_json::to_vec(&request).unwrap();
        self.raw(
            Method::POST,
            &format!("{}/v1/posts", self.ingest),
            Some(&body),
            Some("application/json"),
        )
        .await
    }

    /// Posts and expects `202`.
    pub async fn post(&self, author: &str, body: &str, message_id: Option<&str>) -> Accepted {
        let (status, value) = self.try_post(author, body, message_id).await;
        assert_eq!(status, StatusCode::ACCEPTED, "post failed: {value}");
        serde_json::from_value(value).unwrap()
    }

    async fn follow_request(&self, method: Method, user: &str, target: &str) -> Accepted {
        let url = format!("{}/v1/users/{user}/following/{target}", self.ingest);
        let (status, value) = self.raw(method, &url, None, None).await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "follow change failed: {value}"
        );
        serde_json::from_value(value).unwrap()
    }

    /// Deletes a post and expects `202`.
    pub async fn delete_post(&self, author: &str, post_id: &str) -> Accepted {
        let url = format!("{}/v1/posts/{post_id}?author={author}", self.ingest);
        let (status, value) = self.raw(Method::DELETE, &url, None, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "delete failed: {value}");
        serde_json::from_value(value).unwrap()
    }

    pub async fn follow(&self, user: &str, target: &str) -> Accepted {
        self.follow_request(Method::PUT, user, target).await
    }

    pub async fn unfollow(&self, user: &str, target: &str) -> Accepted {
        self.follow_request(Method::DELETE, user, target).await
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, url: String) -> T {
        let (status, value) = self.raw(Method::GET, &url, None, None).await;
        assert_eq!(status, StatusCode::OK, "GET {url} failed: {value}");
        serde_json::from_value(value).unwrap()
    }

    pub async fn feed_page(&self, user: &str, limit: usize, cursor: Option<&str>) -> FeedPage {
        let cursor = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
        self.get(format!(
            "{}/v1/users/{user}/feed?limit={limit}{cursor}",
            self.reader
        ))
        .await
    }

    pub async fn posts_page(&self, user: &str, limit: usize, cursor: Option<&str>) -> FeedPage {
        let cursor = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
        self.get(format!(
            "{}/v1/users/{user}/posts?limit={limit}{cursor}",
            self.reader
        ))
        .await
    }

    /// Walks a whole feed page by page.
    pub async fn feed_all(&self, user: &str, page_size: usize) -> Vec<FeedEntry> {
        let mut entries = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.feed_page(user, page_size, cursor.as_deref()).await;
            assert!(page.entries.len() <= page_size);
            entries.extend(page.entries);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return entries,
            }
        }
    }

    pub async fn sync(&self, user: &str, after: i64, limit: usize) -> SyncPage {
        self.get(format!(
            "{}/v1/users/{user}/sync?after={after}&limit={limit}",
            self.reader
        ))
        .await
    }

    /// Scans a whole sync timeline from the start, as a new device would.
    pub async fn sync_all(&self, user: &str) -> Vec<SyncEntry> {
        let mut entries = Vec::new();
        let mut after = 0;
        loop {
            let page = self.sync(user, after, 200).await;
            after = page.last_seq;
            entries.extend(page.entries);
            if !page.has_more {
                return entries;
            }
        }
    }
}
