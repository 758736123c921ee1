//! Passwords of configured sources: from a file or an environment variable, read when a
//! source is used (never when the config is merely loaded) and never logged.

use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

pub fn read_secret(source: &str, file: Option<&Path>, env: Option<&str>) -> Result<Option<String>> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!(
                    "source '{source}': cannot read password_file {}",
                    f.display()
                ),
            )
            .with_source(e)
        })?;
        return Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()));
    }
    match env {
        Some(var) => std::env::var(var).map(Some).map_err(|_| {
            Error::invalid(format!(
                "source '{source}': password_env names ${var}, which is not set"
            ))
        }),
        None => Ok(None),
    }
}
