//! PostgreSQL: logical dumps (pg_dump per database, globals from pg_dumpall) restored with
//! pg_restore, with per-table row counts and checksums recorded at dump time and compared after
//! a restore; physical base backups plus a WAL archive for point-in-time recovery.
//!
//! A snapshot of a postgres source holds, depending on its modes:
//! ```text
//! logical/globals.sql                 roles and tablespaces (pg_dumpall --globals-only)
//! logical/databases/<name>.dump       pg_dump custom format, uncompressed so it deduplicates
//! physical/base/...                   the data directory, from pg_basebackup's tar stream
//! ```
//! The WAL lives beside snapshots, in the repository's WAL archive (see `wal`).
//! and a `postgres` fact with the server version and, per database, its item path and tables.

pub mod conn;
pub mod connector;
pub mod dump_format;
pub mod globals;
pub mod logical;
pub mod neighbours;
pub mod physical;
pub mod pitr;
pub mod pitr_check;
pub mod server;
pub mod verify;
pub mod wal;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backup::{SnapshotWriter, Source};
use crate::error::{Error, ErrorKind, Result};
use crate::snapshot::{Snapshot, SourceInfo};
pub use conn::PgConn;

/// The oldest server we back up (`hashtextextended`, `pg_read_all_data` checks, pg_dump -Z0).
const MIN_SERVER: u32 = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Logical,
    Physical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// Row counts and content checksums per table, taken from the dump as it passes (a
    /// restore reads every table back to compare).
    #[default]
    Checksums,
    /// Row counts only.
    Counts,
    None,
}

#[derive(Debug, Clone)]
pub struct PgSettings {
    pub conn: PgConn,
    /// Databases to dump; empty means every database that accepts connections.
    pub databases: Vec<String>,
    pub exclude_databases: Vec<String>,
    pub modes: Vec<Mode>,
    /// Databases dumped at the same time.
    pub jobs: usize,
    pub verify: Verify,
    /// How long a base backup waits while archiving keeps failing (see `physical::backup`).
    pub archive_wait: std::time::Duration,
}

/// What a postgres snapshot records about the server and each database, for restores and
/// drills.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PgFacts {
    pub server_version: String,
    pub server_version_num: u32,
    #[serde(default)]
    pub globals: Option<String>,
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseFacts>,
    /// Present when the snapshot holds a base backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical: Option<physical::BaseBackupFacts>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DatabaseFacts {
    /// Item path of the dump.
    pub dump: String,
    pub bytes: u64,
    #[serde(default)]
    pub verify: Verify,
    #[serde(default)]
    pub tables: verify::DatabaseStats,
    /// The session settings the dump's rows were printed in, for re-reading them alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<verify::TextSettings>,
}

impl PgFacts {
    pub const KEY: &'static str = "postgres";

    pub fn of(snap: &Snapshot) -> Result<Self> {
        let v = snap.facts.get(Self::KEY).ok_or_else(|| {
            Error::invalid(format!(
                "snapshot of '{}' ({}) is not a PostgreSQL backup",
                snap.source.name, snap.source.kind
            ))
        })?;
        serde_json::from_value(v.clone())
            .map_err(|e| Error::corrupt(format!("snapshot's postgres facts are unreadable: {e}")))
    }
}

/// What the server is and what the connecting role may do; gathered before any work.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerInfo {
    pub version: String,
    pub version_num: u32,
    pub user: String,
    pub superuser: bool,
    pub read_all_data: bool,
}

impl ServerInfo {
    pub fn major(&self) -> u32 {
        self.version_num / 10000
    }

    pub fn query(conn: &PgConn) -> Result<Self> {
        // pg_read_all_data exists from PostgreSQL 14: look it up rather than name it, so
        // one query serves every version.
        conn.query(
            &conn.maintenance_db,
            "SELECT json_build_object('version', current_setting('server_version'), \
             'version_num', current_setting('server_version_num')::int, \
             'user', current_user, \
             'superuser', (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), \
             'read_all_data', EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'pg_read_all_data' \
               AND pg_has_role(current_user, r.oid, 'MEMBER')))",
        )
    }
}

/// The result of checking a server before backing it up: fatal problems are errors; these
/// are the things worth telling.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Preflight {
    pub server_version: String,
    pub tools: String,
    pub warnings: Vec<String>,
}

