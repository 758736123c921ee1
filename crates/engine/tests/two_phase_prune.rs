//! Prune's two-phase deletion against writers that run beside it, step by step: the
//! interleavings that a concurrent test only meets by chance.

mod common;

use std::time::Duration;

use common::{assert_restores, content, forget_all_but, prune, repository, start_writer};
use engine::lock::{LockGuard, LockKind};
use engine::progress::Reporter;
use engine::prune::PruneOptions;

/// A repository with two snapshots: the first of content A, the second (returned) of B.
fn two_snapshots() -> (
    tempfile::TempDir,
    engine::repo::Repository,
    Vec<u8>,
    engine::id::SnapshotId,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = repository(dir.path());
    let (a, b) = (content(1), content(2));
    start_writer(&repo, &a).finish().expect("first");
    let (second, _) = start_writer(&repo, &b).finish().expect("second");
    (dir, repo, a, second)
}

/// A writer that read the index before prune marked a pack may reuse that pack's chunks:
/// prune must not delete it while that writer runs, and must put it back once the writer's
/// snapshot uses it.
#[test]
fn a_pack_reused_by_a_writer_that_started_before_the_mark_survives() {
    let (_dir, repo, a, second) = two_snapshots();

    // A writer starts (its lock first, as `backup::run` takes it) and reuses A's chunks.
    let lock = LockGuard::acquire(&repo, LockKind::Shared, "backup", Duration::ZERO).expect("lock");
    let writer = start_writer(&repo, &a);
    // Meanwhile the first snapshot is forgotten and prune marks the pack only it used.
    forget_all_but(&repo, &second);
    // (Two packs: A's data and the first snapshot's item list.)
    let marked = prune(&repo);
    assert_eq!(marked.packs_marked, 2, "{marked:?}");
    // The mark is due by age (grace 0) but the writer still runs: nothing is deleted.
    let waiting = prune(&repo);
    assert_eq!(
        (waiting.packs_deleted, waiting.packs_pending),
        (0, 2),
        "{waiting:?}"
    );
    let (_, snap) = writer.finish().expect("third");
    drop(lock);
    assert_eq!(snap.summary.data_added, 0, "A was reused, not stored again");
    // The writer's snapshot uses both marked packs (its item list equals the first
    // snapshot's): they go back into the index, not away.
    let resolved = prune(&repo);
    assert_eq!(
        (resolved.packs_deleted, resolved.packs_unmarked),
        (0, 2),
        "{resolved:?}"
    );
    assert_restores(&repo, &snap, &a);
}

/// A writer that starts after the mark does not reuse marked chunks: it stores them again, and
/// the marked pack is deleted even while that writer runs.
#[test]
fn a_writer_that_starts_after_the_mark_stores_marked_data_again() {
    let (_dir, repo, a, second) = two_snapshots();
    forget_all_but(&repo, &second);
    let marked = prune(&repo);
    assert_eq!(marked.packs_marked, 2, "{marked:?}");

    let lock = LockGuard::acquire(&repo, LockKind::Shared, "backup", Duration::ZERO).expect("lock");
    let writer = start_writer(&repo, &a);
    // Its lock was not there when the mark was made: the mark is due at once.
    let deleted = prune(&repo);
    assert_eq!(deleted.packs_deleted, 2, "{deleted:?}");
    let (_, snap) = writer.finish().expect("third");
    drop(lock);
    assert!(
        snap.summary.data_added >= a.len() as u64,
        "{:?}",
        snap.summary
    );
    assert_restores(&repo, &snap, &a);
}

/// Maintenance refuses hosts other than the owner.
#[test]
fn only_the_owner_prunes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = repository(dir.path());
    engine::maintenance::set(&repo, Some("elsewhere"), None).expect("set owner");
    let err = engine::prune::prune(
        &repo,
        &PruneOptions {
            dry_run: false,
            max_unused: 0.2,
            lock_wait: Duration::ZERO,
            exclusive: false,
            grace: None,
            progress: Reporter::none(),
        },
    )
    .expect_err("not the owner");
    assert_eq!(err.kind(), engine::ErrorKind::Locked, "{err}");
    assert!(err.to_string().contains("'elsewhere'"), "{err}");
}

/// A pack can be in two marks: marked unindexed while its writer still ran, then marked again,
/// with its entries, once indexed and unused. It may be deleted only when both marks are due:
/// here the first is due (its writer has ended) while the second waits for a writer that
/// reused the pack.
#[test]
fn a_pack_in_two_marks_waits_for_both() {
    let (_dir, repo, a, second) = two_snapshots();
    // The earlier history: A's pack marked while unindexed, and a writer that was running then.
    let earlier =
        LockGuard::acquire(&repo, LockKind::Shared, "backup", Duration::ZERO).expect("lock");
    let index = repo.load_index().expect("index");
    let a_pack = index
        .locations()
        .find(|loc| loc.kind == engine::pack::BlobKind::Data && loc.length > (1 << 19))
        .map(|loc| loc.pack)
        .expect("a data pack");
    let meta = engine::marks::MarkMeta {
        time: jiff::Timestamp::now(),
        hostname: "h".into(),
        locks: Some(vec![earlier.name()]),
    };
    engine::marks::save(&repo, &meta, &vec![(a_pack, Vec::new())]).expect("orphan mark");

    // A writer reuses A; the first snapshot is forgotten; prune marks A's pack again.
    let lock = LockGuard::acquire(&repo, LockKind::Shared, "backup", Duration::ZERO).expect("lock");
    let writer = start_writer(&repo, &a);
    forget_all_but(&repo, &second);
    prune(&repo);
    drop(earlier);
    let waiting = prune(&repo);
    assert_eq!(waiting.packs_deleted, 0, "{waiting:?}");
    let (_, snap) = writer.finish().expect("third");
    drop(lock);
    prune(&repo);
    assert_restores(&repo, &snap, &a);
}

/// A writer that started before the mark reuses a small part of a marked pack. The run that
/// finds the pack used again moves that part to a new pack and marks the old one again, so
/// the next run deletes it (putting it back into the index would take a run to repack it and
/// another to delete it).
#[test]
fn a_marked_pack_reused_in_small_part_is_repacked_at_once() {
    let (_dir, repo, a, second) = two_snapshots();

    let lock = LockGuard::acquire(&repo, LockKind::Shared, "backup", Duration::ZERO).expect("lock");
    let part = &a[..a.len() * 2 / 3];
    let writer = start_writer(&repo, part);
    forget_all_but(&repo, &second);
    let marked = prune(&repo);
    assert_eq!(marked.packs_marked, 2, "{marked:?}");
    let (_, snap) = writer.finish().expect("third");
    drop(lock);
    assert!(
        snap.summary.data_added < part.len() as u64,
        "the writer reused some of A: {:?}",
        snap.summary
    );

    // A's pack is used in part: repacked and marked again; the first item list is deleted.
    let resolved = prune(&repo);
    assert_eq!(
        (
            resolved.packs_unmarked,
            resolved.packs_repacked,
            resolved.packs_deleted
        ),
        (0, 1, 1),
        "{resolved:?}"
    );
    let settled = prune(&repo);
    assert_eq!(
        (settled.packs_deleted, settled.packs_pending),
        (1, 0),
        "{settled:?}"
    );
    assert_restores(&repo, &snap, part);
    let nothing = prune(&repo);
    assert_eq!(
        (nothing.packs_marked, nothing.packs_deleted),
        (0, 0),
        "{nothing:?}"
    );
}
