#!/usr/bin/env bash
# The main job on a fresh machine: build Bulwark, start a sample PostgreSQL and Redis (and
# Qdrant, when QDRANT_URL names a server or a qdrant binary is at QDRANT_BIN or on PATH), back
# up sample AI-platform data, the database (logical dumps, a base backup, continuous WAL
# archiving), the cache and the vector collection into a local encrypted repository as one
# backup set, restore the files and verify them byte for byte, assess the stack against its
# RPO/RTO targets, drill every source in a sandbox, recover the lost cache by scenario and
# restore the lost collection and compare them, then recover the database to a point in time
# just before an accident.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

echo "== installing PostgreSQL and Redis (Debian packages)"
scripts/install-deps.sh --packages-only

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

# A sample PostgreSQL archiving its WAL into the repository.
source scripts/servers.sh
PGBIN=$(newest_pg_bin)
PGPORT=$(free_port 55432)
PITR_PORT=$(free_port $((PGPORT + 1)))
echo "pg-demo-secret" > "$DEMO/pg-password"
[ "$(id -u)" = 0 ] && chown postgres "$DEMO"   # the server's user must reach its directory
pg_cluster "$PGBIN" "$DEMO/pg" "$PGPORT" "$DEMO/pg-password" "wal_level = replica
archive_mode = on
archive_command = '$B --config $DEMO/bulwark.toml wal-push %p'"
REDIS_PORT=$(free_port 56379)
DAEMON_PID=
trap '[ -n "$DAEMON_PID" ] && kill -TERM "$DAEMON_PID" 2>/dev/null; pg_stop "$DEMO/pg/data" "$DEMO/pg-recovered"; redis_stop "$REDIS_PORT"; qdrant_stop "$DEMO/qdrant"' EXIT
psql() { PGPASSWORD=pg-demo-secret "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -p "${PORT:-$PGPORT}" "$@"; }
echo "== sample PostgreSQL $("$PGBIN/pg_ctl" --version | awk '{print $3}') on port $PGPORT: agent memories and conversations"
psql -d postgres -c "CREATE DATABASE agents"
psql -d agents -c "CREATE TABLE memories (id bigint PRIMARY KEY, agent text, body text, created timestamptz DEFAULT now());
    INSERT INTO memories SELECT i, 'agent-' || (i % 7), md5(i::text) FROM generate_series(1, 50000) i;
    CREATE TABLE conversations (id serial PRIMARY KEY, messages jsonb);
    INSERT INTO conversations (messages) SELECT jsonb_build_array('hi', i) FROM generate_series(1, 2000) i;"

# A sample Redis: sessions with TTLs, a job queue, a stream of agent events. DEBUG is enabled
# only so the demo can ask Redis for a digest of its whole dataset before and after.
redis_start "$DEMO/redis" "$REDIS_PORT" --enable-debug-command yes --repl-diskless-sync-delay 0
echo "== sample Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2) on port $REDIS_PORT: sessions, queues, agent events"
redis-cli -p "$REDIS_PORT" EVAL 'for i = 1, 5000 do
  redis.call("SET", "session:" .. i, "user" .. i % 97, "EX", 86400)
  redis.call("HSET", "agent:" .. i % 50, "last_seen", i, "model", "assistant")
  if i % 10 == 0 then redis.call("RPUSH", "queue:embeddings", "doc" .. i) end
  if i % 25 == 0 then redis.call("XADD", "events", "*", "agent", i % 50, "action", "answered") end
end return 1' 0 >/dev/null
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }

# Qdrant, when there is one: no package registry ships it, so it is optional here.
QDRANT="${QDRANT_URL:-}"
if [ -z "$QDRANT" ] && qdrant_bin >/dev/null; then
    QDRANT_PORT=$(free_port 56333)
    qdrant_start "$DEMO/qdrant" "$QDRANT_PORT"
    QDRANT="http://127.0.0.1:$QDRANT_PORT"
fi
# qapi METHOD PATH [JSON]: a Qdrant REST call (API key from QDRANT_API_KEY, if set).
qapi() {
    curl -sf -X "$1" "$QDRANT$2" -H 'content-type: application/json' \
        ${QDRANT_API_KEY:+-H "api-key: $QDRANT_API_KEY"} ${3:+--data-binary "$3"}
}
# qdigest: point count and a hash of every point (id, vector rounded, payload) of agent_memory.
qdigest() {
    qapi POST /collections/agent_memory/points/scroll \
        '{"limit": 10000, "with_payload": true, "with_vector": true}' | python3 -c '
import hashlib, json, sys
pts = sorted(json.load(sys.stdin)["result"]["points"], key=lambda p: str(p["id"]))
h = hashlib.sha256(json.dumps([[p["id"], [round(x, 5) for x in p["vector"]], p["payload"]] for p in pts], sort_keys=True).encode())
print(len(pts), "points, digest", h.hexdigest()[:16])'
}
if [ -n "$QDRANT" ]; then
    echo "== sample Qdrant at $QDRANT: agent_memory, 2000 embeddings of 64 dimensions"
    qapi DELETE /collections/agent_memory >/dev/null || true
    qapi PUT /collections/agent_memory '{"vectors": {"size": 64, "distance": "Cosine"}}' >/dev/null
    qapi PUT /collections/agent_memory/index '{"field_name": "agent", "field_schema": "keyword"}' >/dev/null
    python3 -c '
