//! The live progress bar: drawn on stderr from the shared finished-request counter, a few
//! times a second, by a task of its own. The connections never touch it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use crate::client::Shared;

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(200);

/// A running progress bar; [`Progress::finish`] clears it.
pub struct Progress {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

impl Progress {
    /// Starts drawing. With a duration the bar measures time, otherwise requests.
    pub fn start(shared: Arc<Shared>, duration: Option<Duration>, requests: Option<u64>) -> Progress {
        let (len, template) = match (duration, requests) {
            (Some(d), _) => (d.as_millis() as u64, "{bar:40.cyan/blue} {elapsed:>3} of {len_s}  {msg}"),
            (None, n) => (n.unwrap_or(0), "{bar:40.cyan/blue} {pos}/{len} requests  {msg}"),
        };
        let len_s = duration.map(|d| humantime::format_duration(d).to_string()).unwrap_or_default();
        let style = ProgressStyle::with_template(&template.replace("{len_s}", &len_s))
            .expect("the progress templates are valid")
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr()).with_style(style);
        let by_time = duration.is_some();
        let ticker = tokio::spawn({
            let bar = bar.clone();
            async move {
                let start = Instant::now();
                let mut tick = tokio::time::interval(TICK);
                loop {
                    tick.tick().await;
                    let done = shared.done.load(Ordering::Relaxed);
                    let secs = start.elapsed().as_secs_f64();
                    let rps = if secs > 0.0 { done as f64 / secs } else { 0.0 };
                    if by_time {
                        bar.set_position(start.elapsed().as_millis() as u64);
                        bar.set_message(format!("{done} requests, {rps:.0} req/s"));
                    } else {
                        bar.set_position(done);
                        bar.set_message(format!("{rps:.0} req/s"));
                    }
                }
            }
        });
        Progress { bar, ticker }
    }

    /// Stops drawing and removes the bar, so the summary prints on a clean line.
    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}
