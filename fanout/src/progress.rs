//! Replay progress: a bar on a terminal, plain lines every two seconds otherwise (logs, CI).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A progress bar on a terminal, plain lines every two seconds otherwise (logs, CI).
pub fn reporter() -> impl FnMut(u64, u64) {
    let terminal = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::new(0);
    if terminal {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} events  {per_sec}  ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = Instant::now();
    let mut last_line = Instant::now() - Duration::from_secs(10);
    move |done, total| {
        bar.set_length(total);
        bar.set_position(done);
        if done == total {
            bar.finish();
        }
        if !terminal && (last_line.elapsed() >= Duration::from_secs(2) || done == total) {
            last_line = Instant::now();
            let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
            let eta = if rate > 0.0 {
                (total - done) as f64 / rate
            } else {
                0.0
            };
            eprintln!("replay: {done}/{total} events ({rate:.0}/s, ETA {eta:.0} s)");
        }
    }
}
