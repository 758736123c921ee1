//! Directory trees (uploads, workspaces, logs) and config files.
//!
//! Paths are stored absolute without the leading '/', the parents of each root included, so a
//! restore to `--target DIR` recreates `DIR/srv/uploads/...`. The walk visits directory entries
//! sorted by name, which is the item stream's order and lets the writer reuse unchanged files
//! from the parent snapshot without reading them.

pub mod connector;

pub use connector::FilesConnector;

use std::collections::HashSet;
use std::fs::{self, Metadata};
use std::io::Cursor;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::backup::{SnapshotWriter, Source};
use crate::connectors::config::validate_syntax;
use crate::connectors::Kind;
use crate::error::{Error, ErrorKind, Result};
use crate::filter::PathFilter;
use crate::items::{Item, ItemKind};
use crate::snapshot::SourceInfo;

/// Config files larger than this are backed up but not syntax-checked.
const MAX_VALIDATED_SIZE: u64 = 16 * 1024 * 1024;

pub struct FilesSource {
    info: SourceInfo,
    roots: Vec<PathBuf>,
    include: PathFilter,
    exclude: PathFilter,
    validate: bool,
}

impl FilesSource {
    /// `kind` is files or config; config sources check each YAML/JSON/TOML file's syntax.
    pub fn new(
        name: &str,
        kind: Kind,
        roots: &[PathBuf],
        include: &[String],
        exclude: &[String],
    ) -> Result<Self> {
        if roots.is_empty() {
            return Err(Error::invalid(format!("source '{name}' names no paths")));
        }
        let mut abs = Vec::new();
        for r in roots {
            let p = std::path::absolute(r)
                .map_err(|e| Error::from(e).context(r.display().to_string()))?;
            fs::symlink_metadata(&p).map_err(|e| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("cannot back up {}: {e}", p.display()),
                )
            })?;
            abs.push(normalize(&p));
        }
        abs.sort_by(|a, b| a.components().cmp(b.components()));
        abs.dedup();
        // A root inside another root is already covered.
        let mut kept: Vec<PathBuf> = Vec::new();
        for p in abs {
            if !kept.iter().any(|k| p.starts_with(k)) {
                kept.push(p);
            }
        }
        Ok(Self {
            info: SourceInfo::new(name, kind),
            roots: kept,
            include: PathFilter::new(include)?,
            exclude: PathFilter::new(exclude)?,
            validate: kind == Kind::Config,
        })
    }

    fn walk(&self, w: &mut SnapshotWriter, path: &Path, stored: String) -> Result<()> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                w.item_error(&stored, format!("cannot stat: {e}"));
                return Ok(());
            }
        };
        if self.exclude.matches(&stored) {
            return Ok(());
        }
        let ft = meta.file_type();
        if ft.is_dir() {
            w.put_dir(item_from(&stored, ItemKind::Dir, &meta))?;
            let mut entries = Vec::new();
            match fs::read_dir(path) {
                // An entry that cannot be read must not vanish silently: the snapshot goes
                // partial and keeps every entry that could be listed.
                Ok(rd) => {
                    for entry in rd {
                        match entry {
                            Ok(e) => entries.push(e.file_name()),
                            Err(e) => w.item_error(&stored, format!("cannot list an entry: {e}")),
                        }
                    }
                }
                Err(e) => {
                    w.item_error(&stored, format!("cannot list directory: {e}"));
                    return Ok(());
                }
            }
            entries.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
            for name in entries {
                let Some(n) = name.to_str() else {
                    w.item_error(
                        &format!("{stored}/{}", name.to_string_lossy()),
                        "file name is not UTF-8; skipped",
                    );
                    continue;
                };
                let child = if stored.is_empty() {
                    n.to_string()
                } else {
                    format!("{stored}/{n}")
                };
                self.walk(w, &path.join(&name), child)?;
            }
        } else if ft.is_symlink() {
            if !self.include.is_empty() && !self.include.matches(&stored) {
                return Ok(());
            }
            let mut item = item_from(&stored, ItemKind::Symlink, &meta);
            match fs::read_link(path) {
                Ok(t) => item.target = Some(t.to_string_lossy().into_owned()),
                Err(e) => {
                    w.item_error(&stored, format!("cannot read link: {e}"));
                    return Ok(());
                }
            }
            w.put_symlink(item)?;
        } else if ft.is_file() {
            if !self.include.is_empty() && !self.include.matches(&stored) {
                return Ok(());
            }
            let item = item_from(&stored, ItemKind::File, &meta);
            if self.validate && meta.len() <= MAX_VALIDATED_SIZE {
                match fs::read(path) {
                    Ok(data) => {
                        if let Some(problem) = validate_syntax(&stored, &data) {
                            w.warn(&stored, problem);
                        }
                        w.put_file(item, || Ok(Cursor::new(data)))?;
                    }
                    Err(e) => w.item_error(&stored, format!("cannot read: {e}")),
                }
            } else {
                w.put_file(item, || fs::File::open(path))?;
            }
        } else {
            let what = if ft.is_fifo() {
                "FIFO"
            } else if ft.is_socket() {
                "socket"
            } else {
                "device file"
            };
            w.warn(&stored, format!("{what} skipped"));
        }
        Ok(())
    }
}

impl Source for FilesSource {
    fn info(&self) -> SourceInfo {
        self.info.clone()
    }

    fn paths(&self) -> Vec<String> {
        self.roots.iter().map(|p| p.display().to_string()).collect()
    }

    fn run(&mut self, w: &mut SnapshotWriter) -> Result<()> {
        let mut emitted: HashSet<PathBuf> = HashSet::new();
        for root in &self.roots {
            // Parents of the root, so a restore recreates them with their permissions.
            let ancestors: Vec<&Path> = root.ancestors().skip(1).collect();
            for dir in ancestors.into_iter().rev() {
                let stored = stored_path(dir);
                if stored.is_empty() || !emitted.insert(dir.to_path_buf()) {
                    continue;
                }
                match fs::symlink_metadata(dir) {
                    Ok(meta) => w.put_dir(item_from(&stored, ItemKind::Dir, &meta))?,
                    Err(e) => w.item_error(&stored, format!("cannot stat: {e}")),
                }
            }
            self.walk(w, root, stored_path(root))?;
        }
        Ok(())
    }
}

fn normalize(p: &Path) -> PathBuf {
    p.components().collect()
}

fn stored_path(p: &Path) -> String {
    p.to_string_lossy().trim_start_matches('/').to_string()
}

pub fn item_from(path: &str, kind: ItemKind, meta: &Metadata) -> Item {
    let mut item = Item::new(path, kind);
    item.mode = meta.mode();
    item.uid = meta.uid();
    item.gid = meta.gid();
    item.mtime_ns = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
    item.ctime_ns = meta.ctime() * 1_000_000_000 + meta.ctime_nsec();
    item.inode = meta.ino();
    if kind == ItemKind::File {
        item.size = meta.len();
    }
    item
}
