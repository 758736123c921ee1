//! PostgreSQL connector against real servers: Debian's PostgreSQL 15 and PostgreSQL 18 with
//! pgvector. Logical round trips are compared by dumping both sides.

mod common;

use common::postgres::{Flavor, PgServer};
use common::Env;

/// A repository and a bulwark.toml with one postgres source pointing at `server`.
fn env_for(server: &PgServer, extra: &str) -> Env {
    let env = Env::new();
    env.init();
    let config = format!(
        "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n{extra}",
        server.url(),
        server.password_file().display()
    );
    std::fs::write(env.path("bulwark.toml"), config).expect("config");
    env
}

/// Two databases, a role owning objects, an extension, odd names and types.
fn populate(pg: &PgServer) {
    pg.sql("postgres", "CREATE ROLE alice LOGIN PASSWORD 'alice-pw'");
    pg.sql("postgres", "CREATE DATABASE app OWNER alice");
    pg.sql("postgres", "CREATE DATABASE \"analytics db\"");
    pg.sql(
        "app",
        "CREATE EXTENSION pgcrypto; \
         CREATE TABLE public.messages (id bigserial PRIMARY KEY, body text, at timestamptz DEFAULT now(), \
           score float8, digest bytea); \
         INSERT INTO messages (body, score, digest) \
           SELECT 'message ' || g, g / 7.0, digest('m' || g, 'sha256') FROM generate_series(1, 20000) g; \
         CREATE SCHEMA \"Mixed Case\"; \
         CREATE TABLE \"Mixed Case\".\"Odd \"\"Table\"\"\" (k text PRIMARY KEY, v jsonb); \
         INSERT INTO \"Mixed Case\".\"Odd \"\"Table\"\"\" VALUES ('a', '{\"x\": 1}'), ('b', NULL); \
         ALTER TABLE messages OWNER TO alice; \
         CREATE VIEW recent AS SELECT * FROM messages WHERE id > 19990;",
    );
    pg.sql(
        "analytics db",
        "CREATE TABLE events (id int, kind text); \
         INSERT INTO events SELECT g, 'kind' || (g % 5) FROM generate_series(1, 5000) g;",
    );
}

