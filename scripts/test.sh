#!/usr/bin/env bash
# The test suite: unit tests, engine tests, and end-to-end tests of the real binary against
# real servers started by the harness (Garage for S3).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/install-deps.sh
# Tests spawn many bulwark processes and servers; two at a time fits a 2-core machine.
cargo test --workspace --locked -- --test-threads=2
