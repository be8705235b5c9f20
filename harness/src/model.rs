//! What the model tests share: an event log partitioned by key, as Kafka would, and a feed walked
//! page by page with random page sizes.

use fanout::store::SourcedEvent;
use rand::rngs::StdRng;
use rand::Rng;
use schemas::Envelope;

use crate::TestDb;

/// Events numbered per partition, the partition chosen by the event's key.
pub struct KeyedLog {
    offsets: Vec<i64>,
    pub events: Vec<SourcedEvent>,
}

impl KeyedLog {
    pub fn new(partitions: usize) -> KeyedLog {
        KeyedLog {
            offsets: vec![0; partitions],
            events: Vec::new(),
        }
    }

    /// Appends `envelope` at its key's partition's next offset; returns it as appended.
    pub fn append(&mut self, envelope: Envelope) -> SourcedEvent {
        let partitions = self.offsets.len() as u32;
        let partition =
            (envelope.key.as_str().bytes().map(u32::from).sum::<u32>() % partitions) as usize;
        let offset = self.offsets[partition];
        self.offsets[partition] += 1;
        let event = SourcedEvent {
            partition: partition as i32,
            offset,
            envelope,
        };
        self.events.push(event.clone());
        event
    }
}

/// `user`'s whole home feed, read as the route reads it, in pages of 1 to 7 entries; each page is
/// checked against its limit.
pub async fn walk_feed(db: &TestDb, user: &str, rng: &mut StdRng) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let limit = rng.gen_range(1..=7);
        // As the route does: the opaque cursor decodes to the last post id seen.
        let before = cursor
            .as_deref()
            .map(|c| schemas::api::decode_cursor(c).unwrap().to_string());
        let page = reader::queries::feed(&db.reads, user, before.as_deref(), limit)
            .await
            .unwrap();
        assert!(page.entries.len() as i64 <= limit);
        seen.extend(page.entries.into_iter().map(|e| e.post_id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return seen,
        }
    }
}
