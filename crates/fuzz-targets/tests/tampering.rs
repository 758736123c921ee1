//! Tampered repository data must fail authentication or bounds checks, and decoders must
//! reject what they cannot read: the properties beyond "does not panic" that the fuzz targets
//! (fuzz/) cannot state.

use bulwark_fuzz_targets::{mutations, Rng};
use engine::crypto::MasterKey;
use engine::id::{ChunkId, PackId};
use engine::pack::{BlobKind, PackBuilder};

#[test]
fn index_decoder_rejects_garbage() {
    let mut rng = Rng(11);
    let key = MasterKey::generate();
    let mut b = PackBuilder::default();
    b.add(BlobKind::Data, ChunkId([1; 32]), &key.seal(b"x"), 1);
    let pack = b.finish(&key);
    let valid = engine::index::encode(&[(PackId([2; 32]), pack.entries.clone())]);
    assert!(engine::index::decode(&valid).is_ok());
    for m in mutations(&valid, 200, &mut rng) {
        if m != valid {
            // May succeed on a harmless flip inside an id; must not panic.
            let _ = engine::index::decode(&m);
        }
    }
    // A huge claimed count with no data behind it is an error, not an allocation.
    let mut huge = b"BWIX\x01".to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(engine::index::decode(&huge).is_err());
}

#[test]
fn pack_header_and_codec_reject_tampering() {
    let mut rng = Rng(12);
    let key = MasterKey::generate();
    let mut b = PackBuilder::default();
    for i in 0..4u8 {
        b.add(BlobKind::Tree, ChunkId([i; 32]), &key.seal(&[i; 100]), 100);
    }
    let pack = b.finish(&key);
    for m in mutations(&pack.bytes, 200, &mut rng) {
        if m != pack.bytes {
            let r = engine::pack::read_header(&key, &m);
            // Any change to the sealed header or its length must fail authentication or bounds.
            if let Ok(entries) = r {
                assert_eq!(
                    entries, pack.entries,
                    "a parsed header is always the authentic one"
                );
            }
        }
    }
    let sealed = engine::codec::encode_object(&key, b"{\"a\":1}");
    for m in mutations(&sealed, 200, &mut rng) {
        if m != sealed {
            assert!(engine::codec::decode(&key, &m, None).is_err());
        }
    }
}
