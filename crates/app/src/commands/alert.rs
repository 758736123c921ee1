//! `alert test`: a test notification through each configured channel, with each one's result.

use anyhow::Result;
use jiff::Timestamp;

use crate::alerts::channels::Channel;
use crate::alerts::Notification;
use crate::cli::AlertCommand;
use crate::context::Context;
use crate::daemon::state::Alert;
use crate::exit::{usage, Status};
use crate::output::print_json;

pub fn run(ctx: &Context, cmd: &AlertCommand) -> Result<Status> {
    let AlertCommand::Test { channel } = cmd;
    let loaded = ctx
        .config
        .as_ref()
        .ok_or_else(|| usage("alert test needs a config file with [alerts.channels.NAME]"))?;
    let channels = &loaded.config.alerts.channels;
    if let Some(name) = channel {
        if !channels.contains_key(name) {
            return Err(usage(format!(
                "no [alerts.channels.{name}] in {}",
                loaded.path.display()
            )));
        }
    }
    if channels.is_empty() {
        return Err(usage(format!(
            "{}: no [alerts.channels.NAME] configured",
            loaded.path.display()
        )));
    }
    let test = Notification {
        alert: Alert {
            id: 0,
            rule: "test".into(),
            datastore: "bulwark".into(),
            severity: "critical".into(),
            summary: format!(
                "a test notification from bulwark on {}",
                engine::repo::hostname()
            ),
            fired: Timestamp::now(),
            resolved: None,
            acknowledged: None,
            acknowledged_by: None,
        },
        status: "firing",
    };
    let external = loaded
        .config
        .daemon
        .listen_addr()
        .map(|a| format!("http://{a}"))
        .unwrap_or_default();
    let mut results = Vec::new();
    for (name, section) in channels
        .iter()
        .filter(|(n, _)| channel.as_ref().is_none_or(|c| c == *n))
    {
        let error = match Channel::from_config(name, section, loaded.dir()) {
            Ok(ch) => ch.deliver(&test, &external).1,
            Err(e) => Some(format!("{e:#}")),
        };
        if !ctx.json {
            match &error {
                None => println!("{name}: success"),
                Some(e) => println!("{name}: failed: {e}"),
            }
        }
        results.push(serde_json::json!({ "channel": name, "ok": error.is_none(), "error": error }));
    }
    if ctx.json {
        print_json(&results)?;
    }
    Ok(if results.iter().all(|r| r["ok"] == true) {
        Status::Ok
    } else {
        Status::Failed
    })
}
