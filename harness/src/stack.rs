//! The whole pipeline in one test process — ingest, fanout and reader on a fresh database and topic —
//! for tests that act as a user would: over HTTP, WebSocket, or a browser.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::{
    brokers, fanout_config, group_lag, spawn_fanout, spawn_ingest, spawn_reader_with, unique,
    wait_until, Api, Running, TestDb, TestTopic,
};

pub struct Stack {
    pub db: TestDb,
    pub topic: TestTopic,
    pub group: String,
    pub ingest: Running,
    pub fanout: Running,
    pub reader: Running,
    pub reader_config: reader::Config,
    pub api: Api,
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::start_with(|_| {}).await
    }

    /// Starts the stack; `configure` adjusts the reader's configuration (heartbeats, limits, port).
    pub async fn start_with(configure: impl FnOnce(&mut reader::Config)) -> Stack {
        Stack::start_configured(configure, |_| {}).await
    }

    /// Starts the stack with adjusted reader and fanout configurations.
    pub async fn start_configured(
        configure: impl FnOnce(&mut reader::Config),
        configure_fanout: impl FnOnce(&mut fanout::Config),
    ) -> Stack {
        Stack::start_all(configure, |_| {}, configure_fanout).await
    }

    /// Starts the stack with adjusted reader, ingest and fanout configurations (ingest's after what
    /// it mirrors from the reader's).
    pub async fn start_all(
        configure: impl FnOnce(&mut reader::Config),
        configure_ingest: impl FnOnce(&mut ingest::Config),
        configure_fanout: impl FnOnce(&mut fanout::Config),
    ) -> Stack {
        let db = TestDb::create().await;
        let topic = TestTopic::create(4).await;
        let group = unique("fanout");
        let mut reader_config = reader::Config::for_database(&db.url);
        reader_config.brokers = brokers();
        reader_config.topic = topic.name.clone();
        configure(&mut reader_config);
        // A reader that requires accounts gets an ingest that does too (the production default).
        let mut ingest_config = ingest::Config::for_brokers(&brokers(), &topic.name);
        ingest_config.accounts_required = reader_config.accounts_required;
        ingest_config.database_url = reader_config.database_url.clone();
        ingest_config.writes = reader_config.writes.clone();
        ingest_config.moderation = reader_config.moderation.clone();
        configure_ingest(&mut ingest_config);
        let ingest = spawn_ingest(ingest_config).await;
        reader_config.public_ingest_url = ingest.url("");
        let reader = spawn_reader_with(reader_config.clone()).await;
        let mut fanout_settings = fanout_config(&topic, &group, &db.url);
        configure_fanout(&mut fanout_settings);
        let fanout = spawn_fanout(fanout_settings).await;
        let api = Api::new(ingest.url(""), reader.url(""));
        Stack {
            db,
            topic,
            group,
            ingest,
            fanout,
            reader,
            reader_config,
            api,
        }
    }

    /// Waits until fanout applied everything written so far.
    pub async fn applied(&self) {
        wait_until(
            "fanout to apply every event",
            Duration::from_secs(60),
            || async {
                let lags = group_lag(&self.topic.name, &self.group).await;
                (lags.len() == self.topic.partitions as usize && lags.iter().all(|l| l.lag == 0))
                    .then_some(())
            },
        )
        .await;
    }

    /// A write to ingest as `user`; expects `202`.
    pub async fn write(&self, user: &str, method: Method, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.api.ingest);
        let bytes = serde_json::to_vec(&body).expect("JSON");
        let (status, value) = self
            .api
            .as_user(user)
            .raw(method, &url, Some(&bytes), Some("application/json"))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}: {value}");
        value
    }

    /// A message from `from` to the user `to`; returns ingest's answer.
    pub async fn message(&self, from: &str, to: &str, body: &str) -> Value {
        let request = serde_json::json!({"from": from, "to": to, "body": body});
        self.write(from, Method::POST, "/v1/messages", request)
            .await
    }

    pub async fn stop(self) {
        self.fanout.stop().await;
        self.ingest.stop().await;
        self.reader.stop().await;
    }
}
