//! What a deployment does once before the workers start (and `fanout run` does first unless
//! `--skip-setup`): create and migrate the database, create the topics; and the check of a
//! configuration before any of it.

use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::PgPoolOptions;

use crate::config::Config;
use crate::error::BuildError;
use crate::topics;

/// Creates the database if it is missing and applies the migrations. Safe to run concurrently and
/// repeatedly: sqlx serialises migrators with an advisory lock and skips applied migrations.
pub async fn migrate(database_url: &str) -> Result<(), BuildError> {
    if !sqlx::Postgres::database_exists(database_url).await? {
        match sqlx::Postgres::create_database(database_url).await {
            Ok(()) => tracing::info!("created database"),
            // Another process created it meanwhile.
            Err(_) if sqlx::Postgres::database_exists(database_url).await? => {}
            Err(err) => return Err(err.into()),
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(database_url)
        .await?;
    schemas::MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Creates the events and dead-letter topics if missing.
pub async fn create_topics(config: &Config) -> Result<(), BuildError> {
    topics::ensure_topics(
        &config.kafka()?,
        &[
            (config.topic.as_str(), config.partitions),
            (config.dlq_topic.as_str(), config.partitions),
        ],
        config.replication_factor,
    )
    .await?;
    Ok(())
}

/// Checks what every command needs from the configuration before it connects anywhere: the delivery
/// policy, the operator's Kafka properties and the database URL (the check mode of the binary, used
/// on compose files).
pub fn check_config(config: &Config) -> Result<(), BuildError> {
    use secrecy::ExposeSecret;
    config.policy().map_err(BuildError::Config)?;
    config.kafka()?;
    let _: sqlx::postgres::PgConnectOptions = config.database_url.expose_secret().parse()?;
    config.blobs.check()?;
    Ok(())
}
