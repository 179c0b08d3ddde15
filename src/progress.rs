//! Progress of long steps on stderr: a spinner with the phase and elapsed time on a terminal,
//! one plain line per new phase otherwise, nothing with `-q`.

use crate::cluster::provider::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

pub struct Spinner {
    bar: Option<ProgressBar>,
    quiet: bool,
    last: Mutex<String>,
}

impl Spinner {
    pub fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
                    .expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Spinner {
            bar,
            quiet,
            last: Mutex::new(String::new()),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Spinner {
    fn phase(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_string());
            return;
        }
        if self.quiet {
            return;
        }
        // Waiting loops repeat their phase with a new "(12s)"; print a phase once.
        let key = message
            .rsplit_once(" (")
            .map_or(message, |(head, _)| head)
            .to_string();
        let mut last = self.last.lock().expect("not poisoned");
        if *last != key {
            eprintln!("{message}");
            *last = key;
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.finish();
    }
}
