#!/usr/bin/env bash
# Load benchmark: Portcullis next to nginx and HAProxy doing the same API-key
# check, all proxying to one nginx upstream, with the same keep-alive wrk
# load. Prints Markdown tables of requests per second and latency
# percentiles, at CONNECTIONS connections and at one connection, and the
# ratios between the rows.
#
# Usage: bench/run.sh [--duration SECONDS] [--connections N] [--skip-build]
#
# Pinning (see docs/benchmarks.md): the server under test runs on
# PROXY_CPUS (default 0) with one worker, which is one tokio worker thread,
# one nginx worker process or one HAProxy thread. wrk and the upstream share
# CLIENT_CPUS (default 1). Everything listens on 127.0.0.1 and is stopped on
# exit.

set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=10
WARMUP=2
CONNECTIONS=64
BUILD=1
while (($#)); do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --connections) CONNECTIONS="$2"; shift 2 ;;
        --skip-build) BUILD=0; shift ;;
        -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 && "$DURATION" -le 300 ]] ||
    die "--duration must be 1 to 300 seconds"
[[ "$CONNECTIONS" =~ ^[0-9]+$ && "$CONNECTIONS" -ge 1 && "$CONNECTIONS" -le 1000 ]] ||
    die "--connections must be 1 to 1000"

trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_tools
((BUILD)) && build_portcullis
[[ -x "$PORTCULLIS" ]] || die "$PORTCULLIS not found; run without --skip-build"
make_work_dir

KEY="$(new_key)"
declare -A RESULTS

# Runs wrk against one URL: a warm-up, then a measured run with
# CONNECTIONS connections (stored under NAME) and one with a single
# connection (stored under NAME_single), which shows the latency of one
# request without queueing.
load() {
    local name="$1" url="$2"
    shift 2
    log "load: $name ($url)"
    taskset -c "$CLIENT_CPUS" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "$@" "$url" >/dev/null
    measure "$name" "$CONNECTIONS" "$url" "$@"
    measure "${name}_single" 1 "$url" "$@"
}

measure() {
    local name="$1" connections="$2" url="$3"
    shift 3
    local output
    output="$(taskset -c "$CLIENT_CPUS" wrk -t1 -c"$connections" -d"${DURATION}s" --latency \
        -s "$REPO_ROOT/bench/report.lua" "$@" "$url")"
    printf '%s\n' "$output" >"$WORK_DIR/wrk-$name.txt"
    RESULTS[$name]="$(grep '^RESULT ' <<<"$output")" || die "wrk printed no result for $name"
}

# Prints field KEY of the stored result NAME.
field() {
    sed -n "s/.* $2=\([0-9.]*\).*/\1/p" <<<" ${RESULTS[$1]}"
}

expect_status() {
    local expected="$1" port="$2" path="$3"
    shift 3
    local status
    status="$(http_status "$port" "$path" "$@")"
    [[ "$status" == "$expected" ]] || die "GET 127.0.0.1:$port$path returned $status, expected $expected"
}

start_upstream

# (a) Direct to the upstream.
load direct "http://127.0.0.1:$UPSTREAM_PORT/bench"

# (b) and (e): Portcullis with the access log at its default level (info).
CONFIG_DIR="$WORK_DIR/portcullis"
write_route_config "$CONFIG_DIR" "[bench]"
write_api_key "$CONFIG_DIR/key-bench.yaml" bench "$KEY"
start_portcullis "$CONFIG_DIR" "$WORK_DIR/portcullis.log"
expect_status 200 "$GATEWAY_PORT" /gw/default/bench -H "X-Api-Key: $KEY"
expect_status 401 "$GATEWAY_PORT" /gw/default/bench
load portcullis "http://127.0.0.1:$GATEWAY_PORT/gw/default/bench" -H "X-Api-Key: $KEY"
load portcullis_401 "http://127.0.0.1:$GATEWAY_PORT/gw/default/bench"
stop_pid "$GATEWAY_PID"

# (b') The same with the per-request access log filtered out.
start_portcullis "$CONFIG_DIR" "$WORK_DIR/portcullis-quiet.log" RUST_LOG=warn
expect_status 200 "$GATEWAY_PORT" /gw/default/bench -H "X-Api-Key: $KEY"
load portcullis_quiet "http://127.0.0.1:$GATEWAY_PORT/gw/default/bench" -H "X-Api-Key: $KEY"
stop_pid "$GATEWAY_PID"

