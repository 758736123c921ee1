//! `schedule install | status | uninstall` into a root directory: the systemd units pass
//! `systemd-analyze verify`, the timers fire when the jobs' cron expressions say (checked with
//! `systemd-analyze calendar`), crontab lines sit between markers; uninstall removes only ours.

mod common;

use std::path::Path;
use std::process::Command;

use common::Env;

const JOBS: &str = "[jobs.backup]\nkind = \"backup\"\nschedule = \"*/20 * * * * *\"\n\n\
     [jobs.nightly]\nkind = \"check\"\nschedule = \"30 2 * * 1-5\"\ntimezone = \"Europe/Berlin\"\njitter = \"10m\"\n\n\
     [jobs.monthly]\nkind = \"retention\"\nschedule = \"0 4 1,15 * sun\"\n\n\
     [retention]\nkeep_last = 3\n";

fn env_with(jobs: &str) -> Env {
    let env = Env::new();
    std::fs::create_dir_all(env.path("data")).expect("data");
    std::fs::write(
        env.path("bulwark.toml"),
        format!("[sources.files]\nkind = \"files\"\npaths = [\"data\"]\n\n{jobs}"),
    )
    .expect("config");
    env
}

fn systemd_analyze(args: &[&str]) -> Option<(bool, String)> {
    let out = Command::new("systemd-analyze")
        .args(args)
        .env("TZ", "UTC")
        .output();
    let Ok(out) = out else {
        eprintln!("SKIPPED: systemd-analyze is not installed (Debian package systemd); unit checks did not run");
        assert!(std::env::var("CI").is_err(), "CI must verify the units");
        return None;
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Some((out.status.success(), text))
}

fn units(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("etc/systemd/system"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The units verify without a complaint (systemd-analyze warns and still exits 0 on settings
/// it ignores, so its output must be empty too).
fn assert_verified(root: &Path, names: &[&str]) {
    let paths: Vec<String> = names
        .iter()
        .map(|n| {
            root.join("etc/systemd/system")
                .join(n)
                .display()
                .to_string()
        })
        .collect();
    let mut args = vec!["verify"];
    args.extend(paths.iter().map(String::as_str));
    if let Some((ok, text)) = systemd_analyze(&args) {
        assert!(
            ok && text.trim().is_empty(),
            "systemd-analyze verify {names:?}:\n{text}"
        );
    }
}

/// The first time systemd's calendar expressions elapse, from `systemd-analyze calendar`.
fn first_elapse(calendars: &[&str]) -> Option<jiff::Timestamp> {
    let mut args = vec!["calendar"];
    args.extend(calendars);
    let (ok, text) = systemd_analyze(&args)?;
    assert!(ok, "{text}");
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Next elapse: "))
        .filter_map(|l| {
            // "Fri 2026-12-04 01:30:00 UTC"
            let civil = l
                .split_whitespace()
                .skip(1)
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            civil
                .parse::<jiff::civil::DateTime>()
                .ok()?
                .to_zoned(jiff::tz::TimeZone::UTC)
                .ok()
                .map(|z| z.timestamp())
        })
        .min()
}

#[test]
fn systemd_units_written_under_a_root_verify_and_fire_when_cron_says() {
    let env = env_with(JOBS);
    let root = env.path("root");
    let root_arg = root.to_string_lossy().into_owned();
    env.ok(&["schedule", "install", "--root", &root_arg]);
    assert_eq!(units(&root), ["bulwark.service"]);
    let service =
        std::fs::read_to_string(root.join("etc/systemd/system/bulwark.service")).expect("unit");
    assert!(
        service.contains(&format!(
            "--config {} daemon",
            env.path("bulwark.toml").display()
        )),
        "{service}"
    );
    assert!(
        service.contains("ExecReload=/bin/kill -HUP $MAINPID"),
        "{service}"
    );
    assert_verified(&root, &["bulwark.service"]);

    // Timers replace the daemon's service.
    env.ok(&["schedule", "install", "--timers", "--root", &root_arg]);
    let expected = [
        "bulwark-job-backup.service",
        "bulwark-job-backup.timer",
        "bulwark-job-monthly.service",
        "bulwark-job-monthly.timer",
        "bulwark-job-nightly.service",
        "bulwark-job-nightly.timer",
    ];
    assert_eq!(units(&root), expected);
    assert_verified(&root, &expected);
    let nightly =
        std::fs::read_to_string(root.join("etc/systemd/system/bulwark-job-nightly.timer"))
            .expect("timer");
    assert!(
        nightly.contains("Persistent=true") && nightly.contains("RandomizedDelaySec=600"),
        "{nightly}"
    );
    let service =
        std::fs::read_to_string(root.join("etc/systemd/system/bulwark-job-nightly.service"))
            .expect("service");
    assert!(service.contains("run-job nightly"), "{service}");

    // systemd and Bulwark's own scheduler agree on when each job runs next (time zones, the
    // weekday range, and cron's either-day rule for 1,15 * sun as two OnCalendar lines).
    let status = env
        .ok(&["schedule", "status", "--root", &root_arg, "--json"])
        .json();
    assert_eq!(status["installed"], "3 systemd timer(s)");
    for job in status["jobs"].as_array().expect("jobs") {
        let name = job["name"].as_str().expect("name");
        let timer = std::fs::read_to_string(
            root.join(format!("etc/systemd/system/bulwark-job-{name}.timer")),
        )
        .expect("timer");
        let calendars: Vec<&str> = timer
            .lines()
            .filter_map(|l| l.strip_prefix("OnCalendar="))
            .collect();
        let ours: jiff::Timestamp = job["next_run"]
            .as_str()
            .expect("next")
            .parse()
            .expect("time");
        let Some(theirs) = first_elapse(&calendars) else {
            return;
        };
        // The seconds-level job may tick over between the two questions.
        let apart = (ours.as_second() - theirs.as_second()).abs();
        assert!(
            apart == 0 || (name == "backup" && apart <= 20),
            "{name}: bulwark says {ours}, systemd {theirs} ({calendars:?})"
        );
        assert_eq!(job["last_result"], serde_json::Value::Null);
    }

    // Uninstall removes our units and leaves the others.
    let dir = root.join("etc/systemd/system");
    std::fs::write(
        dir.join("bulwark-custom.service"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .expect("foreign");
    std::fs::write(
        dir.join("nginx.service"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .expect("foreign");
    let dry = env.ok(&["schedule", "uninstall", "--root", &root_arg, "--dry-run"]);
    assert_eq!(dry.stdout.lines().count(), 6, "{}", dry.stdout);
    assert_eq!(units(&root).len(), 8, "a dry run removes nothing");
    env.ok(&["schedule", "uninstall", "--root", &root_arg]);
    assert_eq!(units(&root), ["bulwark-custom.service", "nginx.service"]);
}

#[test]
fn crontab_lines_sit_between_markers_and_jobs_cron_cannot_run_are_refused() {
    let env = env_with(
        "[jobs.hourly]\nkind = \"backup\"\nschedule = \"0 * * * *\"\njitter = \"5m\"\n\n\
         [jobs.daily]\nkind = \"check\"\nschedule = \"@daily\"\n",
    );
    let root = env.path("root");
    let root_arg = root.to_string_lossy().into_owned();
    let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output().expect("id").stdout)
        .trim()
        .to_string();
    let spool = root.join("var/spool/cron/crontabs").join(&user);
    std::fs::create_dir_all(spool.parent().expect("dir")).expect("spool");
    std::fs::write(
        &spool,
        "MAILTO=ops@example.com\n17 * * * * /usr/local/bin/other-job\n",
    )
    .expect("crontab");
    for _ in 0..2 {
        env.ok(&["schedule", "install", "--cron", "--root", &root_arg]);
    }
    let crontab = std::fs::read_to_string(&spool).expect("crontab");
    assert!(
        crontab.starts_with(
            "MAILTO=ops@example.com\n17 * * * * /usr/local/bin/other-job\n# BEGIN bulwark"
        ),
        "{crontab}"
    );
    assert_eq!(
        crontab.matches("# BEGIN bulwark").count(),
        1,
        "installing twice replaces the block:\n{crontab}"
    );
    let exe = env!("CARGO_BIN_EXE_bulwark");
    assert!(
        crontab.contains(&format!(
            "0 * * * * '{exe}' --quiet --config '{}' run-job 'hourly'",
            env.path("bulwark.toml").display()
        )),
        "{crontab}"
    );
    assert!(crontab.contains("@daily '"), "{crontab}");
    assert!(
        crontab.contains("# job hourly: cron does not apply its jitter"),
        "{crontab}"
    );
    let status = env.ok(&["schedule", "status", "--cron", "--root", &root_arg]);
    assert!(
        status
            .stdout
            .contains(&format!("schedule: crontab of {user}")),
        "{}",
        status.stdout
    );

    env.ok(&["schedule", "uninstall", "--cron", "--root", &root_arg]);
    assert_eq!(
        std::fs::read_to_string(&spool).expect("crontab"),
        "MAILTO=ops@example.com\n17 * * * * /usr/local/bin/other-job\n"
    );

    for (job, why) in [
        ("[jobs.fast]\nkind = \"backup\"\nschedule = \"*/10 * * * * *\"\n", "has seconds"),
        ("[jobs.berlin]\nkind = \"backup\"\nschedule = \"0 3 * * *\"\ntimezone = \"Europe/Berlin\"\n", "system's time zone"),
    ] {
        let env = env_with(job);
        let r = env.run(&["schedule", "install", "--cron", "--root", &root_arg]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stderr.contains(why), "{}", r.stderr);
    }
}
