//! Command-line types only; behaviour lives in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bulwark",
    version,
    about = "Backup and disaster recovery for AI platforms",
    max_term_width = 100
)]
pub struct Cli {
    /// Repository: a path, s3://BUCKET/PREFIX, obs://BUCKET/PREFIX, or a repository name from the config file.
    #[arg(long, short = 'r', global = true, env = "BULWARK_REPOSITORY")]
    pub repo: Option<String>,

    /// Config file (default: ./bulwark.toml, then /etc/bulwark/bulwark.toml).
    #[arg(long, global = true, env = "BULWARK_CONFIG")]
    pub config: Option<PathBuf>,

    /// Read the repository password from this file.
    #[arg(long, global = true, env = "BULWARK_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,

    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// No progress bars.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,

    /// Wait this long (e.g. 30s, 10m, 2h) for another operation's lock on the repository
    /// instead of failing at once (exit 10).
    #[arg(long, global = true, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    pub retry_lock: Option<std::time::Duration>,

    /// Where the local index cache lives (default: $XDG_CACHE_HOME/bulwark, else
    /// ~/.cache/bulwark).
    #[arg(long, global = true, env = "BULWARK_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Keep no local index cache: read every index file whenever a repository is opened.
    #[arg(long, global = true, env = "BULWARK_NO_CACHE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_cache: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a new repository.
    Init(InitArgs),
    /// Manage the passwords (key files) that open the repository.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Back up configured sources, directories, stdin or a command's output.
    Backup(BackupArgs),
    /// List snapshots.
    Snapshots(SnapshotsArgs),
    /// List the files in a snapshot.
    Ls(LsArgs),
    /// Restore a snapshot into a directory.
    Restore(RestoreArgs),
    /// Verify the repository's structure and, optionally, its data.
    Check(CheckArgs),
    /// Remove snapshots according to a retention policy.
    Forget(ForgetArgs),
    /// Delete data no snapshot references and repack mostly-empty packs, in two phases that
    /// let backups run meanwhile (or at once with --exclusive).
    Prune(PruneArgs),
    /// Show or set who prunes the repository (its maintenance owner) and the grace period
    /// of two-phase deletion, with the data waiting to be deleted.
    Maintenance(MaintenanceArgs),
    /// Show what changed between two snapshots.
    Diff(DiffArgs),
    /// Sizes: logical, deduplicated and stored bytes.
    Stats(StatsArgs),
    /// Copy snapshots to another repository (e.g. local to S3).
    Copy(CopyArgs),
    /// List the distinct versions of a file (typically a config file) over time.
    History(HistoryArgs),
    /// Remove stale locks left by crashed processes.
    Unlock(UnlockArgs),
    /// Probe the configured sources: reachable, version, role, warnings, and the newest
    /// point each can be recovered to from the repository.
    Health(HealthArgs),
    /// Can the stack be recovered within its targets? Each source's health and recovery
    /// point against its RPO, the repository; healthy, degraded or critical, with what to do.
    Assess(AssessArgs),
    /// The recovery scenarios (built in and configured) and the sources each recovers, in order.
    Scenarios,
    /// Restore drill: each source of a scenario (or those named), in recovery order, restored
    /// into a sandbox, verified and removed; RTO and RPO measured against the targets; the
    /// record kept in the repository.
    Drill(DrillArgs),
    /// The drills recorded in the repository, or one of them (text, JSON or an HTML page).
    Drills(DrillsArgs),
    /// Recover a scenario's sources into themselves, in order: a plan first (--dry-run stops
    /// there), then each step restored and verified; a rerun continues where a failed one
    /// stopped.
    Recover(RecoverArgs),
    /// The backup sets: each run of `bulwark backup`, complete or partial, with the sources
    /// that failed.
    Sets,
    /// One backup set.
    #[command(subcommand)]
    Set(SetCommand),
    /// Ways back from damage: rebuild the index, rewrite damaged snapshots.
    #[command(subcommand)]
    Repair(RepairCommand),
    /// PostgreSQL archive_command: archive_command = 'bulwark wal-push %p'.
    WalPush(WalPushArgs),
    /// PostgreSQL restore_command: restore_command = 'bulwark wal-fetch %f %p'.
    WalFetch(WalFetchArgs),
    /// The PostgreSQL WAL archive.
    #[command(subcommand)]
    Wal(WalCommand),
    /// Run the configured jobs on their schedules and serve the API (foreground, for systemd
    /// or a container).
    Daemon,
    /// Run one configured job once, recorded like a scheduled run.
    RunJob(RunJobArgs),
    /// The audit log of the repository: who backed up, restored, deleted or changed what,
    /// when, and how it ended; `audit verify` proves it untouched.
    Audit(AuditArgs),
    /// Have systemd (the daemon as a service, or one timer per job) or cron run the configured
    /// jobs; show what they did; remove them again.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// What the running daemon reports (its /api/status), for a terminal; exit 8 degraded,
    /// 9 critical.
    Status(StatusArgs),
    /// Alert channels.
    #[command(subcommand)]
    Alert(AlertCommand),
}

