use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ingest::Config::parse();
    httpkit::init_tracing(config.log_json);
    let app = ingest::App::build(&config, prometheus::Registry::new())
        .await
        .context("starting ingest")?;
    tracing::info!(port = app.port(), topic = %config.topic, brokers = %config.brokers, "ingest listening");
    app.run(httpkit::shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("ingest stopped");
    Ok(())
}
