//! A reader in its own process, like `reader`: for the realtime tests, which kill it with SIGKILL
//! mid-stream. (Integration tests can only spawn binaries of their own package.)

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = reader::Config::parse();
    httpkit::init_tracing(config.log_json);
    let app = reader::App::build(&config, prometheus::Registry::new())
        .await
        .context("starting reader")?;
    app.run(httpkit::shutdown_signal())
        .await
        .context("running reader")
}
