//! The registry: every kind of datastore Bulwark knows, each with its connector. Adding a
//! datastore is one line here (see "Adding a datastore" in docs/architecture.md).

use super::interface::Connector;
use super::{files, postgres, qdrant, redis, stream};

macro_rules! registry {
    ($($variant:ident => $name:literal, $connector:expr;)*) => {
        /// A kind of datastore. Snapshot manifests store its name, so a repository written by
        /// a newer build with kinds this one does not know still lists (see [`Kind::parse`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $($variant),*
        }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            /// The name in snapshot manifests and `kind = "..."` in bulwark.toml.
            pub fn name(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name),*
                }
            }

            /// The one implementation of the datastore interface for this kind.
            pub fn connector(self) -> &'static dyn Connector {
                match self {
                    $(Kind::$variant => &$connector),*
                }
            }
        }
    };
}

registry! {
    Files => "files", files::FilesConnector(Kind::Files);
    Config => "config", files::FilesConnector(Kind::Config);
    Stream => "stream", stream::StreamConnector;
    Postgres => "postgres", postgres::connector::PostgresConnector;
    Redis => "redis", redis::connector::RedisConnector;
    Qdrant => "qdrant", qdrant::connector::QdrantConnector;
    Sqlite => "sqlite", super::sqlite::connector::SqliteConnector;
}

impl Kind {
    /// A kind by its name; one this build does not know is `Unsupported` (a newer bulwark
    /// wrote it), not corruption.
    pub fn parse(name: &str) -> crate::Result<Kind> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                crate::Error::new(
                    crate::ErrorKind::Unsupported,
                    format!(
                        "datastore kind '{name}' is not known to this build of bulwark (it knows {}); a newer version wrote it",
                        Kind::names()
                    ),
                )
            })
    }

    /// The name of this kind in `kind = "..."` of bulwark.toml: a stream source is
    /// configured as the command it runs.
    pub fn config_name(self) -> &'static str {
        match self {
            Kind::Stream => "command",
            k => k.name(),
        }
    }

    /// The kind a config section names.
    pub fn from_config_name(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.config_name() == name)
    }

    /// Every kind's name, for messages.
    pub fn names() -> String {
        Kind::ALL
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Kind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Kind::parse(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::Kind;

    #[test]
    fn names_round_trip_and_unknown_is_unsupported() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.name()).expect("known"), *k);
            assert_eq!(k.connector().kind(), *k);
        }
        let e = Kind::parse("mongodb").expect_err("unknown");
        assert_eq!(e.kind(), crate::ErrorKind::Unsupported);
    }
}