#[derive(Subcommand)]
pub enum AlertCommand {
    /// Send a test notification to every channel (or one) and print each one's result;
    /// exit 1 if one failed.
    Test {
        /// Only this [alerts.channels.NAME].
        #[arg(long)]
        channel: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// As root: a systemd service for the daemon (or, with --timers, a timer per job); as
    /// another user: crontab lines between marker comments.
    Install(ScheduleInstall),
    /// How the schedule is installed, and each job's next run and last result.
    Status(ScheduleTarget),
    /// Removes what install wrote (units carrying its mark, the crontab block), nothing else.
    Uninstall {
        #[command(flatten)]
        target: ScheduleTarget,
        /// Show what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args)]
pub struct ScheduleInstall {
    /// One systemd timer and oneshot service per job (`bulwark run-job NAME`), instead of the
    /// daemon's service.
    #[arg(long)]
    pub timers: bool,
    #[command(flatten)]
    pub target: ScheduleTarget,
    /// Print the files instead of writing them.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args)]
pub struct ScheduleTarget {
    /// Write under this directory instead of / (packaging, tests); systemctl is not called.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// crontab lines instead of systemd units (the default for users other than root).
    #[arg(long)]
    pub cron: bool,
}

#[derive(Args)]
pub struct StatusArgs {
    /// The daemon's address (default: [daemon] listen of the config). The token comes from
    /// BULWARK_TOKEN or the config's [daemon.tokens].
    #[arg(long)]
    pub url: Option<String>,
}

#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// Only entries from then on: a date or time ('2026-12-01', '2026-12-01T08:00:00Z') or an
    /// age ('24h', '7d').
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check every entry's MAC, their order and links, and the seal kept in the repository:
    /// an edited, deleted, reordered or truncated entry is named (exit 6).
    Verify,
}

#[derive(Args)]
pub struct RunJobArgs {
    /// The job: a [jobs.NAME] section of the config file.
    pub name: String,
    /// Who started the run (the daemon passes `schedule` or `api`).
    #[arg(long, default_value = "manual", hide = true)]
    pub trigger: String,
    /// The schedule slot (Unix seconds) the run is for.
    #[arg(long, hide = true)]
    pub slot: Option<i64>,
    /// A run the daemon recorded as started.
    #[arg(long, hide = true)]
    pub run_id: Option<i64>,
}

#[derive(Args)]
pub struct HealthArgs {
    /// Configured sources to probe (default: all).
    pub sources: Vec<String>,
}

#[derive(Args)]
pub struct DrillArgs {
    /// Configured sources to drill (default: all).
    #[arg(conflicts_with = "scenario")]
    pub sources: Vec<String>,
    /// Drill the sources of one scenario (see `bulwark scenarios`).
    #[arg(long)]
    pub scenario: Option<String>,
    /// Drill the snapshots of one backup set (an id prefix).
    #[arg(long, conflicts_with = "target_time")]
    pub set: Option<String>,
    /// Drill the state at this moment (with offset): PostgreSQL with WAL archiving replays to
    /// it, other sources restore their newest snapshot finished before it.
    #[arg(long)]
    pub target_time: Option<String>,
    /// Where sandboxes are made (default: the system temp directory).
    #[arg(long)]
    pub spool_dir: Option<PathBuf>,
    /// Also write the report as a self-contained HTML page.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// How restored data is checked: `full` compares everything the backup recorded;
    /// `sample` bounds the time on large databases (PostgreSQL: row counts instead of
    /// checksums, one vector search per column).
    #[arg(long, value_enum, default_value = "full")]
    pub verify: VerifyDepth,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyDepth {
    Full,
    Sample,
}

#[derive(Args)]
pub struct RecoverArgs {
    /// The scenario to recover (see `bulwark scenarios`).
    #[arg(long)]
    pub scenario: String,
    /// Recover the snapshots of one backup set (an id prefix).
    #[arg(long, conflicts_with = "target_time")]
    pub set: Option<String>,
    /// Recover the state at this moment (with offset): PostgreSQL by PITR to it, other
    /// sources from their newest snapshot finished before it.
    #[arg(long)]
    pub target_time: Option<String>,
    /// Show the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace what the targets hold now (keys, databases, files, collections).
    #[arg(long)]
    pub replace: bool,
    /// Scratch space for spooled dumps (default: the system temp directory).
    #[arg(long)]
    pub spool_dir: Option<PathBuf>,
    /// Where a run notes the steps it finished, so that a rerun continues (default:
    /// $BULWARK_STATE_DIR, else the config's [daemon] state_dir, else /var/lib/bulwark as
    /// root, else ~/.local/state/bulwark).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct DrillsArgs {
    /// A drill's id (a prefix will do): show that one.
    pub id: Option<String>,
    /// With an id: the report as a self-contained HTML page.
    #[arg(long, requires = "id")]
    pub html: bool,
}

#[derive(Args)]
pub struct AssessArgs {
    /// Configured sources to assess (default: all).
    #[arg(conflicts_with = "scenario")]
    pub sources: Vec<String>,
    /// Assess the sources of one scenario (see `bulwark scenarios`).
    #[arg(long)]
    pub scenario: Option<String>,
}

#[derive(Args)]
pub struct WalPushArgs {
    /// The WAL file, relative to the data directory (PostgreSQL's %p).
    pub path: PathBuf,
    /// The postgres source this server belongs to (default: the only one configured).
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Args)]
pub struct WalFetchArgs {
    /// The WAL file name PostgreSQL wants (%f).
    pub name: String,
    /// Where to write it (%p).
    pub dest: PathBuf,
    /// The postgres source whose archive to read (default: the only one configured).
    #[arg(long)]
    pub source: Option<String>,
    /// A segment missing while later ones are archived is reported as not found (recovery
    /// ends at the gap) instead of stopping recovery.
    #[arg(long)]
    pub allow_gap: bool,
}

#[derive(Subcommand)]
pub enum SetCommand {
    /// A set's sources with their snapshots and consistency points, and the system it ran on.
    Show {
        /// The set's id (a prefix will do).
        id: String,
    },
}

#[derive(Subcommand)]
pub enum RepairCommand {
    /// Rebuild the index from the packs' own headers (after a damaged or lost index file).
    Index {
        /// Report what would be rebuilt; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write, for each snapshot whose data is lost or damaged, a copy without the lost items
    /// (tagged "repaired", same source, host and time), so the rest stays restorable. The
    /// originals stay until forgotten.
    Snapshots {
        /// Report which snapshots lost what; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Read and authenticate every pack first, so damaged data counts, not only missing.
        #[arg(long)]
        read_data: bool,
        /// Forget each original once its repaired copy is saved.
        #[arg(long)]
        forget: bool,
    },
}

#[derive(Subcommand)]
pub enum WalCommand {
    /// Archived range per timeline, gaps, and the age of the newest segment (the RPO now).
    Status {
        #[arg(long)]
        source: Option<String>,
    },
}

#[derive(Args)]
pub struct InitArgs {
    /// Label for the first key (e.g. who holds the password).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Create the repository with the chunking and id key of this repository (same password
    /// source), so `copy` between them moves blobs without re-hashing.
    #[arg(long)]
    pub copy_params_from: Option<String>,
    /// Size at which packs are closed, in MiB (4 to 64). Larger packs make fewer objects and
    /// requests on object storage and cost more memory during backups; packs above 16 MiB are
    /// uploaded in parts side by side.
    #[arg(long, value_name = "MIB", default_value_t = 8, value_parser = pack_size_mib)]
    pub pack_size: u32,
}

fn pack_size_mib(v: &str) -> Result<u32, String> {
    let sizes = engine::repo::PACK_SIZES;
    let (min, max) = (sizes.start() >> 20, sizes.end() >> 20);
    match v.parse::<u32>() {
        Ok(mib) if (min..=max).contains(&mib) => Ok(mib),
        _ => Err(format!("a whole number of MiB from {min} to {max}")),
    }
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Add a password (key file); the new password comes from BULWARK_NEW_PASSWORD(_FILE) or a prompt.
    Add {
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List key files.
    List,
    /// Remove a key file by id (or unique prefix).
    Remove { id: String },
    /// Replace the password in use.
    Passwd,
}

#[derive(Args)]
pub struct BackupArgs {
    /// Configured source names, or directories/files for an ad-hoc backup. None: every configured source.
    pub targets: Vec<String>,
    /// Read the data from standard input.
    #[arg(long, conflicts_with = "stdin_from_command")]
    pub stdin: bool,
    /// Back up the standard output of this shell command; if it fails, the backup fails.
    #[arg(long, value_name = "CMD")]
    pub stdin_from_command: Option<String>,
    /// File name for --stdin / --stdin-from-command data.
    #[arg(long, default_value = "stdin")]
    pub stdin_filename: String,
    /// Source name for ad-hoc backups (default: "files" or "stream").
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Exclude pattern (glob) for ad-hoc backups.
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Read every file even if the previous snapshot says it is unchanged.
    #[arg(long)]
    pub force: bool,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(Args, Clone, Default)]
pub struct SnapshotFilter {
    #[arg(long)]
    pub source: Option<String>,
    #[arg(long)]
    pub tag: Vec<String>,
    /// Backup set id (or prefix).
    #[arg(long)]
    pub set: Option<String>,
    #[arg(long)]
    pub host: Option<String>,
}

#[derive(Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: SnapshotFilter,
    /// Only the newest N per source.
    #[arg(long)]
    pub latest: Option<usize>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Snapshot id (or prefix), or "latest".
    #[arg(default_value = "latest")]
    pub snapshot: String,
    /// Which source's latest snapshot (with "latest").
    #[arg(long)]
    pub source: Option<String>,
    /// Only paths matching this glob (or under a matching directory); repeatable.
    #[arg(long)]
    pub include: Vec<String>,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// Snapshot id (or prefix), or "latest".
    #[arg(long, default_value = "latest")]
    pub snapshot: String,
    /// Which source's latest snapshot (with --snapshot latest).
    #[arg(long)]
    pub source: Option<String>,
    /// Where to restore: a directory, or for a PostgreSQL snapshot a server
    /// (postgres://user@host:port/; password from PGPASSWORD or ~/.pgpass), for a Redis
    /// snapshot a server (redis://[user@]host:port; password from REDISCLI_AUTH), or for a
    /// Qdrant snapshot a server (http://host:port; API key from QDRANT_API_KEY).
    #[arg(long, required_unless_present = "sandbox")]
    pub target: Option<String>,
    /// Restore into something throwaway (a temporary directory, a redis-server, a
    /// PostgreSQL recovery, Qdrant collections under sandbox names), compare it with the
    /// backup, then remove it.
    #[arg(long)]
    pub sandbox: bool,
    /// Scratch space: dumps spooled for --jobs, sandboxes (default: the system temp
    /// directory).
    #[arg(long)]
    pub spool_dir: Option<PathBuf>,
    /// Start a server on the restored files: PostgreSQL after --pitr (waits for recovery
    /// and promotion), Redis after a directory restore (waits until it has loaded).
    #[arg(long)]
    pub start: bool,
    /// Port for the started server (default for Redis: a free port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Skip comparing the restored data with the figures recorded at backup time.
    #[arg(long)]
    pub no_verify: bool,
    /// Show what would be restored without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub kind: KindRestoreArgs,
}

/// Restore options that belong to one kind of datastore. They reach the snapshot's
/// connector by name (only those set), which refuses the ones it does not take.
#[derive(Args, serde::Serialize)]
pub struct KindRestoreArgs {
    /// Only paths matching this glob (or under a matching directory); repeatable (files).
    #[arg(long)]
    pub include: Vec<String>,
    /// Keys compared value by value with the backup after a restore (Redis; default 200).
    #[arg(long)]
    pub sample: Option<u64>,
    #[command(flatten)]
    #[serde(flatten)]
    pub postgres: PgRestoreArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub redis: RedisRestoreArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub qdrant: QdrantRestoreArgs,
}

impl KindRestoreArgs {
    /// The options given on the command line, by name; flags left unset are not sent.
    pub fn set(&self) -> serde_json::Map<String, serde_json::Value> {
        let all = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        all.into_iter()
            .filter(|(_, v)| match v {
                serde_json::Value::Null | serde_json::Value::Bool(false) => false,
                serde_json::Value::Array(a) => !a.is_empty(),
                _ => true,
            })
            .collect()
    }
}

/// Options for restoring a Qdrant snapshot.
#[derive(Args, serde::Serialize)]
pub struct QdrantRestoreArgs {
    /// Restore only this collection (repeatable; default: every collection in the snapshot).
    #[arg(long)]
    pub collection: Vec<String>,
    /// The name to restore the collection as (default: <name>__restored); with --replace it
    /// may be the live collection's own name.
    #[arg(long)]
    pub target_collection: Option<String>,
    /// Restore from the server snapshot or the logical points, when both were taken
    /// (default: the server snapshot).
    #[arg(long, value_enum)]
    pub mode: Option<QdrantMode>,
    /// Snapshot recovery priority (Qdrant's `priority`; default snapshot).
    #[arg(long, value_enum)]
    pub priority: Option<SnapshotPriority>,
    /// Lowest acceptable overlap of each verification search's top-10 with the backup's
    /// (default 1.0: exact search must give the same points).
    #[arg(long)]
    pub min_overlap: Option<f64>,
}

#[derive(Clone, Copy, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QdrantMode {
    Logical,
    Snapshot,
}

#[derive(Clone, Copy, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotPriority {
    Snapshot,
    Replica,
    NoSync,
}

/// Options for restoring a Redis snapshot into a running server.
#[derive(Args, serde::Serialize)]
#[group(multiple = false)]
pub struct RedisRestoreArgs {
    /// Empty the databases being restored first.
    #[arg(long)]
    pub flush: bool,
    /// Overwrite what the target already has: Redis keys, or a Qdrant collection of the
    /// target name.
    #[arg(long)]
    pub replace: bool,
    /// Keep keys the target already has.
    #[arg(long)]
    pub skip_existing: bool,
}

/// Options for restoring a PostgreSQL snapshot into a server.
#[derive(Args, serde::Serialize)]
pub struct PgRestoreArgs {
    /// Restore only this database (repeatable; default: every database in the snapshot).
    #[arg(long)]
    pub database: Vec<String>,
    /// Create databases that do not exist on the target.
    #[arg(long)]
    pub create: bool,
    /// Restore into a database that is not empty, dropping and recreating the dumped objects.
    #[arg(long)]
    pub clean: bool,
    /// Restore roles and tablespaces (pg_dumpall --globals-only) first. The role this restore
    /// connects as keeps its attributes and password; roles the target already has keep
    /// their passwords.
    #[arg(long)]
    pub globals: bool,
    /// With --globals: give roles the target already has their passwords from the backup too
    /// (never the connecting role).
    #[arg(long, requires = "globals")]
    pub replace_passwords: bool,
    /// Parallel pg_restore jobs per database (default 1); above 1 each dump is first
    /// written to --spool-dir.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: Option<u32>,
    /// PostgreSQL client tools to restore with (default: the source's bin_dir, else those
    /// matching the newer of the dumped and target servers, else PATH).
    #[arg(long)]
    pub pg_bin_dir: Option<PathBuf>,
    /// Point-in-time recovery: lay out a base backup in --target DIR and configure recovery
    /// (to the newest WAL unless a --target-* option says otherwise).
    #[arg(long)]
    pub pitr: bool,
    /// Recover up to this time, e.g. '2026-11-21 14:30:00+00' (picks the newest base backup
    /// finished before it).
    #[arg(long, requires = "pitr", group = "recovery_target")]
    pub target_time: Option<String>,
    /// Recover up to this WAL location, e.g. 0/3000060.
    #[arg(long, requires = "pitr", group = "recovery_target")]
    pub target_lsn: Option<String>,
    /// Recover up to this transaction id.
    #[arg(long, requires = "pitr", group = "recovery_target")]
    pub target_xid: Option<String>,
    /// Recover up to this named restore point (pg_create_restore_point).
    #[arg(long, requires = "pitr", group = "recovery_target")]
    pub target_name: Option<String>,
    /// Turn WAL archiving off in the restored server (for drills next to a live primary).
    #[arg(long, requires = "pitr")]
    pub no_archive: bool,
    /// Recover although the WAL archive has a gap: replay stops at the gap, and the report
    /// and exit status (4) say so. Without it a gap refuses the recovery before anything is
    /// written.
    #[arg(long, requires = "pitr")]
    pub allow_gap: bool,
    /// The timeline to recover along (default: the newest one descending from the base
    /// backup's, as PostgreSQL's 'latest').
    #[arg(long, requires = "pitr")]
    pub target_timeline: Option<u32>,
    /// Clear a --target directory that holds a point-in-time recovery by Bulwark that did not
    /// finish (its marker file says so), stopping a server left running there, and begin again.
    #[arg(long, requires = "pitr")]
    pub clear_unfinished: bool,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Re-read and authenticate every pack.
    #[arg(long)]
    pub read_data: bool,
    /// Re-read a random percentage of packs, e.g. 10%.
    #[arg(long, value_name = "N%", conflicts_with = "read_data", value_parser = percent)]
    pub read_data_subset: Option<f64>,
}

/// A retention policy: the `forget` flags and the config file's `[retention]` section alike.
#[derive(Args, Clone, Default, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepArgs {
    #[arg(long)]
    pub keep_last: Option<u32>,
    #[arg(long)]
    pub keep_hourly: Option<u32>,
    #[arg(long)]
    pub keep_daily: Option<u32>,
    #[arg(long)]
    pub keep_weekly: Option<u32>,
    #[arg(long)]
    pub keep_monthly: Option<u32>,
    #[arg(long)]
    pub keep_yearly: Option<u32>,
    /// Keep everything newer than this, e.g. 7d, 12h, 2w, 1y.
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
}

impl KeepArgs {
    pub fn to_policy(&self) -> anyhow::Result<engine::catalog::Policy> {
        Ok(engine::catalog::Policy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self
                .keep_within
                .as_deref()
                .map(crate::config::parse_duration)
                .transpose()?,
        })
    }
}

