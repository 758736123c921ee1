//! Keys, authenticated encryption and the keyed chunk hash.
//!
//! The master key is 64 random bytes: the first 32 are the XChaCha20-Poly1305 key that seals
//! every object, the last 32 are the BLAKE3 key for chunk ids (so ids reveal nothing about
//! content to someone without the key). The chunker's gear table is derived from the id key.
//! Each key file wraps the master key with a key derived from a password by Argon2id.

use base64::Engine as _;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::id::ChunkId;

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes that sealing adds to a plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

#[derive(Clone)]
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
    raw: [u8; 64],
}

impl MasterKey {
    pub fn generate() -> Self {
        let mut raw = [0u8; 64];
        rand::Rng::fill(&mut rand::thread_rng(), &mut raw[..]);
        Self::from_bytes(raw)
    }

    fn from_bytes(raw: [u8; 64]) -> Self {
        let cipher = XChaCha20Poly1305::new(raw[..32].into());
        Self { cipher, raw }
    }

    fn id_key(&self) -> &[u8; 32] {
        self.raw[32..].try_into().expect("slice of 32")
    }

    /// Keyed BLAKE3 of a chunk's plaintext.
    pub fn chunk_id(&self, data: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(self.id_key(), data).as_bytes())
    }

    /// A fingerprint of the id key: two repositories with the same fingerprint produce the same
    /// chunk ids, so `copy` can move blobs without re-hashing them.
    pub fn id_key_fingerprint(&self) -> String {
        hex::encode(&blake3::derive_key("bulwark 1 id-key fingerprint", self.id_key())[..8])
    }

    /// The key of the audit log's MACs: whoever can rewrite the log's entries undetected
    /// must hold the repository's master key.
    pub fn audit_key(&self) -> [u8; 32] {
        blake3::derive_key("bulwark 1 audit log", &self.raw)
    }

    /// The key of the local index cache's MAC: a cache file this key did not write is not used.
    pub fn index_cache_key(&self) -> [u8; 32] {
        blake3::derive_key("bulwark 1 index cache", &self.raw)
    }

    /// Seed for the chunker's gear table.
    pub fn chunker_seed(&self) -> [u8; 32] {
        blake3::derive_key("bulwark 1 chunker gear", self.id_key())
    }

    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        seal_with(&self.cipher, &mut out, |o| o.extend_from_slice(plaintext));
        out
    }

    /// Seals into `out` (cleared first) the plaintext that `write` appends to it, encrypting
    /// it where it lies: no copy of the plaintext is made.
    pub fn seal_into(&self, out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
        seal_with(&self.cipher, out, write)
    }

    /// Opens `sealed` where it lies (it is overwritten); returns the plaintext part of it.
    pub fn open_in_place<'a>(&self, sealed: &'a mut [u8]) -> Result<&'a mut [u8]> {
        open_in_place_with(&self.cipher, sealed)
    }
}

/// Writes `nonce ‖ ciphertext ‖ tag` into `out`; `write` appends the plaintext after the nonce.
fn seal_with(cipher: &XChaCha20Poly1305, out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let nonce: [u8; NONCE_LEN] = rand::random();
    out.clear();
    out.extend_from_slice(&nonce);
    write(out);
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), b"", &mut out[NONCE_LEN..])
        .expect("XChaCha20-Poly1305 encrypts any length we produce");
    out.extend_from_slice(&tag);
}

fn open_with(cipher: &XChaCha20Poly1305, sealed: &[u8]) -> Result<Vec<u8>> {
    let mut copy = sealed.to_vec();
    let len = open_in_place_with(cipher, &mut copy)?.len();
    copy.copy_within(NONCE_LEN..NONCE_LEN + len, 0);
    copy.truncate(len);
    Ok(copy)
}

/// Authenticates and decrypts `sealed` where it lies; returns the plaintext part of it.
fn open_in_place_with<'a>(
    cipher: &XChaCha20Poly1305,
    sealed: &'a mut [u8],
) -> Result<&'a mut [u8]> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(Error::corrupt(format!(
            "sealed object too short ({} bytes)",
            sealed.len()
        )));
    }
    let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
    let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    cipher
        .decrypt_in_place_detached(XNonce::from_slice(nonce), b"", body, Tag::from_slice(tag))
        .map_err(|_| {
            Error::corrupt("authentication failed (data was modified or the key is wrong)")
        })?;
    Ok(body)
}

