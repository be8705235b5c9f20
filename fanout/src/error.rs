//! [`BuildError`]: what stops the worker, the lag exporter or a replay from starting (flags, Kafka
//! clients, the database, migrations, metrics).

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Bind(#[from] httpkit::BindError),
    #[error("Kafka client error")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("Postgres error")]
    Database(#[from] sqlx::Error),
    #[error("cannot apply the migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot register metrics")]
    Metrics(#[from] prometheus::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid Kafka property")]
    KafkaProperty(#[from] kafkakit::PropertyError),
    #[error(transparent)]
    Blobs(#[from] blobkit::BlobError),
}
