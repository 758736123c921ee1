//! `assess` and `scenarios`: the engine judges the stack against its targets; this file picks
//! the sources, opens the repository (an unreadable one is a finding, not an error) and renders.

use anyhow::Result;
use engine::recovery::assess::{assess, span, Assessment, Status as Health};
use engine::recovery::drill;

use crate::cli::AssessArgs;
use crate::context::Context;
use crate::exit::Status;
use crate::output::{bytes, local_time, print_json};

pub fn run(ctx: &Context, args: &AssessArgs) -> Result<Status> {
    let stack = ctx.stack()?;
    let members = match &args.scenario {
        Some(name) => stack.scenario(name)?.1,
        None => stack.select(&args.sources)?,
    };
    let target = ctx.target(None)?;
    let opened = ctx.open_at(&target).and_then(|repo| {
        let (drills, unreadable) = drill::load_all(&repo)?;
        for u in &unreadable {
            eprintln!("warning: unreadable drill record {u}");
        }
        Ok((ctx.snapshots(&repo)?, drills, repo))
    });
    let a = assess(
        &target.url,
        opened
            .as_ref()
            .map(|(snapshots, drills, repo)| (repo, snapshots, drills.as_slice()))
            .map_err(|e| format!("{e:#}")),
        &members,
    );
    if ctx.json {
        print_json(&a)?;
    } else {
        render(&a);
    }
    Ok(match a.overall_status {
        Health::Healthy => Status::Ok,
        Health::Degraded => Status::Degraded,
        Health::Critical => Status::Critical,
    })
}

fn label(s: Health) -> &'static str {
    match s {
        Health::Healthy => "healthy",
        Health::Degraded => "DEGRADED",
        Health::Critical => "CRITICAL",
    }
}

fn render(a: &Assessment) {
    println!("overall: {}", label(a.overall_status));
    for s in &a.services {
        let d = &s.details;
        let point = match (&d.state.recovery_point, d.state.recovery_point_age_secs) {
            (Some(p), Some(age)) => format!(
                "recoverable to {} ({} ago, RPO target {})",
                local_time(p.time),
                span(age),
                span(d.targets.rpo_secs as f64)
            ),
            _ => "no recovery point".into(),
        };
        let drilled = match &d.last_drill {
            Some(l) => format!(
                "last drill {} {}, RTO {}",
                local_time(l.started),
                l.result,
                l.rto_secs.map(span).unwrap_or_else(|| "-".into())
            ),
            None => "never drilled".into(),
        };
        println!(
            "{} ({}): {}; {point}; {drilled} (target {})",
            s.name,
            s.kind,
            label(s.status),
            span(d.targets.rto_secs as f64)
        );
        for f in &s.findings {
            println!("  {}: {}", label(f.status), f.problem);
        }
    }
    let r = &a.repository;
    let checked = match &r.last_check {
        Some(c) => format!(
            "; last checked {} ({} read, {})",
            local_time(c.time),
            c.read_data,
            if c.ok { "clean" } else { "ERRORS" }
        ),
        None => "; never checked".into(),
    };
    match (r.snapshots, r.size_bytes) {
        (Some(n), Some(size)) => println!(
            "repository {}: {}; {n} snapshot(s), {}{checked}",
            r.url,
            label(r.status),
            bytes(size)
        ),
        _ => println!("repository {}: {}", r.url, label(r.status)),
    }
    for f in &r.findings {
        println!("  {}: {}", label(f.status), f.problem);
    }
    if !a.recommendations.is_empty() {
        println!("recommendations:");
        for (i, rec) in a.recommendations.iter().enumerate() {
            println!("  {}. {rec}", i + 1);
        }
    }
}

pub fn scenarios(ctx: &Context) -> Result<Status> {
    let stack = ctx.stack()?;
    let all = stack.scenarios();
    if ctx.json {
        print_json(&all)?;
    } else {
        for s in &all {
            println!(
                "{}{}: {}",
                s.name,
                if s.configured { " (configured)" } else { "" },
                if s.sources.is_empty() {
                    "no sources".to_string()
                } else {
                    s.sources.join(" → ")
                }
            );
        }
    }
    Ok(Status::Ok)
}
