//! The committed seed corpora (`fuzz/corpus/NAME/`), each seed and a few hundred mutations of
//! it, through every target: the quick form of fuzzing that runs in every test run. The long
//! runs use cargo-fuzz (see fuzz/README.md).

use std::path::{Path, PathBuf};

use bulwark_fuzz_targets::TARGETS;

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Bit flips, truncations, insertions and splices of `seed`.
fn mutations(seed: &[u8], rng: &mut Rng) -> Vec<Vec<u8>> {
    (0..300)
        .map(|_| {
            let mut m = seed.to_vec();
            let at = |rng: &mut Rng, len: usize| (rng.next() as usize) % (len + 1);
            match rng.next() % 4 {
                0 if !m.is_empty() => {
                    let i = at(rng, m.len() - 1);
                    m[i] ^= 1 << (rng.next() % 8);
                }
                1 => m.truncate(at(rng, seed.len())),
                2 => {
                    let i = at(rng, m.len());
                    let junk: Vec<u8> = (0..rng.next() % 16).map(|_| rng.next() as u8).collect();
                    m.splice(i..i, junk);
                }
                _ => {
                    let (a, b) = (at(rng, seed.len()), at(rng, seed.len()));
                    let (a, b) = (a.min(b), a.max(b));
                    m.extend_from_slice(&seed[a..b]);
                }
            }
            m
        })
        .collect()
}

#[test]
fn every_target_replays_its_seed_corpus_and_mutations_without_panicking() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (name, target) in TARGETS {
        let dir = corpus(name);
        let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("fuzz/corpus/{name}: {e}"))
            .flatten()
            .map(|e| e.path())
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seeds");
        for seed in seeds {
            let bytes = std::fs::read(&seed).expect("seed");
            // A seed the parser no longer takes would leave the fuzzer at the surface.
            assert!(target(&bytes), "{} no longer parses", seed.display());
            for m in mutations(&bytes, &mut rng) {
                target(&m);
            }
        }
    }
}
