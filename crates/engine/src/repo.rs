//! A repository: storage plus the master key, opened with a password.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::chunker::{Chunker, ChunkerParams};
use crate::codec;
use crate::crypto::{KdfParams, MasterKey, WrappedKey};
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::id::{ChunkId, IndexId, KeyId};
use crate::index::{self, Index, IndexBuilder, Table};
use crate::index_cache::IndexCache;
use crate::pack::PackEntry;
use crate::store::{ObjectKind, Store};

/// The version of key files and snapshots this build writes.
pub const FORMAT_VERSION: u32 = 1;

/// The repository format this build creates. Version 2 adds blob encoding 2 (byte lanes, see
/// `codec`); versions 1 and 2 are read and written, each repository in its own version, so a
/// build that knows only version 1 refuses a version 2 repository instead of misreading it.
pub const REPO_VERSION: u32 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoConfig {
    pub version: u32,
    pub id: String,
    pub created: jiff::Timestamp,
    pub chunker: ChunkerParams,
    pub tree_chunker: ChunkerParams,
    pub compression_level: i32,
    /// Packs are closed once they reach this size.
    pub pack_size: u32,
    /// Fingerprint of the id key, so `copy` knows whether chunk ids carry over.
    pub id_key_fingerprint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    pub version: u32,
    pub created: jiff::Timestamp,
    pub hostname: String,
    pub username: String,
    #[serde(default)]
    pub label: String,
    #[serde(flatten)]
    pub wrapped: WrappedKey,
}

/// The pack sizes `init` accepts. Larger packs mean fewer objects (fewer requests, which some
/// object stores bill) but more memory: a backup holds one pack per upload in flight plus one.
pub const PACK_SIZES: std::ops::RangeInclusive<u32> = (4 << 20)..=(64 << 20);

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub chunker: ChunkerParams,
    pub compression_level: i32,
    pub pack_size: u32,
    pub kdf: KdfParams,
    pub label: String,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            chunker: ChunkerParams::DATA,
            compression_level: 1,
            pack_size: 8 * 1024 * 1024,
            kdf: KdfParams::recommended(),
            label: String::new(),
        }
    }
}

struct Inner {
    store: Store,
    key: MasterKey,
    key_id: KeyId,
    config: RepoConfig,
    /// Where the live index's table is kept between runs, if anywhere (`use_index_cache`).
    index_cache: std::sync::OnceLock<IndexCache>,
}

/// Cheap to clone; threads share one.
#[derive(Clone)]
pub struct Repository(Arc<Inner>);

impl Repository {
    /// Creates a new repository. Refuses if one already exists at this location.
    pub fn init(store: Store, password: &str, opts: InitOptions) -> Result<Self> {
        Self::init_with_key(store, password, opts, MasterKey::generate())
    }

    /// Creates a repository that shares `like`'s master key and chunking, so chunk ids agree
    /// and `copy` moves blobs between the two without re-hashing (a second password still
    /// wraps it separately).
    pub fn init_like(
        store: Store,
        password: &str,
        mut opts: InitOptions,
        like: &Repository,
    ) -> Result<Self> {
        opts.chunker = like.config().chunker;
        Self::init_with_key(store, password, opts, like.key().clone())
    }