/// Argon2id parameters, stored in each key file so they can be raised later.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    pub algorithm: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub salt: String,
}

impl KdfParams {
    /// 64 MiB, 3 passes: about a quarter of a second here, costly for a guesser.
    pub fn recommended() -> Self {
        Self::with_cost(64 * 1024, 3)
    }

    pub fn with_cost(memory_kib: u32, iterations: u32) -> Self {
        let salt: [u8; 16] = rand::random();
        Self {
            algorithm: "argon2id".into(),
            memory_kib,
            iterations,
            parallelism: 1,
            salt: b64(&salt),
        }
    }

    fn derive(&self, password: &[u8]) -> Result<[u8; 32]> {
        if self.algorithm != "argon2id" {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("key derivation '{}' is not supported", self.algorithm),
            ));
        }
        let salt = unb64(&self.salt)?;
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| {
                    Error::corrupt(format!("invalid Argon2 parameters in key file: {e}"))
                })?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        argon
            .hash_password_into(password, &salt, &mut out)
            .map_err(|e| Error::corrupt(format!("Argon2 failed: {e}")))?;
        Ok(out)
    }
}

/// The part of a key file that carries the wrapped master key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WrappedKey {
    pub kdf: KdfParams,
    /// base64 of the sealed 64-byte master key.
    pub wrapped: String,
}

impl WrappedKey {
    pub fn wrap(master: &MasterKey, password: &[u8], kdf: KdfParams) -> Result<Self> {
        let kek = kdf.derive(password)?;
        let cipher = XChaCha20Poly1305::new((&kek).into());
        let mut sealed = Vec::new();
        seal_with(&cipher, &mut sealed, |o| o.extend_from_slice(&master.raw));
        Ok(Self {
            kdf,
            wrapped: b64(&sealed),
        })
    }

    /// Returns `WrongPassword` when authentication fails.
    pub fn unwrap(&self, password: &[u8]) -> Result<MasterKey> {
        let kek = self.kdf.derive(password)?;
        let cipher = XChaCha20Poly1305::new((&kek).into());
        let sealed = unb64(&self.wrapped)?;
        let raw = open_with(&cipher, &sealed)
            .map_err(|_| Error::new(ErrorKind::WrongPassword, "wrong password"))?;
        let raw: [u8; 64] = raw
            .try_into()
            .map_err(|_| Error::corrupt("wrapped master key has the wrong length"))?;
        Ok(MasterKey::from_bytes(raw))
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| Error::corrupt("invalid base64 in key file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let key = MasterKey::generate();
        for len in [0usize, 1, 100, 70_000] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let sealed = key.seal(&plain);
            assert_eq!(sealed.len(), len + SEAL_OVERHEAD);
            assert_eq!(
                key.open_in_place(&mut sealed.clone()).expect("opens"),
                plain
            );
            let mut tampered = sealed.clone();
            let last = tampered.len() - 1;
            tampered[last] ^= 1;
            assert_eq!(
                key.open_in_place(&mut tampered)
                    .expect_err("tampered")
                    .kind(),
                ErrorKind::Corrupt
            );
            let mut sealed_into = Vec::from(&b"old contents"[..]);
            key.seal_into(&mut sealed_into, |o| o.extend_from_slice(&plain));
            assert_eq!(key.open_in_place(&mut sealed_into).expect("opens"), plain);
        }
        assert!(key.open_in_place(&mut [0u8; 10]).is_err());
    }

    #[test]
    fn wrapped_key_needs_the_right_password() {
        let key = MasterKey::generate();
        let wrapped =
            WrappedKey::wrap(&key, b"hunter2", KdfParams::with_cost(256, 1)).expect("wraps");
        let back = wrapped.unwrap(b"hunter2").expect("right password");
        assert_eq!(back.chunk_id(b"x"), key.chunk_id(b"x"));
        let err = wrapped
            .unwrap(b"hunter3")
            .err()
            .expect("wrong password fails");
        assert_eq!(err.kind(), ErrorKind::WrongPassword);
    }

    #[test]
    fn chunk_ids_are_keyed() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        assert_eq!(a.chunk_id(b"data"), a.chunk_id(b"data"));
        assert_ne!(a.chunk_id(b"data"), b.chunk_id(b"data"));
        assert_ne!(a.id_key_fingerprint(), b.id_key_fingerprint());
    }
}
