//! The local index cache against the index files it stands for: backups beside it, prune
//! compacting what it covers, and a damaged cache file.

mod common;

use common::{assert_restores, content, forget_all_but, prune, repository, start_writer};
use engine::index::Index;
use engine::index_cache::IndexCache;
use engine::repo::Repository;
use engine::store::{ObjectKind, StorageOptions, Store};

/// Every chunk and pack of the index files (read one by one, as check does) is where `index`
/// says, and `index` has nothing else.
fn assert_matches_the_index_files(repo: &Repository, index: &Index) {
    let mut chunks = 0;
    for file in repo.store().list(ObjectKind::Index).expect("list") {
        for (pack, entries) in repo.load_index_file(&file.name).expect("index file") {
            assert!(index.has_pack(&pack), "pack {pack}");
            for e in entries {
                let loc = index.get(&e.id).expect("chunk in the index");
                assert_eq!(
                    (loc.pack, loc.offset, loc.length, loc.raw_length),
                    (pack, e.offset, e.length, e.raw_length),
                    "chunk {}",
                    e.id
                );
                chunks += 1;
            }
        }
    }
    assert_eq!(index.blob_count(), chunks);
}

/// A new repository in a temporary directory, and another directory for its cache.
fn repository_and_cache_dir() -> (tempfile::TempDir, tempfile::TempDir, Repository) {
    let (dir, cache_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let repo = repository(dir.path());
    (dir, cache_dir, repo)
}

/// A cache in `dir` that keeps tables of any size.
fn cache_in(dir: &std::path::Path) -> IndexCache {
    IndexCache {
        dir: dir.to_path_buf(),
        min_blobs: 0,
    }
}

fn cache_file(dir: &std::path::Path) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(dir.join("index"))
        .expect("cache directory")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn the_cache_follows_backups_and_prune() {
    let (_dir, cache_dir, repo) = repository_and_cache_dir();
    repo.use_index_cache(cache_in(cache_dir.path()));
    let files: Vec<Vec<u8>> = (1..=10).map(content).collect();
    for f in &files {
        start_writer(&repo, f).finish().expect("backup");
    }

    // The first load reads every index file and writes the cache; the next maps it.
    let built = repo.load_index().expect("index");
    assert_eq!(built.cached_blobs(), 0);
    assert_matches_the_index_files(&repo, &built);
    let cached = repo.load_index().expect("index");
    assert_eq!(cached.cached_blobs(), cached.blob_count());
    assert_matches_the_index_files(&repo, &cached);

    // A small backup: its index file is read beside the cache.
    let small = &content(11)[..5000];
    let (last, snap) = start_writer(&repo, small).finish().expect("small backup");
    let beside = repo.load_index_for_writing().expect("index");
    assert!(
        beside.cached_blobs() > 0 && beside.cached_blobs() < beside.blob_count(),
        "{} of {}",
        beside.cached_blobs(),
        beside.blob_count()
    );
    assert_matches_the_index_files(&repo, &beside);
    assert_restores(&repo, &snap, small);

    // Prune compacts the index files the cache covers: it is rebuilt, without the packs
    // prune took out (they are in a mark until deleted).
    forget_all_but(&repo, &last);
    prune(&repo);
    let marked = repo.load_index_for_writing().expect("index");
    assert_eq!(marked.cached_blobs(), 0, "rebuilt");
    assert_matches_the_index_files(&repo, &marked);
    assert!(!marked.marked.is_empty());
    assert!(marked.marked.iter().all(|p| !marked.has_pack(p)));
    prune(&repo);
    // Deleting marked packs leaves the index files as they were: the cache stays.
    let after = repo.load_index().expect("index");
    assert_matches_the_index_files(&repo, &after);
    assert_eq!(
        repo.load_index().expect("index").cached_blobs(),
        after.blob_count()
    );
    assert_restores(&repo, &snap, small);
}

/// A cache file whose record points at the wrong offset is refused (its MAC fails), rebuilt,
/// and the restore reads the right data: a cache used without its check would send the
/// restore to the wrong bytes.
#[test]
fn a_damaged_cache_is_rebuilt_not_used() {
    let (dir, cache_dir, repo) = repository_and_cache_dir();
    let cache = cache_in(cache_dir.path());
    repo.use_index_cache(cache.clone());
    let file = content(1);
    let (_, snap) = start_writer(&repo, &file).finish().expect("backup");
    let index = repo.load_index().expect("index");

    // Move every record's offset in the cache file by 64 bytes. A record is the chunk id's
    // first 16 bytes as a number in this machine's byte order, the pack, then the offset.
    let path = cache_file(cache_dir.path());
    let mut bytes = std::fs::read(&path).expect("cache file");
    let mut moved = 0;
    for loc_id in data_chunk_ids(&repo) {
        let key = u128::from_be_bytes(loc_id.0[..16].try_into().expect("16")).to_ne_bytes();
        let at = bytes
            .windows(16)
            .position(|w| w == key)
            .expect("record in the cache file");
        let offset = &mut bytes[at + 20..at + 24];
        let shifted = u32::from_ne_bytes((&*offset).try_into().expect("4")) + 64;
        offset.copy_from_slice(&shifted.to_ne_bytes());
        moved += 1;
    }
    assert!(moved > 0);
    std::fs::write(&path, &bytes).expect("write");

    let reopened = Repository::open(
        Store::open(
            dir.path().to_str().expect("utf8"),
            &StorageOptions::default(),
        )
        .expect("store"),
        "pw",
    )
    .expect("open");
    reopened.use_index_cache(cache);
    let rebuilt = reopened.load_index().expect("index");
    assert_eq!(rebuilt.cached_blobs(), 0, "the damaged cache was used");
    assert_eq!(rebuilt.blob_count(), index.blob_count());
    assert_restores(&reopened, &snap, &file);
    assert_ne!(
        std::fs::read(&path).expect("cache file"),
        bytes,
        "rewritten"
    );
}

fn data_chunk_ids(repo: &Repository) -> Vec<engine::id::ChunkId> {
    let mut ids = Vec::new();
    for file in repo.store().list(ObjectKind::Index).expect("list") {
        for (_, entries) in repo.load_index_file(&file.name).expect("index file") {
            ids.extend(
                entries
                    .iter()
                    .filter(|e| e.kind == engine::pack::BlobKind::Data)
                    .map(|e| e.id),
            );
        }
    }
    ids
}

/// A table that fell below the size worth caching (after a prune, or a higher threshold)
/// leaves no cache file behind to be read and refused at every open.
#[test]
fn a_table_too_small_to_cache_removes_the_old_cache() {
    let (dir, cache_dir, repo) = repository_and_cache_dir();
    repo.use_index_cache(cache_in(cache_dir.path()));
    start_writer(&repo, &content(1)).finish().expect("backup");
    repo.load_index().expect("index");
    let path = cache_file(cache_dir.path());

    // Another backup beside the cache, and a threshold the table does not reach: the cache
    // is not used, and goes.
    start_writer(&repo, &content(2)).finish().expect("backup");
    let store = Store::open(
        dir.path().to_str().expect("utf8"),
        &StorageOptions::default(),
    );
    let reopened = Repository::open(store.expect("store"), "pw").expect("open");
    reopened.use_index_cache(IndexCache {
        min_blobs: usize::MAX,
        ..cache_in(cache_dir.path())
    });
    let index = reopened.load_index().expect("index");
    assert_eq!(index.cached_blobs(), 0);
    assert_matches_the_index_files(&reopened, &index);
    assert!(!path.exists(), "the old cache file stayed");
}

/// A cache directory that cannot be written (here a file stands where it should be; a full
/// disk fails the same way) costs the cache, not the open: the index is read without it.
#[test]
fn an_unwritable_cache_directory_opens_the_index_without_it() {
    let (_dir, cache_dir, repo) = repository_and_cache_dir();
    let (_, snap) = start_writer(&repo, &content(1)).finish().expect("backup");
    std::fs::write(cache_dir.path().join("index"), b"not a directory").expect("write");
    repo.use_index_cache(cache_in(cache_dir.path()));
    let index = repo.load_index().expect("index");
    assert_eq!(index.cached_blobs(), 0);
    assert_matches_the_index_files(&repo, &index);
    assert_restores(&repo, &snap, &content(1));
}
