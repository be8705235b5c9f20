//! A producer that replaces itself when it has failed every send for too long.
//!
//! librdkafka's non-idempotent producer (Fanline's profile) has no fatal state, and it reconnects by
//! itself after a broker restart. But a client can still end up failing every message while the broker
//! serves others (seen with tansu 0.6: a producer whose epoch the broker lost failed every request until
//! it was recreated). Rather than answer 503 forever, the owner recreates it once every send has failed
//! for `after`; while the broker is really down that costs one reconnect per `after`, nothing more.

use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;

/// When every send has failed since `failing_since` for at least `after`, it is time to recreate.
#[derive(Debug)]
pub struct FailureStreak {
    after: Duration,
    failing_since: Option<Instant>,
}

impl FailureStreak {
    pub fn new(after: Duration) -> FailureStreak {
        FailureStreak {
            after,
            failing_since: None,
        }
    }

    pub fn succeeded(&mut self) {
        self.failing_since = None;
    }

    /// Records a failed send; true when the producer should be recreated now (then the streak starts
    /// over, so a broker that stays down is not hammered with new clients).
    pub fn failed(&mut self, now: Instant) -> bool {
        let since = *self.failing_since.get_or_insert(now);
        if now.duration_since(since) >= self.after {
            self.failing_since = Some(now);
            return true;
        }
        false
    }
}

pub struct RenewingProducer {
    config: ClientConfig,
    current: RwLock<FutureProducer>,
    streak: Mutex<FailureStreak>,
}

impl RenewingProducer {
    pub fn new(config: ClientConfig, after: Duration) -> Result<RenewingProducer, KafkaError> {
        Ok(RenewingProducer {
            current: RwLock::new(config.create()?),
            config,
            streak: Mutex::new(FailureStreak::new(after)),
        })
    }

    /// The producer to send with (a cheap clone sharing the client).
    pub fn get(&self) -> FutureProducer {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn succeeded(&self) {
        self.streak
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .succeeded();
    }

    /// Records a failed send; recreates the producer when every send failed for the configured time.
    /// Returns whether it did. Sends still in flight on the old client finish or fail on it.
    pub fn failed(&self) -> bool {
        let renew = self
            .streak
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failed(Instant::now());
        if !renew {
            return false;
        }
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                let old = std::mem::replace(
                    &mut *self.current.write().unwrap_or_else(PoisonError::into_inner),
                    fresh,
                );
                // Dropping a client can block while it purges its queue: not on the caller's thread.
                std::thread::spawn(move || drop(old));
                tracing::warn!("every send failed for a while; recreated the Kafka producer");
                true
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot recreate the Kafka producer; keeping the old one");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_producer_is_renewed_only_after_failing_for_the_whole_period_and_then_not_at_once_again() {
        let start = Instant::now();
        let mut streak = FailureStreak::new(Duration::from_secs(60));
        assert!(!streak.failed(start));
        assert!(!streak.failed(start + Duration::from_secs(59)));
        // One success in between starts the period over.
        streak.succeeded();
        assert!(!streak.failed(start + Duration::from_secs(61)));
        assert!(!streak.failed(start + Duration::from_secs(120)));
        assert!(streak.failed(start + Duration::from_secs(121)));
        // Renewed: the next renewal needs another full period of failures.
        assert!(!streak.failed(start + Duration::from_secs(122)));
        assert!(streak.failed(start + Duration::from_secs(181)));
    }
}
