//! Writes the seed corpora of the targets whose inputs the engine itself produces (the RDB and
//! pg_dump seeds come from real servers: fuzz/README.md). Run when a format changes:
//! `cargo test -p bulwark-fuzz-targets --test seeds -- --ignored`.

use std::io::Cursor;
use std::path::Path;

use engine::backup::{BackupOptions, SnapshotWriter};
use engine::crypto::{KdfParams, MasterKey};
use engine::id::{ChunkId, PackId};
use engine::items::{Item, ItemKind};
use engine::pack::{BlobKind, PackBuilder};
use engine::repo::{InitOptions, Repository};
use engine::snapshot::SourceInfo;
use engine::store::{StorageOptions, Store};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

#[test]
#[ignore = "writes fuzz/corpus; run by hand when a format changes"]
fn write_seeds() {
    let store = Store::create("memory:", &StorageOptions::default()).expect("store");
    let opts = InitOptions {
        kdf: KdfParams::with_cost(256, 1),
        ..Default::default()
    };
    let repo = Repository::init(store, "pw", opts).expect("init");
    let info = SourceInfo {
        name: "docs".into(),
        kind: "files".into(),
    };
    let mut w =
        SnapshotWriter::new(&repo, info, vec!["/srv".into()], BackupOptions::default()).expect("w");
    w.put_dir(Item::new("srv", ItemKind::Dir)).expect("dir");
    let mut item = Item::new("srv/a.txt", ItemKind::File);
    item.size = 12;
    item.mode = 0o100644;
    w.put_file(item, || Ok(Cursor::new(b"hello world\n".to_vec())))
        .expect("file");
    let (_, snap) = w.finish().expect("finish");
    write(
        "snapshot",
        "files",
        &serde_json::to_vec_pretty(&snap).expect("json"),
    );
    let (_, key) = repo.list_keys().expect("keys").remove(0);
    write(
        "key_file",
        "argon2id",
        &serde_json::to_vec_pretty(&key).expect("json"),
    );
    write(
        "repo_config",
        "v2",
        &serde_json::to_vec(repo.config()).expect("json"),
    );
    let lock = engine::lock::LockInfo {
        time: snap.time,
        refreshed: snap.time,
        hostname: "host".into(),
        pid: 4242,
        exclusive: true,
        maintenance: false,
        operation: "prune".into(),
    };
    write("lock", "prune", &serde_json::to_vec(&lock).expect("json"));
    let mut lines = Vec::new();
    for (path, kind) in [
        ("srv", ItemKind::Dir),
        ("srv/a.txt", ItemKind::File),
        ("srv/l", ItemKind::Symlink),
    ] {
        let mut i = Item::new(path, kind);
        i.chunks = vec![ChunkId([3; 32])];
        serde_json::to_writer(&mut lines, &i).expect("json");
        lines.push(b'\n');
    }
    write("item_stream", "three", &lines);

    let key = MasterKey::generate();
    let mut b = PackBuilder::default();
    b.add(BlobKind::Data, ChunkId([1; 32]), &key.seal(b"data"), 4);
    b.add(BlobKind::Tree, ChunkId([2; 32]), &key.seal(b"tree"), 4);
    let pack = b.finish(&key);
    write(
        "pack_header",
        "two",
        &engine::pack::encode_header(&pack.entries),
    );
    write(
        "index",
        "one-pack",
        &engine::index::encode(&[(PackId([9; 32]), pack.entries)]),
    );
    write(
        "sealed_object",
        "json",
        &engine::codec::encode_object(&key, b"{\"a\":1}"),
    );

    write(
        "resp",
        "replies",
        b"+OK\r\n-ERR no\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n*-1\r\n",
    );
    write(
        "wal_history",
        "two-forks",
        b"1\t0/5000198\tno recovery target specified\n\n2\t0/7000060\tbefore transaction 735\n",
    );
    write(
        "globals",
        "roles",
        b"SET standard_conforming_strings = on;\nCREATE ROLE app;\nALTER ROLE app WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:a$b:c';\nCREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER LOGIN PASSWORD 'x';\nCOMMENT ON ROLE app IS 'it''s';\nGRANT pg_read_all_data TO app GRANTED BY postgres;\n",
    );
    let mut points = engine::connectors::qdrant::points::MAGIC.to_vec();
    let json = [
        r#"{"id": 1, "vector": [0.5, -1.25, 3.0], "payload": {"title": "a", "n": 1}}"#,
        r#"{"id": "6e1c9a0e-3b7a-4c4e-9a56-1f4a0f5b2c10", "vector": {"text": [0.1, 0.2], "sparse": {"indices": [1, 7], "values": [0.5, 0.25]}}}"#,
        r#"{"id": 3, "vector": {"multi": [[1.0, 2.0], [3.0, 4.0]]}, "payload": null}"#,
    ];
    for p in json {
        let point: engine::connectors::qdrant::points::Point =
            serde_json::from_str(p).expect("point");
        engine::connectors::qdrant::points::encode(&point, &mut points).expect("encode");
    }
    engine::connectors::qdrant::points::encode_end(json.len() as u64, &mut points);
    write("qdrant_points", "three", &points);
}