    fn init_with_key(
        store: Store,
        password: &str,
        opts: InitOptions,
        key: MasterKey,
    ) -> Result<Self> {
        opts.chunker.validate()?;
        if !PACK_SIZES.contains(&opts.pack_size) {
            return Err(Error::invalid(format!(
                "a pack size of {} MiB is out of range: packs are {} to {} MiB",
                f64::from(opts.pack_size) / f64::from(1 << 20),
                PACK_SIZES.start() >> 20,
                PACK_SIZES.end() >> 20
            )));
        }
        if store.exists(ObjectKind::Config, "")? || !store.list(ObjectKind::Key)?.is_empty() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("a repository already exists at {}", store.url()),
            ));
        }
        let config = RepoConfig {
            version: REPO_VERSION,
            id: hex::encode(rand::random::<[u8; 16]>()),
            created: jiff::Timestamp::now(),
            chunker: opts.chunker,
            tree_chunker: ChunkerParams::TREE,
            compression_level: opts.compression_level,
            pack_size: opts.pack_size,
            id_key_fingerprint: key.id_key_fingerprint(),
        };
        let key_id = write_key_file(&store, &key, password, opts.kdf, &opts.label)?;
        // The config is written last: its existence is what makes this a repository.
        let sealed = codec::encode_object(&key, &serde_json::to_vec(&config).map_err(json_err)?);
        store.write(ObjectKind::Config, "", &sealed)?;
        Ok(Self(Arc::new(Inner {
            store,
            key,
            key_id,
            config,
            index_cache: Default::default(),
        })))
    }

    /// Opens an existing repository; `WrongPassword` if no key opens with this password.
    pub fn open(store: Store, password: &str) -> Result<Self> {
        let keys = store.list(ObjectKind::Key)?;
        if keys.is_empty() {
            let what = if store.exists(ObjectKind::Config, "")? {
                "has no key files"
            } else {
                "does not exist"
            };
            return Err(Error::new(
                ErrorKind::NoRepository,
                format!("repository at {} {what}", store.url()),
            ));
        }
        let mut found = None;
        // A damaged key file may be the one this password opens: if no intact one does, say
        // so rather than blame the password.
        let mut damaged = Vec::new();
        for listed in &keys {
            let file = match read_key_file(&store, &listed.name) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::Corrupt => {
                    log::warn!("{e}");
                    damaged.push(e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            match file.wrapped.unwrap(password.as_bytes()) {
                Ok(key) => {
                    found = Some((key, listed.name.parse::<KeyId>()?));
                    break;
                }
                Err(e) if e.kind() == ErrorKind::WrongPassword => continue,
                Err(e) => return Err(e.context(format!("key file keys/{}", listed.name))),
            }
        }
        let (key, key_id) = match found {
            Some(found) => found,
            None if !damaged.is_empty() => {
                return Err(Error::corrupt(format!(
                    "no intact key file of the repository at {} opens with this password, and {} key file(s) are damaged ({}); the password may belong to one of them. Try another password, or restore the key files from a copy",
                    store.url(),
                    damaged.len(),
                    damaged.join("; ")
                )))
            }
            None => {
                return Err(Error::new(
                    ErrorKind::WrongPassword,
                    format!("wrong password for repository at {}", store.url()),
                ))
            }
        };
        let config = Self::read_config(&store, &key)?;
        if !(1..=REPO_VERSION).contains(&config.version) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("repository format version {} is not supported by this build (reads 1 to {REPO_VERSION})", config.version),
            ));
        }
        config.chunker.validate()?;
        Ok(Self(Arc::new(Inner {
            store,
            key,
            key_id,
            config,
            index_cache: Default::default(),
        })))
    }

    /// The repository's `config` object, every way it can be bad named as such.
    fn read_config(store: &Store, key: &MasterKey) -> Result<RepoConfig> {
        let damaged = |why: String| {
            Error::corrupt(format!(
                "the repository config ({}/config) is damaged: {why}; the key files are intact, so a copy of the config from a backup of the repository directory (or `bulwark copy` from an off-site copy) brings it back",
                store.url()
            ))
        };
        let sealed = match store.read(ObjectKind::Config, "") {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(damaged("it is missing".into()));
            }
            Err(e) => return Err(e.context("reading the repository config")),
        };
        let plain = codec::decode(key, &sealed, None).map_err(|e| damaged(e.to_string()))?;
        serde_json::from_slice(&plain).map_err(|e| damaged(format!("it does not parse: {e}")))
    }

    /// Keeps the live index's table in `cache` from now on (the first call wins).
    pub fn use_index_cache(&self, cache: IndexCache) {
        let _ = self.0.index_cache.set(cache);
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn key(&self) -> &MasterKey {
        &self.0.key
    }

    pub fn config(&self) -> &RepoConfig {
        &self.0.config
    }

    /// How this repository's blobs are encoded.
    pub fn codec(&self) -> crate::codec::Codec {
        crate::codec::Codec {
            level: self.0.config.compression_level,
            lanes: self.0.config.version >= 2,
        }
    }

    /// The key file this session opened the repository with.
    pub fn key_id(&self) -> KeyId {
        self.0.key_id
    }

    pub fn data_chunker(&self) -> Chunker {
        Chunker::new(self.0.config.chunker, &self.0.key.chunker_seed())
    }

    pub fn tree_chunker(&self) -> Chunker {
        Chunker::new(self.0.config.tree_chunker, &self.0.key.chunker_seed())
    }

    // ---- keys -------------------------------------------------------------------------------

    pub fn add_key(&self, password: &str, label: &str, kdf: KdfParams) -> Result<KeyId> {
        write_key_file(self.store(), self.key(), password, kdf, label)
    }

    pub fn list_keys(&self) -> Result<Vec<(KeyId, KeyFile)>> {
        let mut out = Vec::new();
        for listed in self.store().list(ObjectKind::Key)? {
            out.push((
                listed.name.parse()?,
                read_key_file(self.store(), &listed.name)?,
            ));
        }
        out.sort_by_key(|(_, k)| k.created);
        Ok(out)
    }

    /// Removes a key; refuses the key in use and the last key.
    pub fn remove_key(&self, id: KeyId) -> Result<()> {
        if id == self.key_id() {
            return Err(Error::invalid(
                "refusing to remove the key this session is using; use `key passwd` to replace it",
            ));
        }
        let keys = self.list_keys()?;
        if !keys.iter().any(|(k, _)| *k == id) {
            return Err(Error::new(ErrorKind::NotFound, format!("no key {id}")));
        }
        self.store().delete(ObjectKind::Key, &id.to_hex())
    }

    // ---- sealed objects ---------------------------------------------------------------------

    /// Seals (compresses and encrypts) `plain` and stores it under the BLAKE3 of its sealed
    /// bytes; returns that name.
    pub fn save_sealed(&self, kind: ObjectKind, plain: &[u8]) -> Result<String> {
        let sealed = codec::encode_object(self.key(), plain);
        let name = blake3::hash(&sealed).to_hex().to_string();
        self.store().write(kind, &name, &sealed)?;
        Ok(name)
    }

    /// Reads and opens a sealed object, checking that the name of a content-addressed one
    /// matches its content.
    pub fn load_sealed(&self, kind: ObjectKind, name: &str) -> Result<Vec<u8>> {
        let mut plain = Vec::new();
        self.load_sealed_into(kind, name, &mut SealedBuffers::new()?, &mut plain)?;
        Ok(plain)
    }

    /// `load_sealed` into `plain`, with reused buffers (for many objects in a row: fresh
    /// buffers cost a page fault per 4 KiB).
    pub fn load_sealed_into(
        &self,
        kind: ObjectKind,
        name: &str,
        buffers: &mut SealedBuffers,
        plain: &mut Vec<u8>,
    ) -> Result<()> {
        let SealedBuffers { sealed, decoder } = buffers;
        self.store().read_into(kind, name, sealed)?;
        if kind.content_addressed() && blake3::hash(sealed).to_hex().as_str() != name {
            return Err(Error::corrupt(format!(
                "{kind:?} {name}: content does not match its name"
            )));
        }
        decoder
            .decode_into(self.key(), sealed, codec::MAX_OBJECT_SIZE, plain)
            .with_context(|| format!("{kind:?} {name}"))
    }

    /// Seals a JSON object and stores it under the BLAKE3 of its sealed bytes.
    pub fn save_json<T: Serialize>(&self, kind: ObjectKind, value: &T) -> Result<String> {
        self.save_sealed(kind, &serde_json::to_vec(value).map_err(json_err)?)
    }

    /// Seals a JSON object and stores it under `name`, replacing what was there (for kinds
    /// that are not content-addressed: audit seals).
    pub fn save_json_as<T: Serialize>(
        &self,
        kind: ObjectKind,
        name: &str,
        value: &T,
    ) -> Result<()> {
        debug_assert!(!kind.content_addressed());
        let json = serde_json::to_vec(value).map_err(json_err)?;
        self.store()
            .write(kind, name, &codec::encode_object(self.key(), &json))
    }

    /// Loads a sealed JSON object, checking that its name matches its content.
    pub fn load_json<T: DeserializeOwned>(&self, kind: ObjectKind, name: &str) -> Result<T> {
        let plain = self.load_sealed(kind, name)?;
        serde_json::from_slice(&plain)
            .map_err(|e| Error::corrupt(format!("{kind:?} {name} does not parse: {e}")))
    }

    // ---- index ------------------------------------------------------------------------------

    pub fn save_index(&self, packs: &[(crate::id::PackId, Vec<PackEntry>)]) -> Result<IndexId> {
        self.save_sealed(ObjectKind::Index, &index::encode(packs))?
            .parse()
    }

    pub fn load_index_file(&self, id: &str) -> Result<index::IndexPacks> {
        let plain = self.load_sealed(ObjectKind::Index, id)?;
        index::decode(&plain).with_context(|| format!("index {id}"))
    }

    /// Reads every index file into one in-memory index, and then the entries of packs that
    /// prune has marked for deletion (a copy in a live pack wins). A damaged index file does
    /// not stop the others: it is skipped with a warning and named in `damaged_files`, and the
    /// chunks of its packs read as missing (`bulwark repair index` rebuilds the index from the
    /// packs' own headers). Prune and check read index files one by one and stay strict.
    ///
    /// A pack's entries are always in an index file or a mark (prune writes the new home
    /// before it removes the old), but may move while they are read: marks are read before
    /// the index files (for packs prune puts back) and after them (for packs it marks).
    pub fn load_index(&self) -> Result<Index> {
        let before = crate::marks::load_all(self)?;
        let mut live = self.load_live_index(&Default::default())?;
        let seen = before.iter().map(|m| m.name.clone()).collect();
        let after = crate::marks::load_new(self, &seen)?;
        for mark in before.iter().chain(&after) {
            mark.packs
                .iter()
                .for_each(|(p, e)| live.rest.add_pack(*p, e));
        }
        Ok(live.finish())
    }

    /// The index a writer deduplicates against: the live index without the packs prune took
    /// out of it when it marked them, so that nothing new comes to depend on them (`marked`
    /// names every marked pack, so that none is adopted either).
    /// Marks are read first: a pack marked after that was still in the index files when this
    /// writer's lock existed, and prune waits for that lock before deleting.
    pub fn load_index_for_writing(&self) -> Result<Index> {
        let marks = crate::marks::load_all(self)?;
        let live = self.load_live_index(&crate::marks::indexed_packs(&marks))?;
        let mut index = live.finish();
        index.marked = crate::marks::packs(&marks);
        Ok(index)
    }

    /// The index files' union without the packs in `skip`. A prune may compact index files
    /// while they are read; a file gone between listing and reading means the listing is
    /// stale, so it is listed again. A local cache that cannot be written (its disk is full)
    /// is done without.
    fn load_live_index(
        &self,
        skip: &std::collections::HashSet<crate::id::PackId>,
    ) -> Result<LiveIndex> {
        let (mut attempts, mut cache) = (0, self.0.index_cache.get());
        loop {
            match self.try_load_live_index(skip, cache)? {
                Loaded::Done(loaded) => return Ok(*loaded),
                Loaded::CacheFailed(e) => {
                    let dir = cache.map(|c| c.dir.display().to_string()).unwrap_or_default();
                    log::warn!("index cache in {dir}: {e}; opening the index without it");
                    cache = None;
                }
                Loaded::Vanished if attempts < 3 => attempts += 1,
                Loaded::Vanished => {
                    return Err(Error::new(
                        ErrorKind::Storage,
                        "index files kept vanishing while they were read (is a prune compacting them in a loop?)",
                    ))
                }
            }
        }
    }

    /// The live index from the local cache and the index files it does not cover, else from
    /// every index file (built into the cache: kept when nothing was left out).
    fn try_load_live_index(
        &self,
        skip: &std::collections::HashSet<crate::id::PackId>,
        cache: Option<&IndexCache>,
    ) -> Result<Loaded> {
        let listed = self.store().list(ObjectKind::Index)?;
        let key = self.key().index_cache_key();
        let id = &self.config().id;
        let cached = cache
            .and_then(|c| c.open(&key, id, &listed))
            // Packs a mark took out of the index files may still be in the files it covers.
            .filter(|c| !skip.iter().any(|p| c.table.has_pack(p)));
        let (to_read, spill): (Vec<&crate::store::Listed>, _) = match &cached {
            Some(c) => (
                listed
                    .iter()
                    .filter(|l| !c.covered.contains(&l.name))
                    .collect(),
                None,
            ),
            None => {
                let spill = cache.map(|c| c.spill_file(id)).transpose();
                match spill {
                    Ok(spill) => (listed.iter().collect(), spill),
                    Err(e) => return Ok(Loaded::CacheFailed(e)),
                }
            }
        };
        let skipped = std::sync::atomic::AtomicBool::new(false);
        let read = self.read_index_files(&to_read, spill, &|p| {
            let skip = skip.contains(p);
            if skip {
                skipped.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            skip
        })?;
        let Some((rest, damaged)) = read else {
            return Ok(Loaded::Vanished);
        };
        if let Some(c) = cached {
            log::debug!(
                "index: {} chunks from the local cache, {} index files read beside it",
                c.table.len(),
                to_read.len()
            );
            return Ok(Loaded::Done(Box::new(LiveIndex {
                base: c.table,
                rest,
                damaged,
            })));
        }
        let complete = damaged.is_empty() && !skipped.into_inner();
        let base = match cache {
            Some(cache) => {
                let keep = complete && rest.len() >= cache.min_blobs;
                if complete && !keep {
                    if let Err(e) = cache.remove(id) {
                        log::warn!("index cache in {}: {e}", cache.dir.display());
                    }
                }
                match keep || rest.spilled() {
                    true => match cache.build(&key, id, rest, &listed, keep) {
                        Ok(table) => table,
                        Err(e) => return Ok(Loaded::CacheFailed(e)),
                    },
                    false => rest.into_table(|_| false),
                }
            }
            None => rest.into_table(|_| false),
        };
        Ok(Loaded::Done(Box::new(LiveIndex {
            base,
            rest: IndexBuilder::default(),
            damaged,
        })))
    }

    /// Reads `files` on several threads (each read, opened and parsed on its own, then
    /// gathered under a lock, spilling to `spill` if given), leaving out the packs `skip`
    /// names; with the names of the damaged files. None if one vanished.
    fn read_index_files(
        &self,
        files: &[&crate::store::Listed],
        spill: Option<std::fs::File>,
        skip: &(dyn Fn(&crate::id::PackId) -> bool + Sync),
    ) -> Result<Option<(IndexBuilder, Vec<String>)>> {
        let mut builder = IndexBuilder::default();
        if let Some(file) = spill {
            builder.spill_to(file);
        }
        let loading = std::sync::Mutex::new(LoadingIndex {
            builder,
            total_bytes: files.iter().map(|l| l.size).sum(),
            ..Default::default()
        });
        let next = std::sync::atomic::AtomicUsize::new(0);
        let threads = crate::prefetch::fetchers(self.store().is_local()).min(files.len());
        std::thread::scope(|scope| {
            // On local disk the files are read ahead in the order the loaders take them.
            scope.spawn(|| {
                self.store()
                    .will_read(ObjectKind::Index, files.iter().map(|l| l.name.as_str()))
            });
            for _ in 0..threads {
                scope.spawn(|| {
                    let (mut parsed, mut plain) = (IndexBuilder::default(), Vec::new());
                    let mut buffers = SealedBuffers::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(file) = files.get(i) else { break };
                        let added = buffers.as_mut().map_err(|e| e.duplicate()).and_then(|b| {
                            self.load_sealed_into(ObjectKind::Index, &file.name, b, &mut plain)
                        });
                        let added = added.and_then(|()| {
                            parsed
                                .add_file(&plain, skip)
                                .with_context(|| format!("index {}", file.name))
                        });
                        let mut loading = loading.lock().unwrap_or_else(|p| p.into_inner());
                        if !loading.take(file, added, &mut parsed) {
                            break;
                        }
                    }
                });
            }
        });
        let loading = loading.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = loading.failed {
            return Err(e);
        }
        let mut damaged = loading.damaged;
        damaged.sort();
        Ok((!loading.vanished).then_some((loading.builder, damaged)))
    }

    /// Every pack in storage with its size (indexed or not).
    pub fn pack_sizes(&self) -> Result<std::collections::HashMap<crate::id::PackId, u64>> {
        Ok(self
            .store()
            .list(ObjectKind::Pack)?
            .into_iter()
            .filter_map(|l| l.name.parse().ok().map(|id| (id, l.size)))
            .collect())
    }

    /// Reads one blob, decrypts, decompresses and checks its id.
    pub fn read_blob(&self, idx: &Index, id: &ChunkId) -> Result<Vec<u8>> {
        let loc = idx
            .get(id)
            .ok_or_else(|| Error::corrupt(format!("chunk {id} is not in the index")))?;
        let sealed = self.store().read_range(
            ObjectKind::Pack,
            &loc.pack.to_hex(),
            loc.offset as u64..loc.offset as u64 + loc.length as u64,
        )?;
        self.decode_blob(id, &sealed, loc.raw_length)
            .with_context(|| format!("pack {}", loc.pack))
    }

    pub fn decode_blob(&self, id: &ChunkId, sealed: &[u8], raw_length: u32) -> Result<Vec<u8>> {
        let mut plain = Vec::new();
        self.decode_blob_into(
            &mut codec::Decoder::new()?,
            id,
            &mut sealed.to_vec(),
            raw_length,
            &mut plain,
        )?;
        Ok(plain)
    }

    /// `decode_blob` into reused buffers: `sealed` is opened where it lies (and overwritten),
    /// the plaintext goes to `plain`.
    pub fn decode_blob_into(
        &self,
        decoder: &mut codec::Decoder,
        id: &ChunkId,
        sealed: &mut [u8],
        raw_length: u32,
        plain: &mut Vec<u8>,
    ) -> Result<()> {
        let len = raw_length as usize;
        decoder
            .decode_into(self.key(), sealed, len, plain)
            .and_then(|()| codec::check_len(plain, Some(len)))
            .with_context(|| format!("chunk {id}"))?;
        if self.key().chunk_id(plain) != *id {
            return Err(Error::corrupt(format!(
                "chunk {id}: content does not match its id"
            )));
        }
        Ok(())
    }
}

