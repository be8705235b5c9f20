//! A private Postgres cluster for the fault suite, which restarts Postgres with `-m immediate` (a crash:
//! no checkpoint, statistics lost): on its own port and data directory, so the machine's server and
//! everything else using it are untouched. Uses the newest server under `/usr/lib/postgresql` (or
//! `FANLINE_PG_BINDIR`); run as root, it runs the server as the `postgres` user, as Debian does.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

pub struct PrivatePostgres {
    port: u16,
    dir: PathBuf,
    bindir: PathBuf,
    as_postgres_user: bool,
}

fn newest_bindir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("FANLINE_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no Postgres server under /usr/lib/postgresql (set FANLINE_PG_BINDIR)")?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("no pg_ctl under /usr/lib/postgresql/*/bin (set FANLINE_PG_BINDIR)")
}

impl PrivatePostgres {
    /// Creates a cluster in a fresh directory (trust authentication, superuser `root`) and starts it.
    pub fn start(port: u16) -> anyhow::Result<PrivatePostgres> {
        // The server refuses to run as root; as root, the cluster belongs to `postgres`.
        let as_postgres_user = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
        let parent = std::env::temp_dir().join(harness::unique("fanline-postgres"));
        std::fs::create_dir_all(&parent)?;
        let postgres = PrivatePostgres {
            port,
            dir: parent.join("data"),
            bindir: newest_bindir()?,
            as_postgres_user,
        };
        if as_postgres_user {
            run(Command::new("chown").args(["postgres:postgres".as_ref(), parent.as_os_str()]))?;
        }
        postgres.pg(
            "initdb",
            &[
                "-D".as_ref(),
                postgres.dir.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "root".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        postgres.start_server()?;
        Ok(postgres)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://root@127.0.0.1:{}/{database}", self.port)
    }

    fn log_file(&self) -> PathBuf {
        self.dir.with_file_name("postgres.log")
    }

    /// Runs one of the server's programs (as `postgres` when we are root).
    fn pg(&self, program: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
        let path = self.bindir.join(program);
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        command.args(args);
        run(&mut command)
    }

    fn start_server(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.dir.display()
        );
        self.pg(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.dir.as_os_str(),
                "-l".as_ref(),
                self.log_file().as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "start".as_ref(),
            ],
        )
    }

    fn stop_server(&self, mode: &str) -> anyhow::Result<()> {
        self.pg(
            "pg_ctl",
            &[
                "-D".as_ref(),
                self.dir.as_os_str(),
                "-m".as_ref(),
                mode.as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )
    }

    /// A crash restart: `-m immediate` ends every backend without a checkpoint (the next start
    /// recovers from the WAL and has lost the planner statistics), then the server starts again.
    pub fn restart_immediate(&self) -> anyhow::Result<()> {
        self.stop_server("immediate")?;
        self.start_server()
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.stop_server("fast");
        if let Some(parent) = self.dir.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}
