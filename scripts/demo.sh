#!/usr/bin/env bash
# The main job on a fresh machine: build Bulwark, back up sample AI-platform data into a local
# encrypted repository, list it, restore it, and verify the restore byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

echo "== building bulwark (release)"
cargo build --release --locked --quiet
B="$PWD/target/release/bulwark"

DEMO="${DEMO_DIR:-$(mktemp -d /tmp/bulwark-demo.XXXXXX)}"
mkdir -p "$DEMO/srv/uploads" "$DEMO/srv/workspaces/agent-1" "$DEMO/etc/app" "$DEMO/var/log/app"
echo "== sample data in $DEMO"
head -c 4000000 /dev/urandom > "$DEMO/srv/uploads/embedding-cache.bin"
seq 1 200000 | sed 's/^/INSERT INTO messages VALUES (/; s/$/, '"'"'hello'"'"');/' > "$DEMO/srv/workspaces/agent-1/memory.sql"
cp "$DEMO/srv/uploads/embedding-cache.bin" "$DEMO/srv/uploads/duplicate.bin"
printf 'model: assistant\nreplicas: 3\n' > "$DEMO/etc/app/app.yaml"
printf '{"rag": {"top_k": 8}}\n' > "$DEMO/etc/app/rag.json"
printf 'broken = [\n' > "$DEMO/etc/app/broken.toml"
for i in $(seq 1 5000); do echo "2026-11-21T10:00:00Z INFO request $i served"; done > "$DEMO/var/log/app/app.log"

cat > "$DEMO/bulwark.toml" <<TOML
[repositories.local]
url = "$DEMO/repo"
password_file = "$DEMO/password"

[sources.uploads]
kind = "files"
paths = ["$DEMO/srv/uploads", "$DEMO/srv/workspaces"]

[sources.app-config]
kind = "config"
paths = ["$DEMO/etc/app"]

[sources.logs]
kind = "files"
paths = ["$DEMO/var/log/app"]
exclude = ["*.tmp"]

[retention]
keep_daily = 7
keep_weekly = 4
keep_monthly = 6
TOML
echo "demo-password-$(date +%s)" > "$DEMO/password"
export BULWARK_CONFIG="$DEMO/bulwark.toml"

echo "== bulwark init"
"$B" init
echo "== bulwark backup (every configured source, one backup set)"
"$B" backup
echo "== next day: a log grows, a config changes"
echo "2026-11-22T10:00:00Z INFO new day" >> "$DEMO/var/log/app/app.log"
printf 'model: assistant\nreplicas: 5\n' > "$DEMO/etc/app/app.yaml"
"$B" backup
echo "== bulwark snapshots"
"$B" snapshots
echo "== bulwark history of a config file"
"$B" history "$DEMO/etc/app/app.yaml"
echo "== bulwark restore"
for src in uploads app-config logs; do
    "$B" restore --source "$src" --target "$DEMO/restored"
done
for d in srv/uploads srv/workspaces etc/app var/log/app; do
    diff -r "$DEMO/$d" "$DEMO/restored$DEMO/$d"
done
echo "restored files are identical to the originals"
echo "== bulwark check --read-data"
"$B" check --read-data
echo "== bulwark stats"
"$B" stats
echo "== bulwark forget (policy from bulwark.toml), dry run"
"$B" forget --dry-run
echo "demo finished; everything is in $DEMO"
