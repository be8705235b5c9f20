//! A client for Fanline's public HTTP API, as the tests and the bench use it.

use std::sync::Arc;

use authkit::TokenKey;
use reqwest::{Method, StatusCode};
use schemas::api::{Accepted, CreatePostRequest, FeedEntry, FeedPage, SyncEntry, SyncPage};
use serde_json::Value;

/// Tests and benchmarks get their tokens from the harness: it signs them with the key the services
/// under test were started with (no registration, no login round trip per user).
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    pub ingest: String,
    pub reader: String,
    key: Arc<TokenKey>,
    acting: Option<String>,
}

impl Api {
    /// `ingest` and `reader` are base URLs such as `http://127.0.0.1:8080`, of services started with
    /// [`crate::TEST_TOKEN_KEY`].
    pub fn new(ingest: impl Into<String>, reader: impl Into<String>) -> Api {
        Api::with_token_key(ingest, reader, crate::TEST_TOKEN_KEY)
    }

    /// For services started with another signing key.
    pub fn with_token_key(
        ingest: impl Into<String>,
        reader: impl Into<String>,
        token_key: &str,
    ) -> Api {
        Api {
            client: reqwest::Client::new(),
            ingest: ingest.into(),
            reader: reader.into(),
            key: Arc::new(TokenKey::from_secret(token_key.as_bytes()).expect("a valid test key")),
            acting: None,
        }
    }

    /// The same client, sending `user`'s token with [`Api::raw`] requests.
    pub fn as_user(&self, user: &str) -> Api {
        Api {
            acting: Some(user.to_owned()),
            ..self.clone()
        }
    }

    /// The same client, sending no token with [`Api::raw`] requests.
    pub fn anonymous(&self) -> Api {
        Api {
            acting: None,
            ..self.clone()
        }
    }

    /// An access token for `user`, valid for an hour.
    pub fn token_for(&self, user: &str) -> String {
        self.key
            .issue(user, "harness", std::time::Duration::from_secs(3600))
    }

    /// Any request, with the acting user's token if there is one ([`Api::as_user`]); returns the
    /// status and the body parsed as JSON (`Value::Null` if it is not JSON).
    pub async fn raw(
        &self,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
        content_type: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, url);
        if let Some(user) = &self.acting {
            request = request.bearer_auth(self.token_for(user));
        }
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
            content: Default::default(),
            message_id: message_id.map(str::to_owned),
        };
        let body = serde_json::to_vec(&request).unwrap();
        self.as_user(author)
            .raw(
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
        let (status, value) = self.as_user(user).raw(method, &url, None, None).await;
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
        let (status, value) = self
            .as_user(author)
            .raw(Method::DELETE, &url, None, None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "delete failed: {value}");
        serde_json::from_value(value).unwrap()
    }

    pub async fn follow(&self, user: &str, target: &str) -> Accepted {
        self.follow_request(Method::PUT, user, target).await
    }

    pub async fn unfollow(&self, user: &str, target: &str) -> Accepted {
        self.follow_request(Method::DELETE, user, target).await
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, user: &str, url: String) -> T {
        let (status, value) = self.as_user(user).raw(Method::GET, &url, None, None).await;
        assert_eq!(status, StatusCode::OK, "GET {url} failed: {value}");
        serde_json::from_value(value).unwrap()
    }

    pub async fn feed_page(&self, user: &str, limit: usize, cursor: Option<&str>) -> FeedPage {
        let cursor = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
        self.get(
            user,
            format!("{}/v1/users/{user}/feed?limit={limit}{cursor}", self.reader),
        )
        .await
    }

    pub async fn posts_page(&self, user: &str, limit: usize, cursor: Option<&str>) -> FeedPage {
        let cursor = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
        self.get(
            user,
            format!(
                "{}/v1/users/{user}/posts?limit={limit}{cursor}",
                self.reader
            ),
        )
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
        self.get(
            user,
            format!(
                "{}/v1/users/{user}/sync?after={after}&limit={limit}",
                self.reader
            ),
        )
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
