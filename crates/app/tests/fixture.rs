//! Repositories written by each format version (checked in under tests/fixtures/repo-vN) must
//! keep opening, listing, restoring and checking in every later build. Both back up the same
//! small tree; version 2's also holds float32 data, stored in byte lanes.

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

/// `vectors.f32` of the version 2 fixture: float32 values in ±[1/16, 1/8) whose sign and
/// mantissa come from `pseudo_random(400_000, 7)`.
fn fixture_floats() -> Vec<u8> {
    common::pseudo_random(400_000, 7)
        .chunks_exact(4)
        .flat_map(|w| {
            let u = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            ((u & 0x8000_0000) | 0x3D80_0000 | (u & 0x007F_FFFF)).to_le_bytes()
        })
        .collect()
}

#[test]
fn format_v1_fixture_still_opens_restores_and_checks() {
    check_fixture("repo-v1", &[]);
}

#[test]
fn format_v2_fixture_still_opens_restores_and_checks() {
    check_fixture("repo-v2", &[("vectors.f32", fixture_floats())]);
}

/// Opens, checks and restores a copy of the fixture, comparing the common files and `extra`.
fn check_fixture(name: &str, extra: &[(&str, Vec<u8>)]) {
    let mut env = Env::new();
    // Work on a copy: opening takes locks, which writes into the repository.
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
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
    for (file, content) in extra {
        assert_eq!(
            &std::fs::read(root.join(file)).expect(file),
            content,
            "{file}"
        );
    }
    env.set("BULWARK_PASSWORD", "wrong");
    assert_eq!(env.run(&["snapshots"]).code, 3);
}
