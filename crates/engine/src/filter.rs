//! Include and exclude patterns for stored paths, shared by backup sources, restore and `ls`.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// Glob patterns, matched against the whole stored path (`srv/app/x.log`) or, for patterns
/// without a '/', against the file name alone.
#[derive(Clone)]
pub struct PathFilter {
    full: GlobSet,
    name: GlobSet,
    empty: bool,
}

impl PathFilter {
    pub fn new(patterns: &[String]) -> Result<Self> {
        let (mut full, mut name) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for p in patterns {
            let trimmed = p.trim_start_matches('/');
            let glob = Glob::new(trimmed)
                .map_err(|e| Error::invalid(format!("bad pattern '{p}': {e}")))?;
            if trimmed.contains('/') {
                full.add(glob);
            } else {
                name.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::invalid(format!("bad patterns: {e}")))
        };
        Ok(Self {
            full: build(full)?,
            name: build(name)?,
            empty: patterns.is_empty(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether the path, or one of its parent directories, matches.
    pub fn matches(&self, path: &str) -> bool {
        let mut prefix_end = path.len();
        loop {
            let p = &path[..prefix_end];
            let name = p.rsplit('/').next().unwrap_or(p);
            if self.full.is_match(p) || self.name.is_match(name) {
                return true;
            }
            match p.rfind('/') {
                Some(i) => prefix_end = i,
                None => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PathFilter;

    #[test]
    fn filter_matches_names_paths_and_parents() {
        let f = PathFilter::new(&["*.log".into(), "srv/cache/**".into(), "/srv/tmp".into()])
            .expect("valid");
        assert!(f.matches("srv/app/x.log"));
        assert!(f.matches("srv/cache/a/b"));
        assert!(
            f.matches("srv/tmp/inside/file"),
            "a matching parent covers its contents"
        );
        assert!(!f.matches("srv/app/x.txt"));
        assert!(PathFilter::new(&["[".into()]).is_err());
    }
}
