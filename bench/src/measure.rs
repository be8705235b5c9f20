//! What the comparison benchmark (`fanline-limits`, run by `scripts/bench.sh`) measures with: the
//! external load generators (wrk for HTTP, pgbench for SQL), an open-loop HTTP generator for latency at
//! a fixed rate, and the table it prints.
//!
//! Both sides of a comparison are measured in the same run, on the same data, with the same concurrency,
//! so that the ratio says how close Fanline comes to the machine's own limit, whatever else the machine
//! is doing that day.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::Command;

/// One measured side of a comparison.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    /// Operations per second (requests, pages, rows: the comparison's unit).
    pub per_second: f64,
}

/// Latency percentiles at a fixed rate, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// One line of the table.
pub struct Comparison {
    pub workload: String,
    pub unit: &'static str,
    pub fanline: Rate,
    pub limit: Rate,
    /// What the limit is (e.g. `pgbench -M prepared -c 32`).
    pub limit_name: String,
    pub target: f64,
    pub latency: Option<Latency>,
}

impl Comparison {
    pub fn ratio(&self) -> f64 {
        if self.limit.per_second > 0.0 {
            self.fanline.per_second / self.limit.per_second
        } else {
            0.0
        }
    }

    pub fn met(&self) -> bool {
        self.ratio() >= self.target
    }
}

/// Prints the comparisons as a Markdown table (README takes it as it is).
pub fn print_table(rows: &[Comparison], facts: &[(&str, String)]) {
    println!();
    println!("| workload | Fanline | limit | limit measured by | ratio | target | p50 / p99 at half rate |");
    println!("|---|---:|---:|---|---:|---:|---|");
    for row in rows {
        let latency = match row.latency {
            Some(l) => format!("{:.1} / {:.1} ms at {:.0}/s", l.p50_ms, l.p99_ms, l.rate),
            None => "—".to_owned(),
        };
        println!(
            "| {} | {:.0} {} | {:.0} {} | {} | **{:.2}** | {:.2} {} | {} |",
            row.workload,
            row.fanline.per_second,
            row.unit,
            row.limit.per_second,
            row.unit,
            row.limit_name,
            row.ratio(),
            row.target,
            if row.met() { "met" } else { "NOT met" },
            latency
        );
    }
    for (name, value) in facts {
        println!("| {name} | {value} | | | | | |");
    }
    println!();
}

/// A request wrk sends: method, path, bearer token, JSON body.
pub struct WrkRequest {
    pub method: &'static str,
    pub path: String,
    pub token: String,
    pub body: Option<String>,
}

fn lua_string(text: &str) -> String {
    // A Lua long string cannot contain its own closing bracket; ours never contain "]==]".
    format!("[==[{text}]==]")
}

/// Writes a wrk script that sends `requests` round-robin (each wrk thread from its own position).
/// The requests are formatted once when the script loads, so the generator spends nothing per request
/// but the copy.
pub fn wrk_script(dir: &Path, name: &str, requests: &[WrkRequest]) -> anyhow::Result<PathBuf> {
    let mut lua = String::from("local requests = {}\n");
    for request in requests {
        let mut headers = format!(
            "{{[\"Authorization\"] = {}",
            lua_string(&format!("Bearer {}", request.token))
        );
        if request.body.is_some() {
            headers.push_str(", [\"Content-Type\"] = \"application/json\"");
        }
        headers.push('}');
        let body = match &request.body {
            Some(body) => lua_string(body),
            None => "nil".to_owned(),
        };
        lua.push_str(&format!(
            "requests[#requests + 1] = wrk.format({}, {}, {headers}, {body})\n",
            lua_string(request.method),
            lua_string(&request.path),
        ));
    }
    lua.push_str(
        "local i = math.random(#requests)\n\
         request = function()\n  i = i % #requests + 1\n  return requests[i]\nend\n",
    );
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, lua)?;
    Ok(path)
}

