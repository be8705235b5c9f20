//! A fanout worker in its own process, like `fanout run`: for the crash tests, which kill it
//! with SIGKILL. (Integration tests can only spawn binaries of their own package.)

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = fanout::Cli::parse().config;
    httpkit::init_tracing(config.log_json);
    let app = fanout::App::build(&config, prometheus::Registry::new())
        .await
        .context("starting fanout")?;
    app.run(httpkit::shutdown_signal())
        .await
        .context("running fanout")
}
