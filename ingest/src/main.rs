use anyhow::Context;
use clap::Parser;

/// The service's flags, and a check mode for deployment tooling.
#[derive(clap::Parser)]
#[command(
    name = "ingest",
    version,
    about = "Fanline ingest: the write API, appending events to Kafka"
)]
struct Cli {
    #[command(flatten)]
    config: ingest::Config,
    /// Check the configuration as the service would start with it (required settings, their form),
    /// print the outcome and exit, without connecting to anything.
    #[arg(long)]
    check_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli {
        config,
        check_config,
    } = Cli::parse();
    if check_config {
        ingest::check_config(&config).context("invalid configuration")?;
        println!("ingest: configuration ok");
        return Ok(());
    }
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
