//! The audit log: every state-changing command leaves an entry with who, what, target and
//! result; `audit verify` finds an edited, deleted, reordered or truncated entry and names it.

mod common;

use common::{write_sample_tree, Env};

fn entries(env: &Env) -> Vec<serde_json::Value> {
    env.ok(&["audit", "--json"])
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn field<'a>(entries: &'a [serde_json::Value], name: &str) -> Vec<&'a str> {
    entries
        .iter()
        .map(|e| e[name].as_str().unwrap_or_default())
        .collect()
}

fn os_user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn every_state_changing_command_is_recorded_with_who_what_and_result() {
    let mut env = Env::new();
    write_sample_tree(&env.path("data"));
    env.init();
    env.ok(&["backup", "data"]);
    assert_eq!(env.run(&["backup", "missing-dir"]).code, 1);
    env.ok(&["snapshots"]);
    env.ok(&["restore", "--target", "out"]);
    env.ok(&["forget", "--keep-last", "1", "--dry-run"]);
    env.ok(&["forget", "--keep-last", "1"]);
    env.ok(&["prune"]);
    std::fs::write(env.path("pw2"), "a second password").expect("pw2");
    std::fs::write(env.path("pw3"), "a third password").expect("pw3");
    env.set(
        "BULWARK_NEW_PASSWORD_FILE",
        &env.path("pw2").to_string_lossy(),
    );
    env.ok(&["key", "add", "--label", "laptop"]);
    env.set(
        "BULWARK_NEW_PASSWORD_FILE",
        &env.path("pw3").to_string_lossy(),
    );
    env.ok(&["key", "passwd"]);
    env.set("BULWARK_PASSWORD", "a third password");
    // A wrong password cannot open the repository: the attempt waits, unkeyed, and the next
    // command that opens it chains it.
    let mut wrong = Env {
        dir: tempfile::tempdir().expect("tmp"),
        extra: env.extra.clone(),
        as_uid: None,
    };
    wrong.set("BULWARK_REPOSITORY", &env.repo());
    wrong.set("BULWARK_STATE_DIR", &env.path("state").to_string_lossy());
    wrong.set("BULWARK_PASSWORD", "not the password");
    assert_eq!(
        wrong
            .run(&["backup", &env.path("data").to_string_lossy()])
            .code,
        3
    );

    let log = entries(&env);
    assert_eq!(
        field(&log, "action"),
        [
            "init",
            "backup",
            "backup",
            "restore",
            "forget",
            "prune",
            "key add",
            "key passwd",
            "backup"
        ],
        "read-only commands and dry runs leave no entry: {log:#?}"
    );
    let results = field(&log, "result");
    assert_eq!(results[..2], ["success", "success"]);
    assert!(
        results[2].starts_with("failed: ") && results[2].contains("missing-dir"),
        "{results:?}"
    );
    assert!(
        results[8].starts_with("failed: ") && results[8].contains("password"),
        "{results:?}"
    );
    assert!(
        log[8]["chained"].is_string(),
        "the deferred entry says when it was chained"
    );
    assert_eq!(field(&log, "target")[1], "data");
    assert!(field(&log, "target")[3].contains("out"), "{log:#?}");
    assert_eq!(field(&log, "target")[6], "laptop");
    let user = os_user();
    assert!(field(&log, "actor").iter().all(|a| *a == user), "{log:#?}");
    assert!(field(&log, "via").iter().all(|v| *v == "cli"));
    let seqs: Vec<u64> = log.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    for secret in ["not the password", "a third password", "correct horse"] {
        assert!(!serde_json::to_string(&log).expect("json").contains(secret));
    }

    let verify = env.run(&["audit", "verify", "--json"]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    assert_eq!(
        verify.json()["verdict"]["sealed"]["seq"],
        8,
        "sealed with the last command that wrote"
    );

    assert_eq!(
        env.ok(&["audit", "--json", "--since", "2099-01-01"]).json(),
        serde_json::json!([])
    );
    assert_eq!(
        entries(&env).len(),
        env.ok(&["audit", "--json", "--since", "1h"])
            .json()
            .as_array()
            .map_or(0, Vec::len)
    );
    assert_eq!(env.run(&["audit", "--since", "yesterday-ish"]).code, 2);
}

#[test]
fn audit_verify_names_an_edited_deleted_reordered_or_truncated_entry() {
    let env = Env::new();
    write_sample_tree(&env.path("data"));
    env.init();
    for _ in 0..4 {
        env.ok(&["backup", "data"]);
    }
    env.ok(&["forget", "--keep-last", "2"]);
    let path = common::audit_log(&env);
    let original = std::fs::read_to_string(&path).expect("log");
    let lines: Vec<&str> = original.lines().collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(env.run(&["audit", "verify"]).code, 0);

    let swapped = {
        let mut l = lines.clone();
        l.swap(2, 3);
        l
    };
    let forged = {
        // A plausible edit with a MAC recomputed under a key that is not the repository's.
        let mut e: serde_json::Value = serde_json::from_str(lines[3]).expect("entry");
        e["result"] = "failed: disk".into();
        e["mac"] = blake3::hash(e.to_string().as_bytes())
            .to_hex()
            .to_string()
            .into();
        e.to_string()
    };
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "an edited result",
            edit(&lines, 2, |l| {
                l.replace("\"success\"", "\"failed: nothing\"")
            }),
            "entry 3 (line 3) was edited",
        ),
        (
            "an edited actor",
            edit(&lines, 1, |l| {
                l.replace(&format!("\"{}\"", os_user()), "\"mallory\"")
            }),
            "entry 2 (line 2) was edited",
        ),
        (
            "a forged MAC",
            edit(&lines, 3, |_| forged.clone()),
            "entry 4 (line 4) was edited",
        ),
        (
            "a deleted entry",
            remove(&lines, 2..3),
            "entry 3 was deleted",
        ),
        (
            "deleted first entries",
            remove(&lines, 0..2),
            "entries 1 to 2 were deleted",
        ),
        (
            "swapped entries",
            swapped.iter().map(|s| s.to_string()).collect(),
            "entry 3 (line 4) is out of order: it comes after entry 4",
        ),
        (
            "a cut-off end",
            remove(&lines, 4..6),
            "the log was truncated: the repository's seal names entry 6, the log ends at entry 4",
        ),
        (
            "an emptied log",
            Vec::new(),
            "the log was truncated: the repository's seal names entry 6, the log ends at entry 0",
        ),
        (
            "a line of garbage",
            edit(&lines, 4, |_| "{\"seq\": 5".to_string()),
            "line 5 is not an audit entry",
        ),
    ];
    for (what, tampered, expected) in cases {
        std::fs::write(
            &path,
            tampered
                .iter()
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        )
        .expect("write");
        let r = env.run(&["audit", "verify"]);
        assert_eq!(
            r.code, 6,
            "{what}: exit 6 expected\n{}{}",
            r.stdout, r.stderr
        );
        assert!(
            r.stdout.contains(&format!("TAMPERED: {expected}")),
            "{what}: expected '{expected}' in\n{}",
            r.stdout
        );
    }
    std::fs::remove_file(&path).expect("rm");
    let r = env.run(&["audit", "verify"]);
    assert_eq!(
        r.code, 6,
        "a deleted log file is a truncated one:\n{}",
        r.stdout
    );
    std::fs::write(&path, &original).expect("restore");
    assert_eq!(
        env.run(&["audit", "verify"]).code,
        0,
        "the untouched log verifies again"
    );
}

fn edit(lines: &[&str], at: usize, f: impl Fn(&str) -> String) -> Vec<String> {
    let out: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| if i == at { f(l) } else { l.to_string() })
        .collect();
    assert_ne!(out[at], lines[at], "the edit changes the line");
    out
}

fn remove(lines: &[&str], range: std::ops::Range<usize>) -> Vec<String> {
    lines
        .iter()
        .enumerate()
        .filter(|(i, _)| !range.contains(i))
        .map(|(_, l)| l.to_string())
        .collect()
}
