//! The alerter: every few seconds the alert rules are evaluated against the state database and
//! the latest assessment; notifications go to a sender thread of their own, so a slow or dead
//! channel (retried with backoff) holds up neither the rules nor, on other threads, any job.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Result;
use jiff::Timestamp;

use super::state::Delivery;
use super::Daemon;
use crate::alerts::channels::Channel;
use crate::alerts::{self, Notification};

const EVERY: Duration = Duration::from_secs(3);

/// Starts the evaluator (returned, to be joined) and the sender (left to finish on its own).
pub fn start(daemon: Arc<Daemon>, external_url: String) -> JoinHandle<()> {
    let (tx, rx) = mpsc::channel::<Notification>();
    {
        let daemon = Arc::clone(&daemon);
        std::thread::spawn(move || {
            for n in rx {
                send(&daemon, &n, &external_url);
            }
        });
    }
    std::thread::spawn(move || {
        while !daemon.stopping.load(Ordering::SeqCst) {
            if let Err(e) = step(&daemon, &tx) {
                eprintln!("warning: alert rules: {e:#}");
            }
            std::thread::sleep(EVERY);
        }
    })
}

fn step(d: &Daemon, tx: &mpsc::Sender<Notification>) -> Result<()> {
    let now = Timestamp::now();
    let holding = alerts::conditions(d, now)?;
    for n in alerts::reconcile(d, &holding, now)? {
        let _ = tx.send(n);
    }
    Ok(())
}

/// Sends one notification to every channel that wants it and records each delivery.
fn send(d: &Daemon, n: &Notification, external_url: &str) {
    let config = d.config();
    for (name, section) in &config.config.alerts.channels {
        let (attempts, error) = match Channel::from_config(name, section, config.dir()) {
            Ok(ch) if !ch.wants(n) => continue,
            Ok(ch) => ch.deliver(n, external_url),
            Err(e) => (0, Some(format!("{e:#}"))),
        };
        if let Some(e) = &error {
            eprintln!(
                "error: alert {} ({}) not delivered to {name}: {e}",
                n.alert.id, n.status
            );
        }
        let delivery = Delivery {
            alert: n.alert.id,
            channel: name.clone(),
            status: n.status.to_string(),
            time: Timestamp::now(),
            ok: error.is_none(),
            attempts,
            error,
        };
        let _ = d.with_state(|s| s.record_delivery(&delivery));
    }
    if n.status == "firing" {
        let _ = d.with_state(|s| s.mark_sent(n.alert.id, Timestamp::now()));
    }
}
