//! What the engine's integration tests share: repositories, writers, prune, restores.
#![allow(dead_code)] // each test binary uses its own part

use std::io::Cursor;
use std::time::Duration;

use engine::backup::{BackupOptions, SnapshotWriter};
use engine::check::{CheckOptions, ReadData};
use engine::crypto::KdfParams;
use engine::items::{Item, ItemKind};
use engine::progress::Reporter;
use engine::prune::{PruneOptions, PruneReport};
use engine::repo::{InitOptions, Repository};
use engine::restore::RestoreOptions;
use engine::snapshot::SourceInfo;
use engine::store::{ObjectKind, StorageOptions, Store};

/// 3 MiB of pseudo-random bytes (incompressible, unique per seed).
pub fn content(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..(3 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn repository(dir: &std::path::Path) -> Repository {
    let store =
        Store::create(dir.to_str().expect("utf8"), &StorageOptions::default()).expect("store");
    let opts = InitOptions {
        kdf: KdfParams::with_cost(256, 1),
        ..Default::default()
    };
    Repository::init(store, "pw", opts).expect("init")
}

/// A writer that has stored `file` (as far as its index tells) but not finished yet.
pub fn start_writer(repo: &Repository, file: &[u8]) -> SnapshotWriter {
    let info = SourceInfo {
        name: "app".into(),
        kind: "files".into(),
    };
    let mut w = SnapshotWriter::new(repo, info, vec!["d".into()], BackupOptions::default())
        .expect("writer");
    w.put_dir(Item::new("d", ItemKind::Dir)).expect("dir");
    let mut item = Item::new("d/file", ItemKind::File);
    item.size = file.len() as u64;
    item.mode = 0o100644;
    let file = file.to_vec();
    w.put_file(item, move || Ok(Cursor::new(file.clone())))
        .expect("file");
    w
}

pub fn prune(repo: &Repository) -> PruneReport {
    engine::prune::prune(
        repo,
        &PruneOptions {
            dry_run: false,
            max_unused: 0.0,
            lock_wait: Duration::ZERO,
            exclusive: false,
            grace: Some(Duration::ZERO),
            progress: Reporter::none(),
        },
    )
    .expect("prune")
}

pub fn forget_all_but(repo: &Repository, keep: &engine::id::SnapshotId) {
    for listed in repo.store().list(ObjectKind::Snapshot).expect("list") {
        if listed.name != keep.to_hex() {
            repo.store()
                .delete(ObjectKind::Snapshot, &listed.name)
                .expect("forget");
        }
    }
}

pub fn assert_restores(repo: &Repository, snap: &engine::snapshot::Snapshot, want: &[u8]) {
    let out = tempfile::tempdir().expect("tempdir");
    let opts = RestoreOptions {
        target: out.path().to_path_buf(),
        ..Default::default()
    };
    let summary = engine::restore::restore(repo, snap, &opts).expect("restore");
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert!(
        std::fs::read(out.path().join("d/file")).expect("restored") == want,
        "restored other data"
    );
    let report = engine::check::check(
        repo,
        &CheckOptions {
            read_data: ReadData::All,
            progress: Reporter::none(),
        },
    )
    .expect("check");
    assert!(report.ok(), "{:?}", report.errors);
}
