# A single-node Garage S3 server on loopback for the benchmarks (source this file).
#
#   garage_start DIR   starts it with its data in DIR; sets GARAGE_ENDPOINT, GARAGE_KEY,
#                      GARAGE_SECRET, and a bucket "bench" the key may use
#   garage_stop        stops it
# Garage itself: `cargo install garage --locked` (scripts/install-deps.sh installs it).

GARAGE_KEY=GK0123456789abcdef01234567
GARAGE_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

garage_start() {
    local dir="$1" rpc s3 node
    command -v garage >/dev/null || { echo "no garage binary: run scripts/install-deps.sh" >&2; return 1; }
    mkdir -p "$dir"
    rpc=$(free_port) s3=$(free_port)
    GARAGE_CONFIG="$dir/garage.toml"
    cat > "$GARAGE_CONFIG" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(openssl rand -hex 32)"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"
EOF
    RUST_LOG=warn garage -c "$GARAGE_CONFIG" server > "$dir/garage.log" 2>&1 &
    GARAGE_PID=$!
    # `node id` reads the key on disk; `status` needs the server up.
    for _ in $(seq 1 100); do
        garage -c "$GARAGE_CONFIG" status > /dev/null 2>&1 && break
        sleep 0.1
    done
    node=$(garage -c "$GARAGE_CONFIG" node id -q | cut -d@ -f1)
    garage -c "$GARAGE_CONFIG" layout assign -z dc1 -c 100G "$node" > /dev/null
    garage -c "$GARAGE_CONFIG" layout apply --version 1 > /dev/null
    garage -c "$GARAGE_CONFIG" key import --yes -n bench "$GARAGE_KEY" "$GARAGE_SECRET" > /dev/null
    garage -c "$GARAGE_CONFIG" bucket create bench > /dev/null
    garage -c "$GARAGE_CONFIG" bucket allow --read --write --owner bench --key bench > /dev/null
    GARAGE_ENDPOINT="http://127.0.0.1:$s3"
}

garage_stop() {
    [ -n "${GARAGE_PID:-}" ] && kill "$GARAGE_PID" 2>/dev/null && wait "$GARAGE_PID" 2>/dev/null
    true
}
