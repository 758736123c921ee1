//! `status`: what the running daemon's `/api/status` says, for a terminal (or as it is, with
//! --json).

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::Value;

use crate::cli::StatusArgs;
use crate::context::Context;
use crate::daemon::settings::Role;
use crate::exit::{usage, Status};
use crate::output::print_json;

pub fn run(ctx: &Context, args: &StatusArgs) -> Result<Status> {
    let loaded = ctx
        .config
        .as_ref()
        .ok_or_else(|| usage("status asks the daemon of a config file: pass --config"))?;
    let daemon = &loaded.config.daemon;
    let url = match &args.url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let scheme = if daemon.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            let addr = daemon
                .listen_addr()
                .map_err(|e| usage(format!("[daemon] listen: {e}")))?;
            format!("{scheme}://{addr}")
        }
    };
    let token = match std::env::var("BULWARK_TOKEN") {
        Ok(t) if !t.is_empty() => t,
        _ => config_token(loaded)?,
    };
    let mut client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .no_proxy();
    // The daemon's own certificate is trusted (a self-signed one included), beside the
    // system's roots.
    if let Some(cert) = &daemon.tls_cert {
        let path = loaded.dir().join(cert);
        let pem = std::fs::read(&path)
            .with_context(|| format!("[daemon] tls_cert: reading {}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
            client = client.add_root_certificate(cert);
        }
    }
    let client = client.build()?;
    let answer = client
        .get(format!("{url}/api/status"))
        .bearer_auth(token)
        .send()
        .with_context(|| {
            format!("the daemon at {url} does not answer (is `bulwark daemon` running?)")
        })?;
    let code = answer.status();
    let body: Value =
        serde_json::from_str(&answer.text()?).context("the daemon's answer is not JSON")?;
    if !code.is_success() {
        bail!(
            "the daemon at {url} answered {code}: {}",
            body["error"].as_str().unwrap_or_default()
        );
    }
    if ctx.json {
        print_json(&body)?;
    } else {
        print_text(&body);
    }
    Ok(match body["monitoring_status"].as_str() {
        Some("healthy") => Status::Ok,
        Some("critical") => Status::Critical,
        _ => Status::Degraded,
    })
}

/// A token of the config, read-only ones first: the daemon's own config can ask it.
fn config_token(loaded: &crate::config::Loaded) -> Result<String> {
    let dir = loaded.dir();
    let mut tokens: Vec<_> = loaded.config.daemon.tokens.iter().collect();
    tokens.sort_by_key(|(_, t)| t.role != Role::Read);
    let (name, section) = tokens.first().ok_or_else(|| {
        usage("no token: set BULWARK_TOKEN, or add [daemon.tokens.NAME] to the config")
    })?;
    section
        .secret(dir)
        .map_err(|e| anyhow!(usage(format!("token '{name}': {e}"))))
}

fn print_text(s: &Value) {
    let num = |v: &Value, digits: usize| v.as_f64().map_or("-".into(), |x| format!("{x:.digits$}"));
    let m = &s["current_metrics"];
    println!(
        "overall: {}",
        s["monitoring_status"].as_str().unwrap_or("unknown")
    );
    println!(
        "backup success rate (7 days): {}   newest backup age: {} h   disk used: {} %",
        m["backup_success_rate"]
            .as_f64()
            .map_or("-".into(), |r| format!("{:.0}%", r * 100.0)),
        num(&m["last_backup_age_hours"], 1),
        num(&m["disk_space_used_percent"], 1)
    );
    println!();
    println!(
        "{:<16} {:<9} {:<9} {:>10} {:>12}  last error",
        "datastore", "kind", "status", "age (h)", "RPO (h)"
    );
    for d in s["datastores"].as_array().into_iter().flatten() {
        println!(
            "{:<16} {:<9} {:<9} {:>10} {:>12}  {}",
            d["name"].as_str().unwrap_or_default(),
            d["kind"].as_str().unwrap_or_default(),
            d["status"].as_str().unwrap_or_default(),
            d["last_backup_age_secs"]
                .as_f64()
                .map_or("-".into(), |a| format!("{:.1}", a / 3600.0)),
            d["rpo_target_secs"]
                .as_f64()
                .map_or("-".into(), |a| format!("{:.1}", a / 3600.0)),
            d["last_error"].as_str().unwrap_or_default()
        );
    }
    let alerts = s["active_alerts"].as_array().cloned().unwrap_or_default();
    println!();
    if alerts.is_empty() {
        println!("no active alerts");
    }
    for a in alerts {
        println!(
            "ALERT {} [{}] {}: {}{}",
            a["id"],
            a["severity"].as_str().unwrap_or_default(),
            a["datastore"].as_str().unwrap_or_default(),
            a["summary"].as_str().unwrap_or_default(),
            if a["acknowledged"].is_null() {
                ""
            } else {
                " (acknowledged)"
            }
        );
    }
    for r in s["recommendations"].as_array().into_iter().flatten() {
        println!(
            "- {}",
            r.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| r.to_string())
        );
    }
}