/// The live index as loaded: its table (mapped from the local cache or built from every index
/// file), and what else was read beside it (index files the cache does not cover; marks).
struct LiveIndex {
    base: Table,
    rest: IndexBuilder,
    damaged: Vec<String>,
}

impl LiveIndex {
    fn finish(self) -> Index {
        let mut index = self.rest.finish_over(self.base);
        index.damaged_files = self.damaged;
        index
    }
}

/// What one attempt at loading the live index came to.
enum Loaded {
    Done(Box<LiveIndex>),
    /// An index file vanished while it was read: list them again.
    Vanished,
    /// The local cache could not be written: load without it.
    CacheFailed(std::io::Error),
}

/// What the threads that read index files share.
#[derive(Default)]
struct LoadingIndex {
    builder: IndexBuilder,
    /// All index files' size, and whether the builder was sized from the first one read.
    total_bytes: u64,
    sized: bool,
    damaged: Vec<String>,
    vanished: bool,
    failed: Option<Error>,
}

impl LoadingIndex {
    /// Takes what a loader made of `file` (its entries are in `parsed`); false once loading
    /// must stop (a file vanished, or a failure other than damage).
    fn take(
        &mut self,
        file: &crate::store::Listed,
        added: Result<usize>,
        parsed: &mut IndexBuilder,
    ) -> bool {
        if self.vanished || self.failed.is_some() {
            return false;
        }
        match added {
            Ok(entries) => {
                if !self.sized && file.size > 0 {
                    // Entries are mostly random ids, so every index file holds about as many
                    // per byte as the first: size the table once.
                    let per_byte = entries as f64 / file.size as f64;
                    self.builder
                        .reserve((per_byte * self.total_bytes as f64 * 1.05) as usize);
                    self.sized = true;
                }
                self.builder.append(parsed);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => self.vanished = true,
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                log::warn!("{e}; {UNTIL_REPAIRED}");
                self.damaged.push(file.name.clone());
            }
            Err(e) => self.failed = Some(e),
        }
        !self.vanished && self.failed.is_none()
    }
}

