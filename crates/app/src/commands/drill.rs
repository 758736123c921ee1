//! `drill` and `drills`: the engine drills the chosen sources and stores the record; this file
//! picks them, shows progress, renders the record (text, JSON, HTML) and picks the exit status.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use engine::progress::Reporter;
use engine::recovery::assess::span;
use engine::recovery::drill::{
    self, DrillObserver, DrillRecord, DrillRequest, DrillResult, DrillStep,
};
use engine::recovery::point::Point;

use crate::cli::{DrillArgs, DrillsArgs, VerifyDepth};
use crate::context::{Context, Steps};
use crate::exit::{remove_sandboxes_on_interrupt, Status};
use crate::output::{bytes, escape_html, local_time, print_json};

/// How long an interrupted drill gets to write its record before the process exits anyway.
const RECORD_GRACE: Duration = Duration::from_secs(30);

pub fn run(ctx: &Context, args: &DrillArgs) -> Result<Status> {
    let stack = ctx.stack()?;
    let (scenario, members) = match &args.scenario {
        Some(name) => {
            let (s, members) = stack.scenario(name)?;
            (Some(s.name), members)
        }
        None => (None, stack.select(&args.sources)?),
    };
    let point = Point::from_args(args.set.as_deref(), args.target_time.as_deref())?;
    let repo = ctx.open()?;
    let snapshots = ctx.snapshots(&repo)?;
    let req = DrillRequest {
        scenario,
        point,
        scratch: args.spool_dir.clone().unwrap_or_else(std::env::temp_dir),
        sample: args.verify == VerifyDepth::Sample,
        callback: ctx.callback(),
        lock_wait: ctx.lock_wait,
    };
    remove_sandboxes_on_interrupt(RECORD_GRACE);
    let mut terminal = Terminal {
        ctx,
        steps: ctx.steps(),
    };
    let record = drill::run(&repo, &snapshots, &members, &req, &mut terminal);
    let id = drill::save(&repo, &record);
    if let Some(path) = &args.html {
        std::fs::write(path, html(&record))
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    if ctx.json {
        print_json(&serde_json::json!({
            "id": id.as_ref().ok(),
            "record": record,
        }))?;
    } else {
        summary(&record);
    }
    let id = id.context("storing the drill record in the repository")?;
    if !ctx.json {
        println!("drill {} recorded: `bulwark drills {}`", &id[..8], &id[..8]);
    }
    Ok(match record.result {
        DrillResult::Passed => Status::Ok,
        DrillResult::TargetMissed => Status::Degraded,
        DrillResult::Failed => Status::Mismatch,
        DrillResult::Interrupted => Status::Interrupted,
    })
}

/// A progress bar per source, and its result as it finishes.
struct Terminal<'a> {
    ctx: &'a Context,
    steps: Steps<'a>,
}

impl DrillObserver for Terminal<'_> {
    fn started(&mut self, source: &str) -> Reporter {
        self.steps.start(&format!("drill {source}"))
    }

    fn finished(&mut self, step: &DrillStep) {
        self.steps.finish();
        if !self.ctx.json {
            print_step(step);
        }
    }
}

fn result_label(r: DrillResult) -> &'static str {
    match r {
        DrillResult::Passed => "passed",
        DrillResult::TargetMissed => "TARGET MISSED",
        DrillResult::Failed => "FAILED",
        DrillResult::Interrupted => "INTERRUPTED",
    }
}

fn print_step(s: &DrillStep) {
    let measured = |v: Option<f64>, target: u64, met: Option<bool>| match (v, met) {
        (Some(v), Some(met)) => format!(
            "{} (target {}{})",
            span(v),
            span(target as f64),
            if met { "" } else { ", MISSED" }
        ),
        (Some(v), None) => span(v),
        _ => "-".into(),
    };
    let restored = match &s.verdict {
        Some(v) => format!(
            "; {} {} ({}), {} compared with the backup",
            s.items,
            s.unit,
            bytes(s.bytes),
            v.checked
        ),
        None => String::new(),
    };
    println!(
        "{} ({}): {}; RTO {}, RPO {}{restored}",
        s.source,
        s.kind,
        result_label(s.result),
        measured(s.rto_secs, s.rto_target_secs, s.rto_met),
        measured(s.rpo_secs, s.rpo_target_secs, s.rpo_met),
    );
    for p in &s.problems {
        println!("  {p}");
    }
}

fn summary(r: &DrillRecord) {
    println!(
        "drill {}: {} source(s) in {}; {}",
        r.scenario.as_deref().unwrap_or("of the named sources"),
        r.steps.len(),
        span(r.total_secs),
        result_label(r.result)
    );
}