#[test]
fn logical_round_trip_with_several_databases_roles_and_extensions() {
    let Some(source) = PgServer::start(Flavor::Debian15) else {
        return;
    };
    let Some(target) = PgServer::start(Flavor::Debian15) else {
        return;
    };
    populate(&source);
    // The source prints rows differently from the target (time zone, bytea format): the
    // checksums must still match, because verification reads them back in the dump's settings.
    for sql in [
        "ALTER SYSTEM SET timezone = 'Asia/Kolkata'",
        "ALTER SYSTEM SET bytea_output = 'escape'",
        "SELECT pg_reload_conf()",
    ] {
        source.sql("postgres", sql);
    }
    let mut env = env_for(&source, "jobs = 2\n");
    let r = env.ok(&["backup", "--json"]).json();
    let snap = &r[0];
    assert!(snap["error"].is_null(), "{snap}");
    // Back to the defaults, so the text dumps compared below print alike.
    for sql in [
        "ALTER SYSTEM RESET timezone",
        "ALTER SYSTEM RESET bytea_output",
        "SELECT pg_reload_conf()",
    ] {
        source.sql("postgres", sql);
    }
    let listing = env.ok(&["ls", "latest"]).stdout;
    for item in [
        "logical/databases/app.dump",
        "logical/databases/analytics%20db.dump",
        "logical/databases/postgres.dump",
        "logical/globals.sql",
    ] {
        assert!(listing.contains(item), "{item} missing from:\n{listing}");
    }

    env.set("PGPASSWORD", common::postgres::SUPERUSER_PASSWORD);
    let r = env
        .ok(&[
            "restore",
            "--target",
            &target.url(),
            "--globals",
            "--create",
            "--database",
            "app",
            "--database",
            "analytics db",
            "--json",
        ])
        .json();
    let dbs = r["report"]["databases"].as_array().expect("databases");
    assert_eq!(dbs.len(), 2, "{r}");
    for (d, tables) in dbs.iter().zip([2, 1]) {
        assert_eq!(d["action"], "create", "{d}");
        assert_eq!(d["tables_verified"], tables, "{d}");
        assert_eq!(d["mismatches"].as_array().map(Vec::len), Some(0), "{d}");
    }
    for db in ["app", "analytics db"] {
        assert_eq!(source.dump_text(db), target.dump_text(db), "{db} differs");
    }
    assert_eq!(
        target.sql(
            "postgres",
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'alice'"
        ),
        "t"
    );
    assert_eq!(
        target.sql(
            "app",
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'messages'"
        ),
        "alice"
    );
    // The role's password came along: alice can log in to the restored server.
    let mut c = target.client("psql");
    c.env("PGUSER", "alice")
        .env("PGPASSWORD", "alice-pw")
        .args([
            "-X",
            "-A",
            "-t",
            "-d",
            "app",
            "-c",
            "SELECT count(*) FROM messages",
        ]);
    let out = c.output().expect("psql");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "20000");

    // A restore whose data comes out different is reported, table by table: here an event
    // trigger on the target rewrites one row as pg_restore loads it (same row count).
    target.sql(
        "app",
        "CREATE FUNCTION public.tamper_row() RETURNS trigger LANGUAGE plpgsql AS \
           $$ BEGIN IF NEW.id = 7 THEN NEW.body := 'tampered'; END IF; RETURN NEW; END $$; \
         CREATE FUNCTION public.arm_tamper() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() \
               WHERE object_identity = 'public.messages' AND command_tag = 'CREATE TABLE') THEN \
             CREATE TRIGGER tamper BEFORE INSERT ON public.messages \
               FOR EACH ROW EXECUTE FUNCTION public.tamper_row(); \
           END IF; END $$; \
         CREATE EVENT TRIGGER arm ON ddl_command_end EXECUTE FUNCTION public.arm_tamper();",
    );
    let r = env.run(&[
        "restore",
        "--target",
        &target.url(),
        "--database",
        "app",
        "--clean",
        "--json",
    ]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    let r = r.json();
    let mismatches = &r["report"]["databases"][0]["mismatches"];
    assert_eq!(mismatches.as_array().map(Vec::len), Some(1), "{r}");
    let m = &mismatches[0];
    assert_eq!(m["table"], "public.messages", "{m}");
    assert_eq!(m["expected"]["rows"], 20000, "{m}");
    assert_eq!(m["actual"]["rows"], 20000, "{m}");
    assert_ne!(m["expected"]["checksum"], m["actual"]["checksum"], "{m}");
    assert_eq!(
        target.sql("app", "SELECT body FROM messages WHERE id = 7"),
        "tampered"
    );
}

/// Logs in to `server` as `user` with `password`; true if the server lets it in.
fn can_log_in(server: &PgServer, user: &str, password: &str) -> bool {
    let mut c = server.client("psql");
    c.env("PGUSER", user)
        .env("PGPASSWORD", password)
        .args(["-X", "-A", "-t", "-d", "postgres", "-c", "SELECT 1"]);
    c.output().expect("psql").status.success()
}