pub struct PostgresSource {
    name: String,
    settings: PgSettings,
}

impl PostgresSource {
    pub fn new(name: &str, settings: PgSettings) -> Result<Self> {
        if settings.modes.is_empty() {
            return Err(Error::invalid(format!(
                "postgres source '{name}': modes is empty (use [\"logical\"], [\"physical\"] or both)"
            )));
        }
        if settings.modes.contains(&Mode::Physical) {
            wal::check_namespace(name)?;
        }
        Ok(Self {
            name: name.to_string(),
            settings,
        })
    }

    /// Checks the server, the tools and the role; picks the tools matching the server.
    pub fn preflight(&mut self) -> Result<(ServerInfo, Preflight)> {
        let conn = &mut self.settings.conn;
        let server = ServerInfo::query(conn)?;
        if server.major() < MIN_SERVER {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{} runs PostgreSQL {}; Bulwark supports {MIN_SERVER} and newer",
                    conn.describe(),
                    server.version
                ),
            ));
        }
        if conn.bin_dir().is_none() {
            *conn = conn
                .clone()
                .with_bin_dir(conn::debian_bin_dir(server.major()));
        }
        let conn = &self.settings.conn;
        let tools = conn::tool_major(conn, "pg_dump")?;
        if tools < server.major() {
            return Err(Error::new(
                ErrorKind::Source,
                format!(
                    "pg_dump {tools} cannot dump PostgreSQL {} at {}: install the PostgreSQL {} client tools and set bin_dir in the source to their bin directory",
                    server.version,
                    conn.describe(),
                    server.major()
                ),
            ));
        }
        if self.settings.modes.contains(&Mode::Physical) {
            let problems = physical::preflight(&self.settings, &server, &self.name)?;
            if !problems.is_empty() {
                return Err(Error::new(
                    ErrorKind::Source,
                    format!(
                        "{} is not ready for physical backups:\n  - {}",
                        conn.describe(),
                        problems.join("\n  - ")
                    ),
                ));
            }
        }
        let mut warnings = Vec::new();
        if !server.superuser && !server.read_all_data {
            warnings.push(format!(
                "role {} is neither superuser nor a member of pg_read_all_data, so pg_dump may hit \"permission denied\"; run: GRANT pg_read_all_data TO {};",
                server.user, server.user
            ));
        }
        if !server.superuser {
            warnings.push(format!(
                "role {} is not a superuser: role passwords are left out of the globals dump",
                server.user
            ));
        }
        let report = Preflight {
            server_version: server.version.clone(),
            tools: format!(
                "pg_dump {tools} from {}",
                conn.bin_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|| "PATH".into())
            ),
            warnings,
        };
        Ok((server, report))
    }
}

impl Source for PostgresSource {
    fn info(&self) -> SourceInfo {
        SourceInfo::new(&self.name, crate::connectors::Kind::Postgres)
    }

    fn paths(&self) -> Vec<String> {
        vec![self.settings.conn.describe()]
    }

    fn run(&mut self, w: &mut SnapshotWriter) -> Result<()> {
        let (server, preflight) = self.preflight()?;
        for warning in &preflight.warnings {
            w.warn("preflight", warning.clone());
        }
        let mut facts = PgFacts {
            server_version: server.version.clone(),
            server_version_num: server.version_num,
            ..Default::default()
        };
        if self.settings.modes.contains(&Mode::Logical) {
            logical::backup(&self.settings, &server, w, &mut facts)?;
        }
        if self.settings.modes.contains(&Mode::Physical) {
            let mut base = physical::backup(&self.settings, w, &self.name)?;
            if let Some(set) = w.set_id() {
                match physical::mark_set(&self.settings.conn, &set.point_name()) {
                    Ok(point) => base.set_point = Some(point),
                    Err(e) => w.warn(
                        "restore point",
                        format!("no restore point for the backup set ({e}); a drill or recovery of the set restores this snapshot without replaying to the set's moment"),
                    ),
                }
            }
            facts.physical = Some(base);
        }
        w.fact(
            PgFacts::KEY,
            serde_json::to_value(&facts).map_err(|e| Error::invalid(e.to_string()))?,
        );
        Ok(())
    }
}
