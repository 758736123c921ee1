//! A synthetic repository of many chunks, to measure what opening a large repository costs
//! (bench/open_index.sh runs it under /usr/bin/time with a cold page cache).
//!
//! ```text
//! index_scale generate DIR CHUNKS [CHUNKS_PER_PACK]   # index files only, no pack data
//! index_scale open DIR [CACHE_DIR]                    # loads the index, prints its size and time
//! ```
//! The password is read from BULWARK_PASSWORD. Generated entries look like data chunks of the
//! default chunker in default packs: about 1 MiB raw, a little less stored, 10 to a pack
//! (8 MiB packs), in index files of 200,000 entries as prune compacts them.

use std::time::Instant;

use engine::id::{ChunkId, PackId};
use engine::pack::{BlobKind, PackEntry};
use engine::repo::{InitOptions, Repository};
use engine::store::{StorageOptions, Store};

const ENTRIES_PER_FILE: usize = 200_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let password = std::env::var("BULWARK_PASSWORD").unwrap_or_else(|_| "bench".into());
    let result = match args.get(1).map(String::as_str) {
        Some("generate") if args.len() >= 4 => generate(
            &args[2],
            &password,
            args[3].parse().expect("CHUNKS is a number"),
            args.get(4)
                .map_or(10, |n| n.parse().expect("CHUNKS_PER_PACK is a number")),
        ),
        Some("open") if (3..=4).contains(&args.len()) => {
            open(&args[2], args.get(3).map(String::as_str), &password)
        }
        _ => {
            eprintln!(
                "usage: index_scale generate DIR CHUNKS [CHUNKS_PER_PACK] | open DIR [CACHE_DIR]"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn generate(dir: &str, password: &str, chunks: usize, per_pack: usize) -> engine::Result<()> {
    let store = Store::create(dir, &StorageOptions::default())?;
    let repo = Repository::init(store, password, InitOptions::default())?;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // xorshift: reproducible sizes without a dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut file = Vec::new();
    let mut in_file = 0;
    let mut made = 0;
    while made < chunks {
        let mut entries = Vec::with_capacity(per_pack);
        let mut offset = 0u32;
        for _ in 0..per_pack.min(chunks - made) {
            let raw_length = (512 << 10) + (next() % (1 << 20)) as u32;
            let length = raw_length - (next() % (raw_length as u64 / 4)) as u32;
            entries.push(PackEntry {
                kind: BlobKind::Data,
                id: ChunkId::random(),
                offset,
                length,
                raw_length,
            });
            offset += length;
            made += 1;
        }
        in_file += entries.len();
        file.push((PackId::random(), entries));
        if in_file >= ENTRIES_PER_FILE || made == chunks {
            repo.save_index(&file)?;
            file.clear();
            in_file = 0;
        }
    }
    println!("{made} chunks in {dir}");
    Ok(())
}

fn open(dir: &str, cache: Option<&str>, password: &str) -> engine::Result<()> {
    let started = Instant::now();
    let repo = Repository::open(Store::open(dir, &StorageOptions::default())?, password)?;
    if let Some(cache) = cache {
        repo.use_index_cache(engine::index_cache::IndexCache {
            dir: cache.into(),
            min_blobs: engine::index_cache::IndexCache::MIN_BLOBS,
        });
    }
    let keyed = started.elapsed();
    let index = repo.load_index()?;
    println!(
        "{} chunks ({} from the cache); key {:.2} s, index {:.2} s, total {:.2} s",
        index.blob_count(),
        index.cached_blobs(),
        keyed.as_secs_f64(),
        (started.elapsed() - keyed).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