pub fn list(ctx: &Context, args: &DrillsArgs) -> Result<Status> {
    let repo = ctx.open()?;
    let (records, unreadable) = drill::load_all(&repo)?;
    for u in &unreadable {
        eprintln!("warning: unreadable drill record {u}");
    }
    let Some(prefix) = &args.id else {
        if ctx.json {
            let list: Vec<_> = records
                .iter()
                .map(|(id, r)| serde_json::json!({ "id": id, "record": r }))
                .collect();
            print_json(&list)?;
        } else {
            for (id, r) in &records {
                println!(
                    "{}  {}  {:<13} {:>7}  {}",
                    &id[..8],
                    local_time(r.started),
                    result_label(r.result),
                    span(r.total_secs),
                    r.steps
                        .iter()
                        .map(|s| s.source.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        return Ok(Status::Ok);
    };
    let matching: Vec<&(String, DrillRecord)> = records
        .iter()
        .filter(|(id, _)| id.starts_with(&prefix.to_ascii_lowercase()))
        .collect();
    let (id, record) = match matching.as_slice() {
        [one] => *one,
        [] => bail!(crate::exit::usage(format!("no drill record {prefix}"))),
        _ => bail!(crate::exit::usage(format!(
            "{prefix} names {} drill records; give more of the id",
            matching.len()
        ))),
    };
    if args.html {
        print!("{}", html(record));
    } else if ctx.json {
        print_json(&serde_json::json!({ "id": id, "record": record }))?;
    } else {
        println!(
            "drill {} on {} by {}, {}: {}",
            &id[..8],
            record.hostname,
            record.username,
            local_time(record.started),
            result_label(record.result)
        );
        for s in &record.steps {
            print_step(s);
        }
        summary(record);
    }
    Ok(Status::Ok)
}

/// The record as one HTML page with nothing to fetch: a timeline bar per source, its checks,
/// and the targets met or missed.
pub fn html(r: &DrillRecord) -> String {
    let esc = escape_html;
    let total = r.total_secs.max(0.001);
    let mut offset = 0.0;
    let mut rows = String::new();
    for s in &r.steps {
        let secs = s.rto_secs.unwrap_or(0.0);
        let class = match s.result {
            DrillResult::Passed => "ok",
            DrillResult::TargetMissed => "warn",
            _ => "bad",
        };
        let target = |v: Option<f64>, t: u64, met: Option<bool>| match (v, met) {
            (Some(v), Some(true)) => format!("{} ≤ {} ✓", span(v), span(t as f64)),
            (Some(v), Some(false)) => format!("{} &gt; {} ✗", span(v), span(t as f64)),
            (Some(v), None) => span(v),
            _ => "–".into(),
        };
        let problems: String = s
            .problems
            .iter()
            .map(|p| format!("<li>{}</li>", esc(p)))
            .collect();
        rows.push_str(&format!(
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td>\
             <td><div class=\"bar\"><span style=\"margin-left:{:.1}%;width:{:.1}%\"></span></div></td>\
             <td>{}</td><td>{}</td><td>{} {} · {} compared</td><td><ul>{problems}</ul></td></tr>\n",
            esc(&s.source),
            esc(&s.kind),
            result_label(s.result),
            offset / total * 100.0,
            (secs / total * 100.0).max(0.5),
            target(s.rto_secs, s.rto_target_secs, s.rto_met),
            target(s.rpo_secs, s.rpo_target_secs, s.rpo_met),
            s.items,
            esc(&s.unit),
            s.verdict.as_ref().map(|v| v.checked).unwrap_or(0),
        ));
        offset += secs;
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Bulwark drill {started}</title><style>\
         body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:6px;text-align:left;vertical-align:top}}\
         .bar{{background:#eee;height:12px;width:240px}}.bar span{{display:block;height:12px;background:#4a7}}\
         tr.warn .bar span{{background:#d90}}tr.bad .bar span{{background:#c33}}\
         tr.bad td:nth-child(3){{color:#c33;font-weight:bold}}tr.warn td:nth-child(3){{color:#b70;font-weight:bold}}\
         ul{{margin:0;padding-left:1.2em}}</style></head><body>\
         <h1>Restore drill: {result}</h1>\
         <p>{scenario} · started {started} on {host} by {user} · {total} in all</p>\
         <table><tr><th>source</th><th>kind</th><th>result</th><th>timeline</th><th>RTO</th><th>RPO</th><th>checked</th><th>problems</th></tr>\n\
         {rows}</table></body></html>\n",
        started = esc(&r.started.to_string()),
        result = result_label(r.result),
        scenario = esc(r.scenario.as_deref().unwrap_or("named sources")),
        host = esc(&r.hostname),
        user = esc(&r.username),
        total = span(r.total_secs),
    )
}