/// Runs `command(seconds)` for `warm_up` (whole seconds; not at all when zero), then for `duration`,
/// and returns the second run's standard output; a tool that cannot start or exits with an error fails
/// the measurement with its output.
async fn run_timed(
    tool: &str,
    command: impl Fn(u64) -> Command,
    warm_up: Duration,
    duration: Duration,
) -> anyhow::Result<String> {
    let mut runs = Vec::new();
    if !warm_up.is_zero() {
        runs.push(warm_up);
    }
    runs.push(duration);
    let mut text = String::new();
    for seconds in runs {
        let output = command(seconds.as_secs().max(1))
            .output()
            .await
            .with_context(|| format!("cannot run {tool}"))?;
        text = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "{tool} failed: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    Ok(text)
}

/// Runs wrk (closed loop: `connections` requests in flight) for `duration`, after a warm-up run of
/// `warm_up` (whole seconds, none when zero) that is not counted. Fails if any answer was not 2xx.
pub async fn wrk(
    base_url: &str,
    script: &Path,
    connections: usize,
    warm_up: Duration,
    duration: Duration,
) -> anyhow::Result<Rate> {
    let run = |seconds: u64| {
        let mut command = Command::new("wrk");
        command
            .arg("-t2")
            .arg(format!("-c{connections}"))
            .arg(format!("-d{seconds}s"))
            .arg("--timeout")
            .arg("10s")
            .arg("-s")
            .arg(script)
            .arg(base_url);
        command
    };
    let text = run_timed("wrk (apt-get install wrk)", run, warm_up, duration).await?;
    if let Some(line) = text.lines().find(|l| l.contains("Non-2xx or 3xx")) {
        bail!("wrk saw failed requests ({line}):\n{text}");
    }
    if let Some(line) = text.lines().find(|l| l.contains("Socket errors")) {
        bail!("wrk saw socket errors ({line}):\n{text}");
    }
    let per_second = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    Ok(Rate { per_second })
}

/// Runs pgbench with `scripts` (`-M prepared`, `clients` connections, two threads; one script drawn at
/// random per transaction) for `duration`, after an uncounted warm-up run of `warm_up` (none when
/// zero); returns transactions (script runs) per second.
pub async fn pgbench(
    database_url: &str,
    scripts: &[PathBuf],
    clients: usize,
    warm_up: Duration,
    duration: Duration,
) -> anyhow::Result<Rate> {
    let run = |seconds: u64| {
        let mut command = Command::new("pgbench");
        command
            .arg("-n")
            .arg("-M")
            .arg("prepared")
            .arg(format!("-c{clients}"))
            .arg("-j2")
            .arg(format!("-T{seconds}"));
        for script in scripts {
            command.arg("-f").arg(script);
        }
        command.arg(database_url);
        command
    };
    let text = run_timed("pgbench", run, warm_up, duration).await?;
    if let Some(line) = text
        .lines()
        .find(|l| l.starts_with("number of failed transactions") && !l.contains(": 0 "))
    {
        bail!("pgbench saw failures ({line})");
    }
    let per_second = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("no tps in pgbench's output:\n{text}"))?;
    Ok(Rate { per_second })
}

/// Turns a statement with `$1`, `$2`, … into a pgbench command: each parameter becomes the text given
/// for it, a `:name` variable (in prepared mode pgbench binds it as a parameter again, so the server sees
/// the same statement) or `NULL` (pgbench has no NULL variable: it would send the text "NULL").
pub fn pgbench_statement(sql: &str, parameters: &[&str]) -> String {
    let mut out = sql.to_owned();
    // Highest number first, so that $1 does not eat the start of $10.
    for (index, parameter) in parameters.iter().enumerate().rev() {
        out = out.replace(&format!("${}", index + 1), parameter);
    }
    // pgbench reads one statement per line unless it ends with ';' — fold it onto one line, without
    // the `--` comments that would then swallow the rest.
    let folded: Vec<&str> = out
        .lines()
        .map(|line| line.split("--").next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
        .collect();
    format!("{};\n", folded.join(" "))
}

/// An open-loop run: requests are started at a fixed rate whatever the answers take, and each latency
/// is measured from the moment its request was due (so a stall shows up in the percentiles instead of
/// slowing the generator down). `requests` are (url, bearer token) used round-robin.
pub async fn open_loop(
    requests: &[(String, String)],
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Latency> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()?;
    let requests: Arc<Vec<(String, String)>> = Arc::new(requests.to_vec());
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (duration.as_secs_f64() * rate) as usize;
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for n in 0..total {
        let due = started + interval * n as u32;
        tokio::time::sleep_until(due).await;
        let client = client.clone();
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let (url, token) = &requests[n % requests.len()];
            let response = client.get(url).bearer_auth(token).send().await;
            let ok = match response {
                Ok(response) => {
                    let status = response.status();
                    response.bytes().await.is_ok() && status.is_success()
                }
                Err(_) => false,
            };
            (ok, tokio::time::Instant::now() - due)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut failed = 0;
    for task in tasks {
        let (ok, latency) = task.await?;
        if !ok {
            failed += 1;
        }
        latencies.push(latency);
    }
    if failed > 0 {
        bail!("{failed} of {total} requests failed at {rate:.0}/s");
    }
    latencies.sort_unstable();
    Ok(Latency {
        rate,
        p50_ms: percentile_ms(&latencies, 0.50),
        p99_ms: percentile_ms(&latencies, 0.99),
    })
}

/// The `p` quantile of sorted latencies, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// Seconds since `started`, for rates.
pub fn seconds_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_become_pgbench_variables() {
        let sql = "SELECT $1, $10\n   FROM t WHERE a = $2";
        let names = [":a", "NULL", ":c", ":d", ":e", ":f", ":g", ":h", ":i", ":j"];
        assert_eq!(
            pgbench_statement(sql, &names),
            "SELECT :a, :j FROM t WHERE a = NULL;\n"
        );
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&sorted, 0.5), 51.0);
        assert_eq!(percentile_ms(&sorted, 0.99), 99.0);
        assert_eq!(percentile_ms(&[], 0.99), 0.0);
    }
}
