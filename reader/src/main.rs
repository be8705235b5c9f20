use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = reader::Config::parse();
    httpkit::init_tracing(config.log_json);
    let app = reader::App::build(&config, prometheus::Registry::new())
        .await
        .context("starting reader")?;
    tracing::info!(port = app.port(), "reader listening");
    app.run(httpkit::shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("reader stopped");
    Ok(())
}