# (c) nginx doing the same check (see write_nginx_proxy_config in lib.sh).
NGINX_PORT="$(free_port)"
NGINX_PREFIX="$WORK_DIR/nginx"
write_nginx_proxy_config "$NGINX_PREFIX" "$NGINX_PORT" "$KEY"
start_pinned "$PROXY_CPUS" "$NGINX_PREFIX/stderr.log" nginx -p "$NGINX_PREFIX" -c "$NGINX_PREFIX/nginx.conf" -e "$NGINX_PREFIX/error.log"
NGINX_PID="${STARTED_PIDS[-1]}"
wait_for_status "$NGINX_PORT" /gw/default/bench 200 -H "X-Api-Key: $KEY"
expect_status 401 "$NGINX_PORT" /gw/default/bench
load nginx "http://127.0.0.1:$NGINX_PORT/gw/default/bench" -H "X-Api-Key: $KEY"
stop_pid "$NGINX_PID"

# (d) HAProxy doing the same check (see write_haproxy_config in lib.sh).
HAPROXY_PORT="$(free_port)"
write_haproxy_config "$WORK_DIR/haproxy.cfg" "$HAPROXY_PORT" "$KEY"
start_pinned "$PROXY_CPUS" "$WORK_DIR/haproxy.log" haproxy -db -f "$WORK_DIR/haproxy.cfg"
HAPROXY_PID="${STARTED_PIDS[-1]}"
wait_for_status "$HAPROXY_PORT" /gw/default/bench 200 -H "X-Api-Key: $KEY"
expect_status 401 "$HAPROXY_PORT" /gw/default/bench
load haproxy "http://127.0.0.1:$HAPROXY_PORT/gw/default/bench" -H "X-Api-Key: $KEY"
stop_pid "$HAPROXY_PID"

# Every row but the 401 row must have returned 2xx only.
for name in direct portcullis portcullis_quiet nginx haproxy; do
    for run in "$name" "${name}_single"; do
        [[ "$(field "$run" non_2xx_3xx)" == 0 ]] || log "warning: $run had responses other than 2xx"
    done
done
for run in portcullis_401 portcullis_401_single; do
    [[ "$(field "$run" non_2xx_3xx)" == "$(field "$run" requests)" ]] ||
        log "warning: $run had responses other than 401"
done

milliseconds() {
    awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
}

table() {
    local suffix="$1" connections="$2"
    echo
    echo "wrk -t1 -c$connections -d${DURATION}s, server on CPUs $PROXY_CPUS, wrk and upstream on CPUs $CLIENT_CPUS; latency in ms"
    echo
    echo "| row | target | requests/s | p50 | p90 | p99 | p99.9 | socket errors |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    row a "direct$suffix" "upstream directly"
    row b "portcullis$suffix" "Portcullis, valid key (access log on)"
    row "b'" "portcullis_quiet$suffix" "Portcullis, valid key, RUST_LOG=warn"
    row c "nginx$suffix" "nginx map check + proxy (access log on)"
    row d "haproxy$suffix" "HAProxy ACL check + proxy (no access log)"
    row e "portcullis_401$suffix" "Portcullis, missing key: 401"
}

row() {
    local label="$1" name="$2" description="$3"
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$description" \
        "$(field "$name" rps)" \
        "$(milliseconds "$(field "$name" p50_us)")" \
        "$(milliseconds "$(field "$name" p90_us)")" \
        "$(milliseconds "$(field "$name" p99_us)")" \
        "$(milliseconds "$(field "$name" p999_us)")" \
        "$(field "$name" socket_errors)"
}
table "" "$CONNECTIONS"
table _single 1
echo
echo "Ratios at $CONNECTIONS connections (requests/s, p99) and at one connection (p50):"
echo
echo "| ratio | requests/s | p99 | p50, one connection |"
echo "|---|---:|---:|---:|"
for pair in "portcullis nginx b/c" "portcullis haproxy b/d" "portcullis direct b/a" \
    "portcullis_401 portcullis e/b" "portcullis_quiet nginx b'/c"; do
    read -r top bottom label <<<"$pair"
    printf '| %s | %s | %s | %s |\n' "$label" \
        "$(ratio "$(field "$top" rps)" "$(field "$bottom" rps)")" \
        "$(ratio "$(field "$top" p99_us)" "$(field "$bottom" p99_us)")" \
        "$(ratio "$(field "${top}_single" p50_us)" "$(field "${bottom}_single" p50_us)")"
done