import json, random
random.seed(7)
pts = [{"id": i, "vector": [random.uniform(-1, 1) for _ in range(64)],
        "payload": {"agent": "agent-%d" % (i % 7), "text": "memory %d" % i}} for i in range(2000)]
print(json.dumps({"points": pts}))' > "$DEMO/points.json"
    qapi PUT "/collections/agent_memory/points?wait=true" "@$DEMO/points.json" >/dev/null
else
    echo "== Qdrant: skipped (no server: set QDRANT_URL, or QDRANT_BIN / put qdrant on PATH)"
fi

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

[sources.pg]
kind = "postgres"
url = "postgres://postgres@127.0.0.1:$PGPORT/postgres"
password_file = "$DEMO/pg-password"
modes = ["logical", "physical"]
wal_spool_dir = "$DEMO/wal-spool"

[sources.cache]
kind = "redis"
url = "redis://127.0.0.1:$REDIS_PORT"

$([ -n "$QDRANT" ] && printf '[sources.vectors]\nkind = "qdrant"\nurl = "%s"\ncollections = ["agent_memory"]\nmodes = ["logical", "snapshot"]\n%s' "$QDRANT" "${QDRANT_API_KEY:+password_env = \"QDRANT_API_KEY\"}")

[retention]
keep_daily = 7
keep_weekly = 4
keep_monthly = 6
TOML
echo "demo-password-$(date +%s)" > "$DEMO/password"
export BULWARK_CONFIG="$DEMO/bulwark.toml"
# Run history, metric samples and the audit log of this demo stay in the demo's directory.
export BULWARK_STATE_DIR="$DEMO/state"

echo "== bulwark init"
"$B" init
# PostgreSQL's archive_command (wal-push) runs as the postgres user and writes the repository.
[ "$(id -u)" = 0 ] && chown -R postgres "$DEMO"
echo "== bulwark backup (every configured source, one backup set: files, config, PostgreSQL dumps and base backup, Redis, Qdrant when present)"
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

echo "== bulwark assess: every source against its RPO/RTO targets (never drilled yet: degraded)"
"$B" assess || echo "(assess exit $?: see the recommendations)"
echo "== bulwark drill --scenario full_disaster: each source restored into a sandbox in recovery order, verified, removed"
"$B" drill --scenario full_disaster --html "$DEMO/drill.html"
echo "drill report: $DEMO/drill.html"
echo "== bulwark assess, after the drill"
"$B" assess || echo "(assess exit $?: see the recommendations)"

echo "== Redis: the cache is wiped by mistake"
DIGEST=$(rcli DEBUG DIGEST)
echo "before: $(rcli DBSIZE) keys, digest $DIGEST"
rcli FLUSHALL >/dev/null
echo "after FLUSHALL: $(rcli DBSIZE) keys"
echo "== bulwark recover --scenario redis_failure --dry-run (the plan; nothing is touched)"
"$B" recover --scenario redis_failure --dry-run
echo "== bulwark recover --scenario redis_failure (key by key into the server, TTLs kept, verified)"
"$B" recover --scenario redis_failure
[ "$(rcli DEBUG DIGEST)" = "$DIGEST" ] || { echo "the restored Redis differs from the original" >&2; exit 1; }
echo "restored: $(rcli DBSIZE) keys; Redis's own digest matches the original"

if [ -n "$QDRANT" ]; then
    echo "== Qdrant: a drill, then the collection is deleted by mistake"
    QDIGEST=$(qdigest)
    echo "before: $QDIGEST"
    echo "== bulwark restore --source vectors --target $QDRANT (as agent_memory__restored, compared)"
    "$B" restore --source vectors --target "$QDRANT"
    qapi DELETE /collections/agent_memory__restored >/dev/null
    qapi DELETE /collections/agent_memory >/dev/null
    echo "== bulwark restore --source vectors --collection agent_memory --target-collection agent_memory --mode logical"
    "$B" restore --source vectors --target "$QDRANT" --collection agent_memory \
        --target-collection agent_memory --mode logical
    [ "$(qdigest)" = "$QDIGEST" ] || { echo "the restored collection differs from the original" >&2; exit 1; }
    echo "restored: $(qdigest); every point matches the original"
