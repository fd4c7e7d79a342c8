#!/usr/bin/env bash
# Instruction profile of the request path. Portcullis (with and without the
# access log) and the nginx and HAProxy rows of bench/run.sh each run under
# valgrind's callgrind while wrk sends a bounded keep-alive load with a
# valid key.
# Prints instructions per request for each, and the hottest functions of
# Portcullis with callgrind_annotate. Callgrind counts instructions, so the
# result does not depend on what else the machine is doing. Under valgrind a
# server runs about 50 times slower, so its latency here means nothing.
#
# Usage: bench/profile.sh [--seconds N] [--skip-build]
#
# The callgrind files are kept in target/bench/.

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS_OF_LOAD=15
BUILD=1
while (($#)); do
    case "$1" in
        --seconds) SECONDS_OF_LOAD="$2"; shift 2 ;;
        --skip-build) BUILD=0; shift ;;
        -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ "$SECONDS_OF_LOAD" =~ ^[0-9]+$ && "$SECONDS_OF_LOAD" -ge 1 && "$SECONDS_OF_LOAD" -le 300 ]] ||
    die "--seconds must be 1 to 300"

trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_tools
command -v valgrind >/dev/null || die "valgrind is missing (apt-get install -y valgrind)"
((BUILD)) && build_portcullis
[[ -x "$PORTCULLIS" ]] || die "$PORTCULLIS not found; run without --skip-build"
make_work_dir
OUT_DIR="$REPO_ROOT/target/bench"
mkdir -p "$OUT_DIR"
start_upstream

KEY="$(new_key)"
CONFIG_DIR="$WORK_DIR/portcullis"
write_route_config "$CONFIG_DIR" "[bench]"
write_api_key "$CONFIG_DIR/key-bench.yaml" bench "$KEY"

# Runs SERVER_COMMAND under callgrind with instrumentation switched on only
# for the load, then prints instructions per request. READY_PORT and
# READY_PATH name a readiness URL that must return 200, or are `-`. Leading
# NAME=VALUE arguments are set in the environment of valgrind, which does
# not follow the exec of `env`.
# Usage: profile NAME PORT READY_PORT READY_PATH -- [NAME=VALUE...] COMMAND...
profile() {
    local name="$1" port="$2" ready_port="$3" ready_path="$4"
    shift 5
    local environment=()
    while [[ "$1" =~ ^[A-Z_]+= ]]; do
        environment+=("$1")
        shift
    done
    local out="$OUT_DIR/callgrind-$name.out"
    rm -f "$out"
    start_pinned "$PROXY_CPUS" "$WORK_DIR/$name.log" env "${environment[@]}" \
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$@"
    local pid="${STARTED_PIDS[-1]}"
    if [[ "$ready_port" != - ]]; then
        wait_for_status "$ready_port" "$ready_path" 200
    fi
    wait_for_status "$port" /gw/default/bench 200 -H "X-Api-Key: $KEY"

    callgrind_control --instr=on "$pid" >/dev/null
    local output requests instructions
    output="$(taskset -c "$CLIENT_CPUS" wrk -t1 -c8 -d"${SECONDS_OF_LOAD}s" -H "X-Api-Key: $KEY" \
        "http://127.0.0.1:$port/gw/default/bench")"
    callgrind_control --instr=off "$pid" >/dev/null
    # SIGTERM stops the server gracefully and callgrind writes its output.
    stop_pid "$pid"

    requests="$(awk '/requests in/ { print $1 }' <<<"$output")"
    instructions="$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')"
    printf '%s: %s requests, %s instructions, %s instructions per request\n' "$name" \
        "$requests" "$instructions" "$((instructions / requests))"
}

port="$(free_port)" admin="$(free_port)"
profile portcullis "$port" "$admin" /readyz -- TOKIO_WORKER_THREADS=1 \
    "$PORTCULLIS" serve --config "$CONFIG_DIR" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin"

port="$(free_port)" admin="$(free_port)"
profile portcullis-quiet "$port" "$admin" /readyz -- TOKIO_WORKER_THREADS=1 RUST_LOG=warn \
    "$PORTCULLIS" serve --config "$CONFIG_DIR" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin"

# nginx without a master process, so the one process that serves is the one
# callgrind runs.
port="$(free_port)"
write_nginx_proxy_config "$WORK_DIR/nginx" "$port" "$KEY" "master_process off;"
profile nginx "$port" - - -- \
    nginx -p "$WORK_DIR/nginx" -c "$WORK_DIR/nginx/nginx.conf" -e "$WORK_DIR/nginx/error.log"

port="$(free_port)"
write_haproxy_config "$WORK_DIR/haproxy.cfg" "$port" "$KEY"
profile haproxy "$port" - - -- haproxy -db -f "$WORK_DIR/haproxy.cfg"

echo
echo "== Portcullis, exclusive instructions"
callgrind_annotate "$OUT_DIR/callgrind-portcullis.out" 2>/dev/null | sed -n '/^Ir  *file:function/,$p' | sed -n '3,32p'
echo "== Portcullis, inclusive instructions of its own functions"
callgrind_annotate --inclusive=yes --threshold=100 "$OUT_DIR/callgrind-portcullis.out" 2>/dev/null |
    grep -E 'portcullis_|tracing_core::event::Event::dispatch|with_label_values|send_request' | sed -n '1,30p'
