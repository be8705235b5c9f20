//! A real browser for the web client's tests: headless Chromium (Debian's, installed by
//! scripts/test.sh) driven through chromedriver, with its own profile (its own storage: its own user),
//! acting like a person — type, click, wait for text — and saving a screenshot when a wait fails.
//! Screenshots go to `target/screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use harness::{free_port, wait_until};
use serde_json::json;
use tokio::process::{Child, Command};

pub(crate) const WAIT: Duration = Duration::from_secs(30);

pub(crate) struct Browser {
    pub(crate) client: Client,
    _driver: Child,
    _profile: TempDir,
}

/// A directory removed on drop (Chromium's profile).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(harness::unique(name));
        std::fs::create_dir_all(&path).expect("a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    dir
}

impl Browser {
    /// A headless Chromium with its own profile (its own storage: its own user).
    pub(crate) async fn open(url: &str) -> Browser {
        Browser::open_sized(url, (1280, 800)).await
    }

    /// The same in a window of `size` (width, height) pixels: 400 wide is a phone.
    pub(crate) async fn open_sized(url: &str, size: (u32, u32)) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/test.sh installs it)");
        let profile = TempDir::new("chromium-profile");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    format!("--window-size={},{}", size.0, size.1),
                    format!("--user-data-dir={}", profile.0.display()),
                ],
            }),
        );
        if size.0 < 500 {
            // Headless windows are at least 500 px wide: a phone's viewport is emulated instead.
            capabilities["goog:chromeOptions"]["mobileEmulation"] = json!({
                "deviceMetrics": {"width": size.0, "height": size.1, "pixelRatio": 1.0},
            });
        }
        let webdriver = format!("http://127.0.0.1:{port}");
        let client = wait_until("chromedriver answers", WAIT, || {
            let capabilities = capabilities.clone();
            let webdriver = webdriver.clone();
            async move {
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&webdriver)
                    .await
                    .ok()
            }
        })
        .await;
        client.goto(url).await.expect("open the web client");
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    pub(crate) async fn text(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    /// Waits until the element's text satisfies `check`; on a timeout, saves a screenshot of the page
    /// and fails naming what the page showed.
    pub(crate) async fn wait_text(
        &self,
        css: &str,
        what: &str,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = self.text(css).await;
            if let Some(text) = text.as_ref().filter(|t| check(t)) {
                return text.clone();
            }
            if tokio::time::Instant::now() > deadline {
                let name = format!("failed-{}", what.replace(' ', "-"));
                self.screenshot(&name).await;
                let error = self.text("#auth-error").await.unwrap_or_default();
                panic!("timed out waiting for {what}: {css} shows {text:?} (auth error {error:?}); see target/screenshots/{name}.png");
            }
            // The poll interval of this wait on a condition (harness's wait_until cannot screenshot).
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `script` returns `expected`; on a timeout, saves a screenshot and fails with what it
    /// returned.
    pub(crate) async fn wait_script(&self, what: &str, script: &str, expected: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = self.client.execute(script, vec![]).await.ok();
            let got = got.and_then(|v| v.as_str().map(str::to_owned));
            if got.as_deref() == Some(expected) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let name = format!("failed-{}", what.replace(' ', "-"));
                self.screenshot(&name).await;
                panic!("timed out waiting for {what}: the page says {got:?}; see target/screenshots/{name}.png");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types into a field once it is shown (a form may appear only when the page knows it applies).
    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let element = wait_until(&format!("{css} shown"), WAIT, || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            element.is_displayed().await.ok()?.then_some(element)
        })
        .await;
        element.clear().await.expect("clear");
        element.send_keys(text).await.expect("type");
    }

    pub(crate) async fn click(&self, css: &str) {
        let element = wait_until(css, WAIT, || async {
            self.client.find(Locator::Css(css)).await.ok()
        })
        .await;
        element.click().await.expect("click");
    }

    pub(crate) async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(screenshots().join(format!("{name}.png")), png)
            .expect("save the screenshot");
    }

    /// Registers (which logs in) and waits until the page is online.
    pub(crate) async fn register(&self, user: &str) {
        self.type_into("#auth-user", user).await;
        self.type_into("#auth-password", "correct horse battery")
            .await;
        self.click("#auth-register").await;
        self.wait_text("#me", "logged in", |t| t == user).await;
        self.wait_text("#status", "online", |t| t == "online").await;
    }

    pub(crate) async fn send(&self, body: &str) {
        self.type_into("#composer-input", body).await;
        self.click("#composer-send").await;
    }

    /// The bodies of the open chat's messages, in order.
    pub(crate) async fn messages(&self) -> Vec<String> {
        let mut bodies = Vec::new();
        if let Ok(items) = self
            .client
            .find_all(Locator::Css("#messages li.message .body"))
            .await
        {
            for item in items {
                bodies.push(item.text().await.unwrap_or_default());
            }
        }
        bodies
    }

    pub(crate) async fn wait_messages(&self, what: &str, expected: &[&str]) {
        wait_until(what, WAIT, || async {
            let bodies = self.messages().await;
            (bodies == expected).then_some(())
        })
        .await;
    }

    pub(crate) async fn badge(&self, conversation: &str) -> Option<String> {
        self.text(&format!(
            "#conversations li[data-conversation=\"{conversation}\"] .badge"
        ))
        .await
    }

    pub(crate) async fn close(self) {
        let _ = self.client.close().await;
    }
}
