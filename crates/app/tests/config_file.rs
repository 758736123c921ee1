//! bulwark.toml: sources as one backup set, config validation, history, errors with lines.

mod common;

use common::Env;

fn write_config(env: &Env, body: &str) {
    std::fs::write(env.path("bulwark.toml"), body).expect("write config");
}

#[test]
fn backup_with_no_arguments_backs_up_every_source_as_one_set() {
    let env = Env::new();
    let uploads = env.path("srv/uploads");
    let conf = env.path("etc/app");
    std::fs::create_dir_all(&uploads).expect("mkdir");
    std::fs::create_dir_all(&conf).expect("mkdir");
    std::fs::write(uploads.join("a.png"), common::pseudo_random(100_000, 3)).expect("write");
    std::fs::write(uploads.join("a.tmp"), "scratch").expect("write");
    std::fs::write(conf.join("app.yaml"), "model: gpt\nreplicas: 3\n").expect("write");
    std::fs::write(conf.join("broken.json"), "{\n  \"a\": 1,\n}\n").expect("write");
    write_config(
        &env,
        &format!(
            r#"
[repositories.main]
url = "{repo}"

[sources.uploads]
kind = "files"
paths = ["{uploads}"]
exclude = ["*.tmp"]

[sources.app-config]
kind = "config"
paths = ["{conf}"]

[sources.dump]
kind = "command"
command = "echo hello"
filename = "hello.txt"

[retention]
keep_last = 1
"#,
            repo = env.repo(),
            uploads = uploads.display(),
            conf = conf.display()
        ),
    );
    env.init();
    let out = env.ok(&["--json", "backup"]).json();
    let runs = out.as_array().expect("array");
    assert_eq!(runs.len(), 3);
    let sets: std::collections::HashSet<_> = runs
        .iter()
        .map(|r| r["set_id"].as_str().expect("set").to_string())
        .collect();
    assert_eq!(sets.len(), 1, "one set id shared by every source");
    let cfg = runs
        .iter()
        .find(|r| r["source"] == "app-config")
        .expect("config run");
    let warnings = cfg["summary"]["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0]["path"]
        .as_str()
        .expect("p")
        .ends_with("broken.json"));
    assert!(
        warnings[0]["message"]
            .as_str()
            .expect("m")
            .contains("line 3"),
        "{warnings:?}"
    );
    assert_eq!(
        cfg["summary"]["files"], 2,
        "the invalid file is still backed up"
    );
    let set = sets.into_iter().next().expect("set");
    let listed = env.ok(&["--json", "snapshots", "--set", &set[..8]]).json();
    assert_eq!(listed.as_array().expect("a").len(), 3);
    env.ok(&["restore", "--source", "uploads", "--target", "out"]);
    let restored = common::restored(&env.path("out"), &uploads);
    assert!(restored.join("a.png").exists());
    assert!(
        !restored.join("a.tmp").exists(),
        "excluded file was not backed up"
    );

    // Back up one source by name; then history shows the config file's versions.
    std::fs::write(conf.join("app.yaml"), "model: gpt\nreplicas: 5\n").expect("write");
    env.ok(&["backup", "app-config"]);
    env.ok(&["backup", "app-config"]);
    let hist = env
        .ok(&[
            "--json",
            "history",
            conf.join("app.yaml").to_str().expect("utf8"),
        ])
        .json();
    let versions = hist.as_array().expect("a");
    assert_eq!(versions.len(), 2, "{hist}");
    assert_eq!(versions[1]["snapshots"].as_array().expect("a").len(), 2);
    // [retention] applies when forget gets no flags.
    env.ok(&["forget", "--source", "app-config"]);
    assert_eq!(
        env.ok(&["--json", "snapshots", "--source", "app-config"])
            .json()
            .as_array()
            .expect("a")
            .len(),
        1
    );
}

#[test]
fn bad_config_names_file_line_and_key() {
    let env = Env::new();
    write_config(
        &env,
        "[repositories.main]\nurl = \"/tmp/x\"\n\n[sources.db]\nkind = \"database\"\n",
    );
    let r = env.run(&["snapshots"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("bulwark.toml:5:"), "{}", r.stderr);
    write_config(
        &env,
        "[sources.logs]\nkind = \"files\"\nexclude = [\"[\"]\npaths = [\"/var/log\"]\n",
    );
    let r = env.run(&["snapshots"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("bulwark.toml:3:") && r.stderr.contains("exclude"),
        "{}",
        r.stderr
    );
    write_config(&env, "[repositories.main\nurl = 1\n");
    let r = env.run(&["snapshots"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("bulwark.toml:1:"), "{}", r.stderr);
    let r = env.run(&["--config", "/nonexistent/bulwark.toml", "snapshots"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("/nonexistent/bulwark.toml"),
        "{}",
        r.stderr
    );
}

#[test]
fn relative_paths_in_the_config_file_are_relative_to_the_file() {
    let mut env = Env::new();
    let etc = env.path("etc/bulwark");
    std::fs::create_dir_all(etc.join("data")).expect("mkdir");
    std::fs::write(etc.join("data/x.txt"), "x").expect("write");
    std::fs::write(etc.join("password"), "from-file\n").expect("write");
    std::fs::write(
        etc.join("bulwark.toml"),
        "[repositories.main]\nurl = \"repo\"\npassword_file = \"password\"\n\n[sources.d]\nkind = \"files\"\npaths = [\"data\"]\n",
    )
    .expect("write");
    // Run from elsewhere, as cron does; no password or repository in the environment.
    env.set(
        "BULWARK_CONFIG",
        etc.join("bulwark.toml").to_str().expect("utf8"),
    );
    let cmd = |args: &[&str]| {
        let mut c = env.command();
        c.env_remove("BULWARK_PASSWORD")
            .env_remove("BULWARK_REPOSITORY")
            .current_dir("/");
        let out = c.args(args).output().expect("runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cmd(&["init"]);
    cmd(&["backup"]);
    assert!(
        etc.join("repo/config").exists(),
        "the repository is next to the config file"
    );
}
