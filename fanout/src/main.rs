use anyhow::Context;
use clap::Parser;
use secrecy::ExposeSecret;

use fanout::{Cli, Command, EventsCommand};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.config;
    if cli.check_config {
        fanout::check_config(&config).context("invalid configuration")?;
        println!("fanout: configuration ok");
        return Ok(());
    }
    httpkit::init_tracing(config.log_json);
    match cli.command.unwrap_or(Command::Run) {
        Command::Migrate => {
            fanout::migrate(config.database_url.expose_secret())
                .await
                .context("migrating the database")?;
            tracing::info!("database is migrated");
        }
        Command::CreateTopics => {
            fanout::create_topics(&config)
                .await
                .context("creating topics")?;
            tracing::info!(topic = %config.topic, dlq = %config.dlq_topic, "topics exist");
        }
        Command::Replay(args) => {
            let summary = fanout::replay::replay_command(&config, &args)
                .await
                .context("replay failed")?;
            print!("{summary}");
        }
        Command::Events(EventsCommand::Produce) => {
            let sent =
                fanout::events_cli::produce(&config, std::io::stdin().lock(), std::io::stdout())
                    .await
                    .context("producing events")?;
            tracing::info!(sent, topic = %config.topic, "events acknowledged");
        }
        Command::Events(EventsCommand::Consume { from, max, follow }) => {
            let read = tokio::task::spawn_blocking(move || {
                fanout::events_cli::consume(&config, from, max, follow, std::io::stdout().lock())
            })
            .await?
            .context("consuming events")?;
            tracing::info!(read, "events read");
        }
        Command::LagExporter => {
            let exporter = fanout::LagExporter::build(&config, prometheus::Registry::new())
                .await
                .context("starting the lag exporter")?;
            tracing::info!(port = exporter.port(), topic = %config.topic, group = %config.group, "lag exporter running");
            exporter
                .run(httpkit::shutdown_signal())
                .await
                .context("running the lag exporter")?;
        }
        Command::Run => {
            let app = fanout::App::build(&config, prometheus::Registry::new())
                .await
                .context("starting fanout")?;
            tracing::info!(port = app.port(), topic = %config.topic, group = %config.group, "fanout running");
            app.run(httpkit::shutdown_signal())
                .await
                .context("running fanout")?;
            tracing::info!("fanout stopped");
        }
    }
    Ok(())
}
