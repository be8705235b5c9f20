//! A private tansu broker for tests that kill the broker: its own port and sqlite file, so the shared
//! broker of the rest of the suite is untouched. Needs `tansu` on PATH (scripts/test.sh installs it) or
//! `FANLINE_TANSU`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::free_port;

pub struct PrivateBroker {
    port: u16,
    dir: PathBuf,
    process: Option<Child>,
}

impl PrivateBroker {
    /// Starts tansu on a free port with storage in a fresh directory.
    pub async fn start() -> PrivateBroker {
        let dir = std::env::temp_dir().join(crate::unique("fanline-broker"));
        std::fs::create_dir_all(&dir).expect("broker directory");
        let mut broker = PrivateBroker {
            port: free_port(),
            dir,
            process: None,
        };
        broker.restart().await;
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker process again on the same port and data (after [`PrivateBroker::kill`]).
    pub async fn restart(&mut self) {
        let program = std::env::var("FANLINE_TANSU").unwrap_or_else(|_| "tansu".to_owned());
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let process = Command::new(&program)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            // tansu resolves sqlite:// paths against its working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start {program} ({err}); scripts/test.sh installs it")
            });
        self.process = Some(process);
        let address = format!("127.0.0.1:{}", self.port);
        crate::wait_until(
            "the private broker to listen",
            Duration::from_secs(30),
            || {
                let address = address.clone();
                async move { tokio::net::TcpStream::connect(address).await.ok().map(drop) }
            },
        )
        .await;
    }

    /// SIGKILL: no shutdown path runs, as in a crash.
    pub async fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().await.expect("SIGKILL the broker");
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(process) = self.process.as_mut() {
            let _ = process.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
