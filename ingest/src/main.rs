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
    /// Print the claim code of USER and exit: the operator gives it to the owner of an id that holds
    /// data from before it had an account, who registers with it (README "Accounts and tokens").
    #[arg(long, value_name = "USER")]
    claim_code: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli {
        config,
        check_config,
        claim_code,
    } = Cli::parse();
    if let Some(user) = claim_code {
        let user = schemas::UserId::parse("user", &user).context("--claim-code")?;
        let key = config.token.key().context("FANLINE_TOKEN_KEY")?;
        println!("{}", key.claim_code(user.as_str()));
        return Ok(());
    }
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