const UNTIL_REPAIRED: &str = "the data it indexes is unavailable until `bulwark repair index` runs";

/// What reading sealed objects one after another reuses.
pub struct SealedBuffers {
    sealed: Vec<u8>,
    decoder: codec::Decoder,
}

impl SealedBuffers {
    pub fn new() -> Result<Self> {
        Ok(Self {
            sealed: Vec::new(),
            decoder: codec::Decoder::new()?,
        })
    }
}

fn write_key_file(
    store: &Store,
    key: &MasterKey,
    password: &str,
    kdf: KdfParams,
    label: &str,
) -> Result<KeyId> {
    if password.is_empty() {
        return Err(Error::invalid("empty password"));
    }
    let file = KeyFile {
        version: FORMAT_VERSION,
        created: jiff::Timestamp::now(),
        hostname: hostname(),
        username: username(),
        label: label.to_string(),
        wrapped: WrappedKey::wrap(key, password.as_bytes(), kdf)?,
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(json_err)?;
    let id = KeyId::of_content(&bytes);
    store.write(ObjectKind::Key, &id.to_hex(), &bytes)?;
    Ok(id)
}

/// Reads a key file and checks it against its name (the hash of its bytes), so a changed byte
/// anywhere, label and host name included, is damage, never a wrong password.
fn read_key_file(store: &Store, name: &str) -> Result<KeyFile> {
    let bytes = store.read(ObjectKind::Key, name)?;
    if KeyId::of_content(&bytes).to_hex() != name {
        return Err(Error::corrupt(format!(
            "key file keys/{name} is damaged: its content does not match its name"
        )));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::corrupt(format!("key file keys/{name} does not parse: {e}")))
}

fn json_err(e: serde_json::Error) -> Error {
    Error::new(ErrorKind::InvalidInput, format!("cannot serialise: {e}"))
}

/// This host's name in snapshots, locks and maintenance: `BULWARK_HOSTNAME` when set (containers
/// and pods get random host names; many writers to one repository need stable ones), else the
/// system's.
pub fn hostname() -> String {
    match std::env::var("BULWARK_HOSTNAME") {
        Ok(name) if !name.trim().is_empty() => name.trim().to_string(),
        _ => gethostname::gethostname().to_string_lossy().into_owned(),
    }
}

pub fn username() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // SAFETY: getuid has no preconditions.
            format!("uid{}", unsafe { libc::getuid() })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StorageOptions;

    fn cheap() -> InitOptions {
        InitOptions {
            kdf: KdfParams::with_cost(256, 1),
            ..Default::default()
        }
    }

    #[test]
    fn init_open_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = dir.path().to_str().expect("utf8");
        let open = || Store::open(url, &StorageOptions::default()).expect("store");
        let err = Repository::open(open(), "pw").err().expect("no repo yet");
        assert_eq!(err.kind(), ErrorKind::NoRepository);
        let repo = Repository::init(open(), "pw", cheap()).expect("init");
        let again = Repository::init(open(), "pw", cheap())
            .err()
            .expect("exists");
        assert_eq!(again.kind(), ErrorKind::AlreadyExists);
        let wrong = Repository::open(open(), "nope").err().expect("wrong");
        assert_eq!(wrong.kind(), ErrorKind::WrongPassword);
        let second = repo
            .add_key("other", "ops laptop", KdfParams::with_cost(256, 1))
            .expect("add key");
        let reopened = Repository::open(open(), "other").expect("second key opens");
        assert_eq!(reopened.config().id, repo.config().id);
        assert_eq!(reopened.key().chunk_id(b"x"), repo.key().chunk_id(b"x"));
        assert!(
            repo.remove_key(repo.key_id()).is_err(),
            "cannot remove own key"
        );
        repo.remove_key(second).expect("removes other key");
        assert_eq!(repo.list_keys().expect("lists").len(), 1);
        assert!(Repository::open(open(), "other").is_err());
    }
}