#[derive(Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub keep: KeepArgs,
    #[command(flatten)]
    pub filter: SnapshotFilter,
    /// Explicit snapshot ids to forget (instead of a policy).
    pub snapshots: Vec<String>,
    #[arg(long)]
    pub dry_run: bool,
    /// Run prune afterwards.
    #[arg(long)]
    pub prune: bool,
}

#[derive(Args)]
pub struct PruneArgs {
    #[arg(long)]
    pub dry_run: bool,
    /// Repack packs with more than this share of unused bytes.
    #[arg(long, default_value = "20%", value_parser = percent)]
    pub max_unused: f64,
    /// Delete at once under an exclusive lock (backups wait until prune ends) instead of
    /// marking what nothing needs for a later prune to delete.
    #[arg(long)]
    pub exclusive: bool,
    /// For this run, delete marked data once its mark is this old (e.g. 6h) instead of after
    /// the repository's grace period (`bulwark maintenance`).
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    pub grace: Option<std::time::Duration>,
}

#[derive(Args)]
pub struct MaintenanceArgs {
    /// Make this host the one that prunes (its name, or BULWARK_HOSTNAME).
    #[arg(long, value_name = "HOST")]
    pub owner: Option<String>,
    /// How long data marked by prune stays before a later prune deletes it (e.g. 20h); longer
    /// than the longest backup.
    #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
    pub grace: Option<std::time::Duration>,
}

#[derive(Args)]
pub struct DiffArgs {
    pub a: String,
    pub b: String,
}

#[derive(Args)]
pub struct StatsArgs {
    /// Snapshots to count (default: all).
    pub snapshots: Vec<String>,
}

#[derive(Args)]
pub struct CopyArgs {
    /// Destination: a repository name from the config file, or a URL.
    #[arg(long)]
    pub to: String,
    /// Password file for the destination (default: the same password).
    #[arg(long)]
    pub to_password_file: Option<PathBuf>,
    /// Snapshots to copy (default: all that the destination lacks).
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Stored path (as shown by `snapshots`/`diff`, without a leading '/') or an absolute path.
    pub path: String,
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Args)]
pub struct UnlockArgs {
    /// Remove every lock, not only stale ones (only when no other bulwark process runs).
    #[arg(long)]
    pub remove_all: bool,
}

/// "10%" or "10" -> 10.0, within 0..=100.
fn percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("'{s}' is not a percentage"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("'{s}' is not between 0% and 100%"))
    }
}