fi

echo "== PostgreSQL keeps working; then an accident"
psql -d agents -c "INSERT INTO memories SELECT i, 'agent-late', md5(i::text) FROM generate_series(50001, 60000) i"
BEFORE=$(psql -d agents -c "SELECT count(*) || ' memories, checksum ' || sum(hashtext(body)) FROM memories")
sleep 1
GOOD_TIME=$(psql -d postgres -c "SELECT now()")
sleep 1
psql -d agents -c "DELETE FROM memories WHERE agent = 'agent-3'"
echo "at $GOOD_TIME: $BEFORE; after the accident: $(psql -d agents -c "SELECT count(*) FROM memories") memories"
wait_archived "$PGBIN" "$PGPORT" pg-demo-secret
echo "== bulwark wal status (the archive's range and its RPO right now)"
"$B" wal status
echo "== bulwark restore --pitr --target-time '$GOOD_TIME' (a new cluster on port $PITR_PORT)"
"$B" restore --pitr --target-time "$GOOD_TIME" --target "$DEMO/pg-recovered" --start --port "$PITR_PORT" --no-archive
AFTER=$(PORT=$PITR_PORT psql -d agents -c "SELECT count(*) || ' memories, checksum ' || sum(hashtext(body)) FROM memories")
echo "recovered: $AFTER"
[ "$AFTER" = "$BEFORE" ] || { echo "point-in-time recovery does not match the state before the accident" >&2; exit 1; }
echo "the recovered database matches its state just before the accident"

echo "== bulwark daemon: jobs on schedules, the JSON API, Prometheus metrics, the audit log"
API_PORT=$(free_port 58081)
ADMIN_TOKEN="demo-admin-token-$(date +%s)"
cat >> "$DEMO/bulwark.toml" <<TOML

[jobs.nightly]
kind = "backup"
schedule = "30 2 * * *"

[jobs.verify]
kind = "check"
schedule = "0 5 * * sun"
read_data_subset = "10%"

[daemon]
listen = "127.0.0.1:$API_PORT"

[daemon.tokens.ops]
role = "admin"
token = "$ADMIN_TOKEN"
TOML
"$B" daemon > "$DEMO/daemon.log" 2>&1 &
DAEMON_PID=$!
api() { curl -sf -H "Authorization: Bearer $ADMIN_TOKEN" "$@"; }
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$API_PORT/healthz" > /dev/null && break; sleep 0.2; done
echo "== POST /api/jobs/nightly/run, then GET /api/runs?job=nightly"
api -X POST "http://127.0.0.1:$API_PORT/api/jobs/nightly/run"; echo
for _ in $(seq 300); do
    api "http://127.0.0.1:$API_PORT/api/runs?job=nightly" | grep -q '"result":"running"' || break
    sleep 1
done
api "http://127.0.0.1:$API_PORT/api/runs?job=nightly" | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    print(r["job"], r["trigger"], r["started"], "->", r["result"], r.get("error", ""))'
echo "== bulwark status (what GET /api/status says)"
"$B" status || true
echo "== GET /metrics (a few of the Prometheus series)"
api "http://127.0.0.1:$API_PORT/metrics" | grep -E '^bulwark_(datastore_last_success_timestamp_seconds|job_next_run_timestamp_seconds)' | head -8
echo "== the dashboard: log in with the token, then the page and a chart"
JAR="$DEMO/dashboard-cookies"
curl -sf -c "$JAR" -o /dev/null -d "token=$ADMIN_TOKEN" "http://127.0.0.1:$API_PORT/login"
curl -sf -b "$JAR" "http://127.0.0.1:$API_PORT/" | grep -o '<title>[^<]*</title>'
curl -sf -b "$JAR" -o "$DEMO/backup-duration.svg" "http://127.0.0.1:$API_PORT/charts/duration.svg"
echo "dashboard at http://127.0.0.1:$API_PORT/ (token: $ADMIN_TOKEN); a chart: $DEMO/backup-duration.svg"
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true
DAEMON_PID=
echo "== bulwark audit (who did what, from the command line and through the API)"
"$B" audit | tail -6
echo "== bulwark audit verify (MACs, order, links, and the seal in the repository)"
"$B" audit verify
echo "== bulwark schedule install --dry-run (the systemd service the daemon would run as)"
"$B" schedule install --dry-run --root /
echo "demo finished; everything is in $DEMO"
