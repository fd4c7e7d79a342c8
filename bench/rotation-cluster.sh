#!/usr/bin/env bash
# Rotation latency of `portcullis run` against a Kubernetes API server:
# while a keep-alive load runs with one key, another ApiKey's keyHash is
# changed with `kubectl patch`, and a probe measures the time from the
# patch returning to the first 401 for the old key.
# Prints the probe's JSON summary and the load's status counts.
#
# Usage: bench/rotation-cluster.sh [--rounds N] [--skip-build]
#
# The API server is the test server of envtest (ENVTEST_DIR, default
# ../shared/envtest beside the repository), started and stopped here. The
# controller runs as its admin user. Pinning as in bench/run.sh.

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=30
BUILD=1
while (($#)); do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --skip-build) BUILD=0; shift ;;
        -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 && "$ROUNDS" -le 1000 ]] ||
    die "--rounds must be 1 to 1000"

ENVTEST_DIR="${ENVTEST_DIR:-$REPO_ROOT/../shared/envtest}"
[[ -x "$ENVTEST_DIR/start.sh" ]] || die "no envtest at $ENVTEST_DIR; set ENVTEST_DIR"
ENVTEST_STATE=""
# The API server stops first: its state, with the PIDs stop.sh needs, is
# inside the work directory that `cleanup` removes.
stop_everything() {
    if [[ -n "$ENVTEST_STATE" ]]; then
        "$ENVTEST_DIR/stop.sh" "$ENVTEST_STATE" >/dev/null 2>&1 || true
    fi
    cleanup
}
trap stop_everything EXIT
trap 'exit 130' INT TERM

ensure_tools
((BUILD)) && build_portcullis
[[ -x "$PORTCULLIS" ]] || die "$PORTCULLIS not found; run without --skip-build"
make_work_dir
start_upstream

env_file="$("$ENVTEST_DIR/start.sh" "$WORK_DIR/apiserver")"
# shellcheck disable=SC1090
source "$env_file"
export KUBECONFIG
log "test API server on $ENVTEST_API_SERVER"

"$PORTCULLIS" crds | kubectl apply -f - >/dev/null
kubectl wait --for condition=Established --timeout 60s \
    crd/apikeys.portcullis.dev crd/gatewayroutes.portcullis.dev >/dev/null
ROTATED_KEY="$(new_key)"
LOAD_KEY="$(new_key)"
kubectl create namespace bench >/dev/null
kubectl apply -n bench -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: up}
spec:
  ports: [{name: http, port: 80, targetPort: $UPSTREAM_PORT}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: up-1
  labels: {kubernetes.io/service-name: up}
addressType: IPv4
ports: [{name: http, port: $UPSTREAM_PORT, protocol: TCP}]
endpoints:
  - addresses: ["127.0.0.1"]
---
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata: {name: bench}
spec:
  method: GET
  path: /bench
  allowedApiKeyIds: [bench, load]
  target: {service: up, port: http}
---
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata: {name: bench}
spec: {keyHash: "$(key_hash "$ROTATED_KEY")"}
---
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata: {name: load}
spec: {keyHash: "$(key_hash "$LOAD_KEY")"}
YAML

GATEWAY_PORT="$(free_port)"
admin_port="$(free_port)"
start_pinned "$PROXY_CPUS" "$WORK_DIR/portcullis.log" env TOKIO_WORKER_THREADS=1 \
    RUST_LOG=warn,portcullis_gateway=info,portcullis::access=warn \
    "$PORTCULLIS" run --kubeconfig "$KUBECONFIG" --lease-namespace bench --log-format text \
    --listen "127.0.0.1:$GATEWAY_PORT" --admin-listen "127.0.0.1:$admin_port"
wait_for_status "$admin_port" /readyz 200
wait_for_status "$GATEWAY_PORT" /gw/bench/bench 200 -H "X-Api-Key: $LOAD_KEY"
log "portcullis run (1 tokio worker, CPUs $PROXY_CPUS) on 127.0.0.1:$GATEWAY_PORT"

LOAD_SECONDS=$((ROUNDS * 35 + 30))
start_pinned "$CLIENT_CPUS" "$WORK_DIR/load.txt" wrk -t1 -c16 -d"${LOAD_SECONDS}s" \
    -s "$REPO_ROOT/bench/status_count.lua" -H "X-Api-Key: $LOAD_KEY" \
    "http://127.0.0.1:$GATEWAY_PORT/gw/bench/bench"
LOAD_PID="${STARTED_PIDS[-1]}"
sleep 1

log "rotating the key $ROUNDS times under load with kubectl patch"
taskset -c "$CLIENT_CPUS" timeout "$LOAD_SECONDS" python3 "$REPO_ROOT/bench/rotation_probe.py" \
    --port "$GATEWAY_PORT" --path /gw/bench/bench --kubectl-namespace bench \
    --key "$ROTATED_KEY" --rounds "$ROUNDS" --timeout 10 >"$WORK_DIR/probe.json"

stop_pid "$LOAD_PID" INT

echo "probe: $(cat "$WORK_DIR/probe.json")"
echo "load:  $(grep '^LOAD ' "$WORK_DIR/load.txt" || echo 'wrk printed no summary')"
echo "snapshots installed: $(grep -c 'snapshot installed' "$WORK_DIR/portcullis.log" || true)"
