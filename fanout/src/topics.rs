//! Creates the events and dead-letter topics when they are missing. Existing topics are left as they
//! are: partition counts and retention belong to the operator once a topic exists.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Creates `topics` (name, partitions) if missing; succeeds when they exist afterwards.
pub async fn ensure_topics(
    kafka: &kafkakit::KafkaSettings,
    topics: &[(&str, i32)],
    replication_factor: i32,
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = kafka.client("fanline-admin", &[]).create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| {
            NewTopic::new(
                name,
                *partitions,
                TopicReplication::Fixed(replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "topic exists")
            }
            Err((name, code)) => {
                tracing::error!(topic = %name, error = %code, "cannot create topic");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(())
}
