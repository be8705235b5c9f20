use anyhow::Context;
use clap::Parser;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use fanout::replay::{self, StartAt};
use fanout::{Cli, Command};
use secrecy::ExposeSecret;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.config;
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
            let start = if args.from_beginning {
                StartAt::Beginning
            } else if let Some(at) = args.from_timestamp {
                if args.search_records {
                    StartAt::TimestampByRecords(at)
                } else {
                    StartAt::Timestamp(at)
                }
            } else {
                let text = args.from_offsets.unwrap_or_default();
                StartAt::Offsets(replay::parse_offsets(&text).map_err(anyhow::Error::msg)?)
            };
            let group = args.replay_group.unwrap_or_else(|| config.group.clone());
            let cancel = tokio_util::sync::CancellationToken::new();
            let on_signal = cancel.clone();
            tokio::spawn(async move {
                httpkit::shutdown_signal().await;
                on_signal.cancel();
            });
            let summary = replay::replay(
                &config,
                &group,
                start,
                args.assume_no_live_members,
                cancel,
                progress_reporter(),
            )
            .await
            .context("replay failed")?;
            for range in &summary.ranges {
                println!(
                    "partition {:>3}: offsets {}..{} ({:?})",
                    range.partition, range.start, range.end, range.source
                );
            }
            println!(
                "replayed {} events for group {} in {:.1} s ({:.0} events/s)",
                summary.events,
                summary.group,
                summary.seconds,
                summary.events_per_second()
            );
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

/// A progress bar on a terminal, plain lines every two seconds otherwise (logs, CI).
fn progress_reporter() -> impl FnMut(u64, u64) {
    let terminal = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::new(0);
    if terminal {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} events  {per_sec}  ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = Instant::now();
    let mut last_line = Instant::now() - Duration::from_secs(10);
    move |done, total| {
        bar.set_length(total);
        bar.set_position(done);
        if done == total {
            bar.finish();
        }
        if !terminal && (last_line.elapsed() >= Duration::from_secs(2) || done == total) {
            last_line = Instant::now();
            let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
            let eta = if rate > 0.0 {
                (total - done) as f64 / rate
            } else {
                0.0
            };
            eprintln!("replay: {done}/{total} events ({rate:.0}/s, ETA {eta:.0} s)");
        }
    }
}
