//! The committed seed corpora (`fuzz/corpus/NAME/`), each seed and a few hundred mutations of
//! it, through every target: the quick form of fuzzing that runs in every test run. The long
//! runs use cargo-fuzz (see fuzz/README.md).

use std::path::{Path, PathBuf};

use bulwark_fuzz_targets::{mutations, Rng, TARGETS};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name)
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
            for m in mutations(&bytes, 300, &mut rng) {
                target(&m);
            }
        }
    }
}

/// Inputs a fuzzer once crashed a target with (`fuzz/regressions/NAME/`): they must not again.
#[test]
fn inputs_that_once_crashed_a_target_no_longer_do() {
    for (name, target) in TARGETS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/regressions")
            .join(name);
        for input in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let bytes = std::fs::read(input.path()).expect("input");
            target(&bytes);
        }
    }
}
