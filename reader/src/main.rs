use anyhow::Context;
use clap::Parser;

/// The service's flags, and a check mode for deployment tooling.
#[derive(clap::Parser)]
#[command(
    name = "reader",
    version,
    about = "Fanline reader: feeds, sync scans and store timelines"
)]
struct Cli {
    #[command(flatten)]
    config: reader::Config,
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
        reader::check_config(&config).context("invalid configuration")?;
        println!("reader: configuration ok");
        return Ok(());
    }
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
