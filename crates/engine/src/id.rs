//! Typed 32-byte identifiers, printed as lowercase hex.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, bytemuck::Pod, bytemuck::Zeroable,
        )]
        #[repr(transparent)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex digits, as shown in listings.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }

            /// Content address: BLAKE3 of the bytes (used for files named by their content).
            pub fn of_content(bytes: &[u8]) -> Self {
                Self(*blake3::hash(bytes).as_bytes())
            }

            pub fn random() -> Self {
                Self(rand::random())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(|_| {
                    Error::invalid(format!("'{s}' is not a valid {}", stringify!($name)))
                })?;
                Ok(Self(out))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// Keyed BLAKE3 of a chunk's plaintext.
    ChunkId
);
id_type!(
    /// BLAKE3 of a pack file's bytes; also its file name.
    PackId
);
id_type!(
    /// BLAKE3 of a sealed snapshot file; also its file name.
    SnapshotId
);
id_type!(
    /// BLAKE3 of a sealed index file; also its file name.
    IndexId
);
id_type!(
    /// BLAKE3 of a key file; also its file name.
    KeyId
);
id_type!(
    /// Random name of a lock file.
    LockId
);
id_type!(
    /// Random id shared by the per-source snapshots of one backup run.
    SetId
);

impl SetId {
    /// The name a log archive marks the set's moment with (PostgreSQL's named restore
    /// point), so that a recovery can stop exactly there. 128 bits of the id: PostgreSQL
    /// takes names of up to 63 bytes.
    pub fn point_name(&self) -> String {
        format!("bulwark-set-{}", &self.to_hex()[..32])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_garbage() {
        let id = ChunkId::random();
        let parsed: ChunkId = id.to_hex().parse().expect("parses");
        assert_eq!(id, parsed);
        assert!("zz".parse::<ChunkId>().is_err());
        assert!(id.to_hex()[..62].parse::<ChunkId>().is_err());
        let json = serde_json::to_string(&id).expect("serialises");
        assert_eq!(json, format!("\"{}\"", id.to_hex()));
    }
}

/// Hashes an id by its first eight bytes. Ids are BLAKE3 outputs (keyed for chunks), so those
/// bytes are already uniform, and no one can pick ids to collide; SipHash over all 32 bytes
/// was a tenth of the time to open a repository of a million chunks.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(head) = bytes.first_chunk::<8>() {
            self.0 = u64::from_le_bytes(*head);
        }
    }

    /// The length prefix a slice's hash writes first: not part of the id.
    fn write_usize(&mut self, _: usize) {}
}

/// A map keyed by ids, hashed with [`IdHasher`].
pub type IdMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;
