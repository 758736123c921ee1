#!/usr/bin/env bash
# Installs what the tests and the demo need: Debian packages, and Garage (a production
# S3-compatible server from crates.io) for the object-storage tests. Idempotent.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH" DEBIAN_FRONTEND=noninteractive

need_apt=()
for pkg in util-linux; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}"
fi

if ! command -v garage >/dev/null 2>&1; then
    echo "installing garage (S3 server for tests; about 6 minutes)"
    cargo install garage --version 2.5.0 --locked --quiet
fi
