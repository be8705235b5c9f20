//! Operations: a real Prometheus (Debian's `prometheus`) scrapes the services with the rules from
//! compose/, and sees consumer lag rise while fanout is stopped and fall back to zero after it restarts.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::{
    brokers, fanout_config, free_port, spawn_fanout, spawn_ingest, spawn_lag_exporter, unique,
    wait_until, Api, TestDb, TestTopic,
};

struct Prometheus {
    child: Child,
    port: u16,
    _dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn start_prometheus(targets: &[(&str, u16)]) -> Prometheus {
    let binary =
        std::env::var("FANLINE_TEST_PROMETHEUS").unwrap_or_else(|_| "prometheus".to_owned());
    let dir = std::env::temp_dir().join(unique("fanline-prometheus"));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../compose/alerts.yml");
    let mut config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\nscrape_configs:\n"
    );
    for (job, port) in targets {
        config.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
        ));
    }
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let child = Command::new(&binary)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {binary} (apt-get install prometheus): {e}"));
    Prometheus {
        child,
        port,
        _dir: dir,
    }
}

impl Prometheus {
    /// The value of an instant query that returns one series, if it returns one.
    async fn query(&self, promql: &str) -> Option<f64> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let response = reqwest::Client::new()
            .get(url)
            .query(&[("query", promql)])
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = response.json().await.ok()?;
        let value = body["data"]["result"].as_array()?.first()?["value"][1]
            .as_str()?
            .to_owned();
        value.parse().ok()
    }
}

#[tokio::test]
async fn prometheus_sees_lag_rise_while_fanout_is_stopped_and_fall_after_restart() {
    let db = TestDb::create().await;
    let topic = TestTopic::create(2).await;
    let group = unique("fanout");
    let ingest = spawn_ingest(ingest::Config::for_brokers(&brokers(), &topic.name)).await;
    let api = Api::new(ingest.url(""), "");
    let mut config = fanout_config(&topic, &group, &db.url);
    config.lag_interval_ms = 300;
    let exporter = spawn_lag_exporter(config.clone()).await;
    let fanout = spawn_fanout(config.clone()).await;
    let prometheus = start_prometheus(&[
        ("fanline-ingest", ingest.port),
        ("fanline-lag-exporter", exporter.port),
        ("fanline-fanout", fanout.port),
    ]);
    let lag = format!(
        "sum(max by (topic, partition) (fanline_fanout_consumer_lag{{topic=\"{}\"}}))",
        topic.name
    );
    let wait = Duration::from_secs(60);

    for i in 0..5 {
        api.post("alice", &format!("before {i}"), None).await;
    }
    wait_until("Prometheus to see the group caught up", wait, || async {
        (prometheus.query(&lag).await == Some(0.0)).then_some(())
    })
    .await;
    // The worker's own target is up; the rules from compose/ load.
    wait_until("fanout to be scraped", wait, || async {
        (prometheus.query("up{job=\"fanline-fanout\"}").await == Some(1.0)).then_some(())
    })
    .await;

    fanout.stop().await;
    for i in 0..40 {
        api.post("alice", &format!("while stopped {i}"), None).await;
    }
    let peak = wait_until("Prometheus to see the lag rise to 40", wait, || async {
        prometheus.query(&lag).await.filter(|v| *v >= 40.0)
    })
    .await;
    assert_eq!(peak, 40.0);
    wait_until("Prometheus to see fanout down", wait, || async {
        (prometheus.query("up{job=\"fanline-fanout\"}").await == Some(0.0)).then_some(())
    })
    .await;

    let restarted = spawn_fanout(config).await;
    wait_until(
        "Prometheus to see the lag fall back to zero",
        wait,
        || async { (prometheus.query(&lag).await == Some(0.0)).then_some(()) },
    )
    .await;
    println!("PromQL {lag}: 0 before, {peak} while fanout was stopped, 0 after restart");
    restarted.stop().await;
    exporter.stop().await;
    ingest.stop().await;
}
