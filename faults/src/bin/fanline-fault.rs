//! The fault suite (see the `faults` crate): runs the stack with `scripts/up.sh --watch` on private
//! ports, a private broker and Postgres cluster, posts and polls continuously, injects each fault for
//! `--rounds` rounds and prints one table. Exits non-zero when anything acknowledged was lost or
//! duplicated, a client gave up, or delivery took longer than `--max-stall-secs` to resume after the
//! faulted process was back. `scripts/fault.sh` builds and runs it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use faults::Fault;

#[derive(Parser)]
#[command(
    about = "Injects crashes into a running Fanline stack under load and checks what survived"
)]
struct Args {
    /// Faults to inject, in order: fanout, broker, postgres, ingest, reader, fanout-of-two.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fanout,broker,postgres,ingest,reader,fanout-of-two"
    )]
    faults: Vec<Fault>,
    /// Rounds per fault.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    #[arg(long, default_value_t = 4)]
    authors: usize,
    /// Followers of every author (each follows all authors).
    #[arg(long, default_value_t = 30)]
    followers: usize,
    /// Followers whose device polls its sync timeline throughout.
    #[arg(long, default_value_t = 4)]
    devices: usize,
    /// Pause between one author's posts, in milliseconds.
    #[arg(long, default_value_t = 100)]
    post_interval_ms: u64,
    /// Quiet time after each recovered round, in seconds.
    #[arg(long, default_value_t = 5)]
    settle_secs: u64,
    /// Bound on fault → delivery resumed, counted from the process being back, in seconds.
    #[arg(long, default_value_t = 30)]
    max_stall_secs: u64,
    /// A client gives up on a post after retrying it this long, in seconds.
    #[arg(long, default_value_t = 120)]
    give_up_secs: u64,
    /// The services' build profile for scripts/up.sh (release or debug).
    #[arg(long, env = "FANLINE_PROFILE", default_value = "release")]
    profile: String,
    /// The stack's state directory (emptied first).
    #[arg(long, default_value = ".fanline/fault")]
    state_dir: PathBuf,
    /// ingest's port; reader +1, fanout +2 (second worker +12), lag exporter +3.
    #[arg(long, default_value_t = 18080)]
    base_port: u16,
    #[arg(long, default_value_t = 19092)]
    broker_port: u16,
    #[arg(long, default_value_t = 15432)]
    postgres_port: u16,
    /// Also write the report to this file.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let (report, passed) = faults::run(faults::Options {
        root,
        state_dir: args.state_dir,
        profile: args.profile,
        base_port: args.base_port,
        broker_port: args.broker_port,
        postgres_port: args.postgres_port,
        faults: args.faults,
        rounds: args.rounds,
        authors: args.authors,
        followers: args.followers,
        devices: args.devices,
        post_interval: Duration::from_millis(args.post_interval_ms),
        settle: Duration::from_secs(args.settle_secs),
        max_stall: Duration::from_secs(args.max_stall_secs),
        give_up: Duration::from_secs(args.give_up_secs),
    })
    .await?;
    println!("{report}");
    if let Some(path) = args.report {
        std::fs::write(&path, &report)?;
    }
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}