/// The disaster case: the backup's roles replayed into a new server whose superuser has
/// another password. Every database comes back, the superuser's password is the target's
/// still, a role the target already had keeps its password, and new roles get theirs.
#[test]
fn globals_into_a_server_with_another_admin_password_keep_its_passwords() {
    let Some(source) = PgServer::start(Flavor::Debian15) else {
        return;
    };
    let Some(target) = PgServer::start_with_password(Flavor::Debian15, "target-admin-pw") else {
        return;
    };
    populate(&source);
    source.sql("postgres", "CREATE ROLE bob LOGIN PASSWORD 'bob-source-pw'");
    target.sql("postgres", "CREATE ROLE bob LOGIN PASSWORD 'bob-target-pw'");
    let mut env = env_for(&source, "");
    env.ok(&["backup"]);

    env.set("PGPASSWORD", "target-admin-pw");
    let r = env.run(&[
        "restore",
        "--target",
        &target.url(),
        "--globals",
        "--create",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = r.json();
    let restored: Vec<&str> = r["report"]["databases"]
        .as_array()
        .expect("databases")
        .iter()
        .filter_map(|d| d["database"].as_str())
        .collect();
    assert_eq!(restored, ["analytics db", "app", "postgres"], "{r}");
    let skipped = &r["report"]["globals_skipped"];
    assert_eq!(skipped["connecting_role"], "postgres", "{r}");
    assert_eq!(skipped["kept_passwords"], serde_json::json!(["bob"]), "{r}");
    for db in ["app", "analytics db"] {
        assert_eq!(source.dump_text(db), target.dump_text(db), "{db} differs");
    }
    assert!(can_log_in(&target, "postgres", "target-admin-pw"));
    assert!(!can_log_in(
        &target,
        "postgres",
        common::postgres::SUPERUSER_PASSWORD
    ));
    assert!(can_log_in(&target, "bob", "bob-target-pw"));
    assert!(can_log_in(&target, "alice", "alice-pw"));

    // Asked to, existing roles take the backup's passwords; the connecting role still not.
    env.ok(&[
        "restore",
        "--target",
        &target.url(),
        "--globals",
        "--replace-passwords",
        "--database",
        "app",
        "--clean",
    ]);
    assert!(can_log_in(&target, "bob", "bob-source-pw"));
    assert!(can_log_in(&target, "postgres", "target-admin-pw"));
}

#[test]
fn parallel_restore_clean_and_refusals() {
    let Some(source) = PgServer::start(Flavor::Debian15) else {
        return;
    };
    let Some(target) = PgServer::start(Flavor::Debian15) else {
        return;
    };
    populate(&source);
    let mut env = env_for(&source, "databases = [\"app\"]\nverify = \"counts\"\n");
    env.ok(&["backup"]);
    env.set("PGPASSWORD", common::postgres::SUPERUSER_PASSWORD);
    let url = target.url();

    // Missing database without --create: a usage error, nothing written.
    let r = env.run(&["restore", "--target", &url]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--create"), "{}", r.stderr);

    target.sql("postgres", "CREATE ROLE alice");
    let r = env.ok(&["restore", "--target", &url, "--create", "--jobs", "2"]);
    assert!(r.stdout.contains("0 mismatch"), "{}", r.stdout);
    assert_eq!(source.dump_text("app"), target.dump_text("app"));

    // Now the database has objects: refuse without --clean, and change nothing.
    target.sql(
        "app",
        "INSERT INTO messages (body) VALUES ('written after the restore')",
    );
    let r = env.run(&["restore", "--target", &url]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("not empty") && r.stderr.contains("--clean"),
        "{}",
        r.stderr
    );
    assert_eq!(target.sql("app", "SELECT count(*) FROM messages"), "20001");

    let r = env
        .ok(&[
            "restore", "--target", &url, "--clean", "--jobs", "2", "--json",
        ])
        .json();
    assert_eq!(r["report"]["databases"][0]["action"], "clean", "{r}");
    assert_eq!(target.sql("app", "SELECT count(*) FROM messages"), "20000");
    assert_eq!(source.dump_text("app"), target.dump_text("app"));

    // A database the snapshot does not have is named as such.
    let r = env.run(&[
        "restore",
        "--target",
        &url,
        "--database",
        "nope",
        "--create",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no database 'nope'"), "{}", r.stderr);
}

/// A pg_dump that dies midway (here: killed after 1 MB) must fail the backup, record no
/// snapshot and leave the repository consistent.
#[test]
fn a_killed_pg_dump_fails_the_backup() {
    let Some(source) = PgServer::start(Flavor::Debian15) else {
        return;
    };
    populate(&source);
    source.sql(
        "app",
        "INSERT INTO messages (body) SELECT repeat(md5(g::text), 20) FROM generate_series(1, 20000) g",
    );
    let env = Env::new();
    let tools = env.path("tools");
    std::fs::create_dir(&tools).expect("tools dir");
    for tool in ["psql", "pg_dumpall"] {
        std::os::unix::fs::symlink(source.bin.join(tool), tools.join(tool)).expect("link");
    }
    let wrapper = format!(
        "#!/bin/sh\ncase \"$1\" in --version) exec {real} --version;; esac\n{real} \"$@\" | head -c 1000000\nkill -9 $$\n",
        real = source.bin.join("pg_dump").display()
    );
    std::fs::write(tools.join("pg_dump"), wrapper).expect("wrapper");
    std::fs::set_permissions(
        tools.join("pg_dump"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    env.init();
    std::fs::write(
        env.path("bulwark.toml"),
        format!(
            "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\nbin_dir = \"{}\"\ndatabases = [\"app\"]\n",
            source.url(),
            source.password_file().display(),
            tools.display()
        ),
    )
    .expect("config");
    let r = env.run(&["backup"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("pg_dump of database app") && r.stderr.contains("killed by a signal"),
        "{}",
        r.stderr
    );
    let snaps = env.ok(&["snapshots", "--json"]).json();
    assert_eq!(snaps.as_array().map(Vec::len), Some(0), "{snaps}");
    env.ok(&["check", "--read-data"]);
}

#[test]
fn wrong_password_and_unreachable_server_are_clear_errors() {
    let Some(source) = PgServer::start(Flavor::Debian15) else {
        return;
    };
    let env = Env::new();
    env.init();
    let bad_pw = env.path("bad-pw");
    std::fs::write(&bad_pw, "nope\n").expect("pw");
    std::fs::write(
        env.path("bulwark.toml"),
        format!(
            "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\npassword_file = \"{}\"\n\n[sources.gone]\nkind = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:1/postgres\"\n",
            source.url(),
            bad_pw.display()
        ),
    )
    .expect("config");
    let r = env.run(&["backup", "pg"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("rejected the password"), "{}", r.stderr);
    assert!(!r.stderr.contains("nope"), "password leaked: {}", r.stderr);
    let r = env.run(&["backup", "gone"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("is the server running"), "{}", r.stderr);
}

/// pgvector on PostgreSQL 18: the vectors and nearest-neighbour answers survive. (The wheel's
/// pgvector uses AVX-512 in its array cast and index builds, which crash with SIGILL on CPUs
/// without it, so vectors are built from text and the top-K query is an exact scan.)
#[test]
fn pgvector_round_trip_on_postgres_18() {
    let Some(source) = PgServer::start(Flavor::Vector18) else {
        return;
    };
    let Some(target) = PgServer::start(Flavor::Vector18) else {
        return;
    };
    source.sql("postgres", "CREATE DATABASE rag");
    source.sql(
        "rag",
        "CREATE EXTENSION vector; \
         CREATE TABLE chunks (id int PRIMARY KEY, doc text, embedding vector(8)); \
         INSERT INTO chunks SELECT g, 'doc ' || g, \
           (SELECT '[' || string_agg(sin(g * k)::real::text, ',') || ']' FROM generate_series(1, 8) k)::vector \
           FROM generate_series(1, 3000) g; \
         CREATE INDEX ON chunks (doc);",
    );
    let top_k = "SELECT string_agg(id::text, ',') FROM (SELECT id FROM chunks \
                 ORDER BY embedding <-> (SELECT embedding FROM chunks WHERE id = 42) LIMIT 10) t";
    let expected = source.sql("rag", top_k);
    let mut env = env_for(
        &source,
        &format!(
            "databases = [\"rag\"]\nbin_dir = \"{}\"\n",
            source.bin.display()
        ),
    );
    env.ok(&["backup"]);
    env.set("PGPASSWORD", common::postgres::SUPERUSER_PASSWORD);
    let r = env
        .ok(&["restore", "--target", &target.url(), "--create", "--json"])
        .json();
    assert_eq!(
        r["report"]["databases"][0]["mismatches"]
            .as_array()
            .map(Vec::len),
        Some(0),
        "{r}"
    );
    assert_eq!(source.dump_text("rag"), target.dump_text("rag"));
    assert_eq!(target.sql("rag", top_k), expected);
    assert_eq!(
        target.sql(
            "rag",
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ),
        source.sql(
            "rag",
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        )
    );
}
