#!/usr/bin/env bash
# Rotation latency of `portcullis serve`: while a keep-alive load runs with
# one key, another key's ApiKey file is rewritten with a new hash (atomic
# rename), and a probe measures the time until a request with the old key
# returns 401.
# Prints the probe's JSON summary and the load's status counts.
#
# Usage: bench/rotation.sh [--rounds N] [--connections N] [--extra-routes N]
#                          [--skip-build]
#
# --extra-routes adds N more GatewayRoutes to the config directory, to show
# how the time to compile a snapshot adds to the rotation latency.
#
# Pinning as in bench/run.sh: the gateway on PROXY_CPUS with one tokio
# worker thread; wrk, the probe and the upstream on CLIENT_CPUS.

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=30
CONNECTIONS=16
EXTRA_ROUTES=0
BUILD=1
while (($#)); do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --connections) CONNECTIONS="$2"; shift 2 ;;
        --extra-routes) EXTRA_ROUTES="$2"; shift 2 ;;
        --skip-build) BUILD=0; shift ;;
        -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 && "$ROUNDS" -le 1000 ]] ||
    die "--rounds must be 1 to 1000"
[[ "$CONNECTIONS" =~ ^[0-9]+$ && "$CONNECTIONS" -ge 1 && "$CONNECTIONS" -le 1000 ]] ||
    die "--connections must be 1 to 1000"
[[ "$EXTRA_ROUTES" =~ ^[0-9]+$ && "$EXTRA_ROUTES" -le 100000 ]] ||
    die "--extra-routes must be 0 to 100000"

# Large configurations take longer to compile, at start and per rotation.
WAIT_SECONDS=$((15 + EXTRA_ROUTES / 50))
PROBE_TIMEOUT=$((10 + EXTRA_ROUTES / 50))

trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_tools
((BUILD)) && build_portcullis
[[ -x "$PORTCULLIS" ]] || die "$PORTCULLIS not found; run without --skip-build"
make_work_dir
start_upstream

ROTATED_KEY="$(new_key)"
LOAD_KEY="$(new_key)"
CONFIG_DIR="$WORK_DIR/portcullis"
write_route_config "$CONFIG_DIR" "[bench, load]"
write_api_key "$CONFIG_DIR/key-bench.yaml" bench "$ROTATED_KEY"
write_api_key "$CONFIG_DIR/key-load.yaml" load "$LOAD_KEY"
for ((i = 0; i < EXTRA_ROUTES; i++)); do
    cat <<YAML
---
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata: {name: extra-$i, namespace: default}
spec:
  method: GET
  path: /extra-$i/items/:id
  allowedApiKeyIds: [load]
  target: {service: up, port: http}
YAML
done >"$CONFIG_DIR/extra-routes.yaml"
# The access log is off, so the log contains one line per installed snapshot.
start_portcullis "$CONFIG_DIR" "$WORK_DIR/portcullis.log" \
    RUST_LOG=warn,portcullis_gateway=info,portcullis::access=warn
wait_for_status "$GATEWAY_PORT" /gw/default/bench 200 -H "X-Api-Key: $LOAD_KEY"

# The load stops by itself after a generous bound, or earlier on SIGINT
# once the probe is done.
LOAD_SECONDS=$((ROUNDS * (3 * PROBE_TIMEOUT + 2) + 30))
start_pinned "$CLIENT_CPUS" "$WORK_DIR/load.txt" wrk -t1 -c"$CONNECTIONS" -d"${LOAD_SECONDS}s" \
    -s "$REPO_ROOT/bench/status_count.lua" -H "X-Api-Key: $LOAD_KEY" \
    "http://127.0.0.1:$GATEWAY_PORT/gw/default/bench"
LOAD_PID="${STARTED_PIDS[-1]}"
sleep 1

log "rotating the key $ROUNDS times under load"
taskset -c "$CLIENT_CPUS" timeout $((ROUNDS * (3 * PROBE_TIMEOUT + 2) + 30)) python3 "$REPO_ROOT/bench/rotation_probe.py" \
    --port "$GATEWAY_PORT" --key-file "$CONFIG_DIR/key-bench.yaml" --key "$ROTATED_KEY" \
    --rounds "$ROUNDS" --timeout "$PROBE_TIMEOUT" >"$WORK_DIR/probe.json"

stop_pid "$LOAD_PID" INT

echo "probe: $(cat "$WORK_DIR/probe.json")"
echo "load:  $(grep '^LOAD ' "$WORK_DIR/load.txt" || echo 'wrk printed no summary')"
echo "snapshots installed: $(grep -c 'snapshot installed' "$WORK_DIR/portcullis.log" || true) (expected $((ROUNDS + 1)))"
