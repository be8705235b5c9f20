//! `fanout replay`'s flags and where they say the replay starts: [`ReplayArgs`] (clap) and
//! [`StartAt`], with the `--from-offsets` syntax ([`parse_offsets`]). No Kafka here: the replay
//! itself (`replay`) turns a start point into offsets per partition.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("start").required(true).args(["from_beginning", "from_timestamp", "from_offsets", "resume"])))]
pub struct ReplayArgs {
    /// Start at the earliest retained event of every partition.
    #[arg(long, env = "FANLINE_REPLAY_FROM_BEGINNING")]
    pub from_beginning: bool,
    /// Start at the first event at or after this time (RFC 3339, e.g. 2026-11-23T12:00:00Z).
    #[arg(long, env = "FANLINE_REPLAY_FROM_TIMESTAMP")]
    pub from_timestamp: Option<DateTime<Utc>>,
    /// With --from-timestamp: find the offsets by searching the records' timestamps instead of asking
    /// the broker's time index first (for brokers that answer ListOffsets by time wrongly).
    #[arg(
        long,
        env = "FANLINE_REPLAY_SEARCH_RECORDS",
        requires = "from_timestamp"
    )]
    pub search_records: bool,
    /// Start at explicit offsets, PARTITION:OFFSET,... (partitions not listed are not replayed).
    #[arg(long, env = "FANLINE_REPLAY_FROM_OFFSETS")]
    pub from_offsets: Option<String>,
    /// Continue an interrupted replay of the group from its committed offsets (every replay commits
    /// its start offsets before the first batch and its progress after every batch).
    #[arg(long, env = "FANLINE_REPLAY_RESUME")]
    pub resume: bool,
    /// Replay with this consumer group instead of --group (required while --group has live members).
    #[arg(long, env = "FANLINE_REPLAY_GROUP")]
    pub replay_group: Option<String>,
    /// Rewind the group even though the broker cannot list its members (you stopped its workers).
    #[arg(long, env = "FANLINE_REPLAY_ASSUME_NO_LIVE_MEMBERS")]
    pub assume_no_live_members: bool,
}

impl ReplayArgs {
    /// Where the replay starts; errors on malformed --from-offsets.
    pub fn start(&self) -> Result<StartAt, String> {
        Ok(if self.from_beginning {
            StartAt::Beginning
        } else if self.resume {
            StartAt::Committed
        } else if let Some(at) = self.from_timestamp {
            if self.search_records {
                StartAt::TimestampByRecords(at)
            } else {
                StartAt::Timestamp(at)
            }
        } else {
            let text = self.from_offsets.as_deref().unwrap_or_default();
            StartAt::Offsets(parse_offsets(text)?)
        })
    }
}

/// Where the replay starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    Timestamp(DateTime<Utc>),
    /// Like `Timestamp`, without asking the broker's time index: for brokers known to answer it wrongly.
    TimestampByRecords(DateTime<Utc>),
    /// (partition, offset); partitions not listed start at their end (nothing replayed).
    Offsets(Vec<(i32, i64)>),
    /// The group's committed offsets: continues an interrupted replay (`--resume`).
    Committed,
}

/// Parses `0:10,1:20` into (partition, offset) pairs.
pub fn parse_offsets(text: &str) -> Result<Vec<(i32, i64)>, String> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let (partition, offset) = part
                .split_once(':')
                .ok_or_else(|| format!("{part:?} is not PARTITION:OFFSET"))?;
            let partition = partition
                .trim()
                .parse()
                .map_err(|_| format!("bad partition in {part:?}"))?;
            let offset = offset
                .trim()
                .parse()
                .map_err(|_| format!("bad offset in {part:?}"))?;
            Ok((partition, offset))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_as_partition_offset_pairs() {
        assert_eq!(parse_offsets("0:10, 3:0").unwrap(), vec![(0, 10), (3, 0)]);
        assert!(parse_offsets("0-10").is_err());
        assert!(parse_offsets("x:1").is_err());
    }
}
