//! A real S3-compatible server for the attachment tests: moto's server mode (PyPI), started on a free
//! port for one test and killed with it. `scripts/test.sh` installs it and names the command in
//! `FANLINE_TEST_S3_SERVER` (default `python3 -m moto.server`).

use std::time::Duration;

use tokio::process::{Child, Command};

use crate::{free_port, wait_until};

/// A running S3 server with one bucket.
pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    _child: Child,
}

impl S3Server {
    /// Starts a server and creates `bucket` in it. Sets the AWS credentials the store reads from the
    /// environment (any pair: moto accepts every key).
    pub async fn start(bucket: &str) -> S3Server {
        let command = std::env::var("FANLINE_TEST_S3_SERVER")
            .unwrap_or_else(|_| "python3 -m moto.server".to_owned());
        let mut parts = command.split_whitespace();
        let program = parts
            .next()
            .expect("FANLINE_TEST_S3_SERVER names a command");
        let port = free_port();
        let child = Command::new(program)
            .args(parts)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start {command} (scripts/test.sh installs it): {err}")
            });
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        wait_until("the S3 server", Duration::from_secs(30), || async {
            let created = client.put(format!("{endpoint}/{bucket}")).send().await;
            created.ok().filter(|r| r.status().is_success()).map(|_| ())
        })
        .await;
        // The test's own process: nextest runs every test in a process of its own.
        std::env::set_var("AWS_ACCESS_KEY_ID", "fanline-test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "fanline-test-secret");
        S3Server {
            endpoint,
            bucket: bucket.to_owned(),
            _child: child,
        }
    }

    /// Storage settings pointing at this server.
    pub fn blob_args(&self) -> blobkit::BlobArgs {
        blobkit::BlobArgs {
            blob_store: Some(format!("s3://{}", self.bucket)),
            s3_endpoint: Some(self.endpoint.clone()),
            ..blobkit::BlobArgs::off()
        }
    }
}
