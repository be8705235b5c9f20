//! The fault suite (`scripts/fault.sh`, binary `fanline-fault`): the whole stack as
//! `scripts/up.sh --watch` runs it, on private ports with its own broker and Postgres cluster, under
//! continuous load; each fault is injected round after round, and afterwards every acknowledged post
//! is looked up in every timeline it belongs to.
//!
//! # Layout
//!
//! - [`suite`]: the faults, the load, the per-round waits, the final check and its table ([`run`]).
//! - [`postgres`]: a private Postgres cluster, which the suite restarts in immediate mode.

pub mod postgres;
pub mod suite;

pub use suite::{run, Fault, Options};
