//! The configured sources as recovery sees them: each datastore with its targets (the data it
//! may lose, the time it may take to come back, its place in the order) and the scenarios that
//! group them. Built-in scenarios follow the tiers; the config can add or replace them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::connectors::interface::{Datastore, Kind, Section, Tier};
use crate::error::{Error, Result};

/// RTO when the config sets none.
pub const DEFAULT_RTO: Duration = Duration::from_secs(30 * 60);
/// RPO of a source whose log archive runs between backups (PostgreSQL with WAL archiving).
pub const CONTINUOUS_RPO: Duration = Duration::from_secs(15 * 60);
/// RPO of any other source when the config sets none: one backup a day.
pub const DAILY_RPO: Duration = Duration::from_secs(24 * 3600);

/// What the config says of a source's targets; unset ones take the defaults.
#[derive(Debug, Clone, Default)]
pub struct TargetSettings {
    pub rpo: Option<Duration>,
    pub rto: Option<Duration>,
    pub priority: Option<u32>,
}

/// A source's targets, defaults applied.
#[derive(Debug, Clone, Serialize)]
pub struct Targets {
    pub rpo_secs: u64,
    pub rto_secs: u64,
    /// Lower comes first in a recovery.
    pub priority: u32,
}

impl Targets {
    pub fn of(datastore: &dyn Datastore, set: &TargetSettings) -> Self {
        let default_rpo = if datastore.archives_continuously() {
            CONTINUOUS_RPO
        } else {
            DAILY_RPO
        };
        Self {
            rpo_secs: set.rpo.unwrap_or(default_rpo).as_secs(),
            rto_secs: set.rto.unwrap_or(DEFAULT_RTO).as_secs(),
            priority: set
                .priority
                .unwrap_or_else(|| datastore.kind().connector().tier().default_priority()),
        }
    }
}

/// One configured source with its targets.
pub struct Member<'a> {
    pub datastore: &'a dyn Datastore,
    /// Its section of the config, for restores that read their source's settings.
    pub section: Option<&'a Section>,
    pub targets: Targets,
}

impl std::fmt::Debug for Member<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("name", &self.name())
            .field("targets", &self.targets)
            .finish()
    }
}

impl Member<'_> {
    pub fn name(&self) -> &str {
        self.datastore.name()
    }

    pub fn kind(&self) -> Kind {
        self.datastore.kind()
    }

    pub fn tier(&self) -> Tier {
        self.kind().connector().tier()
    }
}

/// A named group of sources, recovered in its order.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// From the config (false: built in).
    pub configured: bool,
    pub sources: Vec<String>,
}

/// The built-in scenarios: one per tier, and everything.
const BUILT_IN: [(&str, Option<Tier>, &str); 6] = [
    (
        "database_failure",
        Some(Tier::Database),
        "the databases (PostgreSQL, SQLite)",
    ),
    ("redis_failure", Some(Tier::Cache), "the caches (Redis)"),
    (
        "vector_failure",
        Some(Tier::Vectors),
        "the vector stores (Qdrant)",
    ),
    (
        "files_failure",
        Some(Tier::Files),
        "files and command outputs",
    ),
    ("config", Some(Tier::Config), "configuration files"),
    (
        "full_disaster",
        None,
        "everything: databases, then caches, vectors, files and configuration",
    ),
];

/// The built-in scenario that recovers a tier.
pub fn scenario_for(tier: Tier) -> &'static str {
    BUILT_IN
        .iter()
        .find(|(_, t, _)| *t == Some(tier))
        .map(|(name, ..)| *name)
        .unwrap_or("full_disaster")
}

/// Every configured source, and the scenarios the config adds (in their own order).
pub struct Stack<'a> {
    members: Vec<Member<'a>>,
    configured: BTreeMap<String, Vec<String>>,
}

impl<'a> Stack<'a> {
    /// `configured`: scenario name → sources in order; each source must be a member.
    pub fn new(members: Vec<Member<'a>>, configured: BTreeMap<String, Vec<String>>) -> Self {
        let mut members = members;
        members.sort_by(|a, b| (a.targets.priority, a.name()).cmp(&(b.targets.priority, b.name())));
        Self {
            members,
            configured,
        }
    }

    /// The members in recovery order (priority, then name).
    pub fn members(&self) -> &[Member<'a>] {
        &self.members
    }

    pub fn member(&self, name: &str) -> Option<&Member<'a>> {
        self.members.iter().find(|m| m.name() == name)
    }

    /// Every scenario, built-in ones first (a configured one of the same name replaces it).
    pub fn scenarios(&self) -> Vec<Scenario> {
        let mut out: Vec<Scenario> = BUILT_IN
            .iter()
            .filter(|(name, ..)| !self.configured.contains_key(*name))
            .map(|(name, tier, description)| Scenario {
                name: name.to_string(),
                description: description.to_string(),
                configured: false,
                sources: self
                    .members
                    .iter()
                    .filter(|m| tier.is_none_or(|t| m.tier() == t))
                    .map(|m| m.name().to_string())
                    .collect(),
            })
            .collect();
        out.extend(self.configured.iter().map(|(name, sources)| Scenario {
            name: name.clone(),
            description: "configured".into(),
            configured: true,
            sources: sources.clone(),
        }));
        out
    }

    /// The members a scenario recovers, in its order.
    pub fn scenario(&self, name: &str) -> Result<(Scenario, Vec<&Member<'a>>)> {
        let all = self.scenarios();
        let Some(s) = all.iter().find(|s| s.name == name) else {
            return Err(Error::invalid(format!(
                "no scenario '{name}'; the scenarios are: {}",
                all.iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if s.sources.is_empty() {
            return Err(Error::invalid(format!(
                "scenario '{name}' ({}) has no sources in this configuration",
                s.description
            )));
        }
        let members = s
            .sources
            .iter()
            .map(|n| self.named(n))
            .collect::<Result<Vec<_>>>()?;
        Ok((s.clone(), members))
    }

    /// Named members in recovery order; none named means all of them.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Member<'a>>> {
        if names.is_empty() {
            return Ok(self.members.iter().collect());
        }
        for n in names {
            self.named(n)?;
        }
        Ok(self
            .members
            .iter()
            .filter(|m| names.iter().any(|n| n == m.name()))
            .collect())
    }

    fn named(&self, name: &str) -> Result<&Member<'a>> {
        self.member(name).ok_or_else(|| {
            Error::invalid(format!(
                "no configured source '{name}'; the sources are: {}",
                self.members
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }
}
