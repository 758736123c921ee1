//! Terminal output: progress bars drawn from the engine's progress channel, human sizes, and
//! JSON printing. Nothing here decides anything.

use std::io::IsTerminal;
use std::thread::JoinHandle;
use std::time::Duration;

use engine::progress::{Progress, Reporter};
use indicatif::{ProgressBar, ProgressStyle};

/// Storage retries and other warnings from the engine go to stderr.
pub fn init_logging(quiet: bool) {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= log::Level::Warn && !m.target().starts_with("opendal")
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                eprintln!("warning: {}", r.args());
            }
        }
        fn flush(&self) {}
    }
    static LOGGER: Stderr = Stderr;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(if quiet {
            log::LevelFilter::Error
        } else {
            log::LevelFilter::Warn
        });
    }
}

/// Draws progress while an operation runs; `finish` clears the bar.
pub struct ProgressView {
    reporter: Reporter,
    thread: Option<JoinHandle<()>>,
}

impl ProgressView {
    pub fn start(enabled: bool, label: &str) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Self {
                reporter: Reporter::none(),
                thread: None,
            };
        }
        let (tx, rx) = crossbeam_channel::unbounded::<Progress>();
        let label = label.to_string();
        let thread = std::thread::spawn(move || {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            let spinner = ProgressStyle::with_template(
                "{spinner} {prefix} {msg} {bytes} ({binary_bytes_per_sec}) {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(spinner);
            bar.set_prefix(label);
            for event in rx {
                match event {
                    Progress::Phase(p) => bar.set_message(p),
                    Progress::Item(path) => bar.set_message(shorten(&path, 50)),
                    Progress::Bytes(n) => bar.inc(n),
                    Progress::Total { bytes, .. } => {
                        bar.set_length(bytes);
                        if let Ok(style) = ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {bytes}/{total_bytes} ({binary_bytes_per_sec}, eta {eta}) {msg}",
                        ) {
                            bar.set_style(style.progress_chars("=> "));
                        }
                    }
                    Progress::Warning { path, message } => {
                        bar.println(format!("warning: {path}: {message}"))
                    }
                }
            }
            bar.finish_and_clear();
        });
        Self {
            reporter: Reporter::new(tx),
            thread: Some(thread),
        }
    }

    pub fn reporter(&self) -> Reporter {
        self.reporter.clone()
    }

    pub fn finish(mut self) {
        self.reporter = Reporter::none();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let tail: String = s
        .chars()
        .rev()
        .take(max - 1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

pub use engine::stats::human_bytes as bytes;

pub fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Local time, to the second, for listings.
pub fn local_time(t: jiff::Timestamp) -> String {
    t.to_zoned(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A duration as people write it: "20h", "1d 6h", "90s".
pub fn duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let parts = [(86400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let text: Vec<String> = parts
        .iter()
        .scan(secs, |left, (unit, name)| {
            let n = *left / unit;
            *left %= unit;
            Some((n > 0).then(|| format!("{n}{name}")))
        })
        .flatten()
        .collect();
    match text.is_empty() {
        true => "0s".into(),
        false => text.join(" "),
    }
}

/// Text made safe inside HTML elements and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
