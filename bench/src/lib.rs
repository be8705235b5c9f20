//! The benches: each binary measures one thing on this machine, against the real broker and Postgres,
//! with the test support of [`harness`] (fresh databases and topics, services on port 0).
//!
//! Binaries: `fanline-bench` (ingest posts/s, fanout drain rate), `fanline-feed-bench` (rows per post
//! by audience size, feed latency by pull sources), `fanline-im-bench` (group against feed fan-out,
//! large groups, contact lists), `fanline-realtime-bench` (idle WebSocket memory, post → socket
//! latency; it starts harness's `fanline-reader`), and `fanline-limits` (`scripts/bench.sh`: Fanline
//! next to the machine's own limits, measured in the same run).
//!
//! # Layout
//!
//! - [`measure`]: the comparison's tools: wrk, pgbench, an open-loop HTTP generator, percentiles and
//!   the table it prints.
//! - [`seed`]: data applied through fanout's own store code, and the shapes too large to write event
//!   by event.

pub mod measure;
pub mod seed;
