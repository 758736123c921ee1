//! A repository written by format version 1 (checked in under tests/fixtures/repo-v1) must keep
//! opening, listing, restoring and checking in every later build.

mod common;

use common::Env;

const FIXTURE_PASSWORD: &str = "bulwark-fixture";

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

#[test]
fn format_v1_fixture_still_opens_restores_and_checks() {
    let mut env = Env::new();
    // Work on a copy: opening takes locks, which writes into the repository.
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repo-v1"),
        &env.path("repo"),
    );
    env.set("BULWARK_PASSWORD", FIXTURE_PASSWORD);
    let snaps = env.ok(&["--json", "snapshots"]).json();
    let snaps = snaps.as_array().expect("array");
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["tags"][0], "fixture");
    assert_eq!(snaps[0]["paths"][0], "/tmp/bulwark-fixture-src");
    env.ok(&["check", "--read-data"]);
    env.ok(&["restore", "--target", "out"]);
    let root = env.path("out/tmp/bulwark-fixture-src");
    assert_eq!(
        std::fs::read_to_string(root.join("hello.txt")).expect("hello"),
        "hello fixture\n"
    );
    assert_eq!(
        std::fs::read(root.join("nested/data.bin")).expect("data"),
        common::pseudo_random(200_000, 42)
    );
    assert_eq!(
        std::fs::read_link(root.join("link")).expect("link"),
        std::path::PathBuf::from("hello.txt")
    );
    env.set("BULWARK_PASSWORD", "wrong");
    assert_eq!(env.run(&["snapshots"]).code, 3);
}
