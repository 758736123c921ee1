#!/usr/bin/env bash
# The test suite: unit tests, engine tests, and end-to-end tests of the real binary against
# real servers started by the harness (Garage for S3).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/install-deps.sh
# Tests spawn many bulwark processes and servers; two at a time fits a 2-core machine.
cargo test --workspace --locked -- --test-threads=2
# No registry ships Qdrant: its tests are ignored (and counted so) unless a server is here.
if [ -n "${QDRANT_BIN:-}" ] || command -v qdrant >/dev/null 2>&1; then
    cargo test --locked -p bulwark --test qdrant -- --ignored --test-threads=2
else
    echo "SKIPPED: the Qdrant tests (no qdrant binary; set QDRANT_BIN or put qdrant on PATH)"
fi
