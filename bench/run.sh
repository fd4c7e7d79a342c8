#!/usr/bin/env bash
# Load benchmark: Portcullis next to nginx and HAProxy doing the same API-key
# check, all proxying to one nginx upstream, with the same keep-alive wrk
# load. Prints Markdown tables of requests per second and latency
# percentiles, at CONNECTIONS connections and at one connection, and the
# ratios between the rows.
#
# Usage: bench/run.sh [--duration SECONDS] [--connections N] [--repeat N]
#                     [--skip-build]
#
# Every row is measured --repeat times (default 3), in rounds that visit the
# rows in turn, and the run with the median requests/s is reported, so a
# burst of other work on the machine does not decide a row alone.
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
REPEAT=3
BUILD=1
while (($#)); do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --connections) CONNECTIONS="$2"; shift 2 ;;
        --repeat) REPEAT="$2"; shift 2 ;;
        --skip-build) BUILD=0; shift ;;
        -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -ge 1 && "$DURATION" -le 300 ]] ||
    die "--duration must be 1 to 300 seconds"
[[ "$CONNECTIONS" =~ ^[0-9]+$ && "$CONNECTIONS" -ge 1 && "$CONNECTIONS" -le 1000 ]] ||
    die "--connections must be 1 to 1000"
[[ "$REPEAT" =~ ^[0-9]+$ && "$REPEAT" -ge 1 && "$REPEAT" -le 20 ]] ||
    die "--repeat must be 1 to 20"

trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_tools
((BUILD)) && build_portcullis
[[ -x "$PORTCULLIS" ]] || die "$PORTCULLIS not found; run without --skip-build"
make_work_dir

KEY="$(new_key)"

expect_status() {
    local expected="$1" port="$2" path="$3"
    shift 3
    local status
    status="$(http_status "$port" "$path" "$@")"
    [[ "$status" == "$expected" ]] || die "GET 127.0.0.1:$port$path returned $status, expected $expected"
}

# All servers start before the first measurement and stay up; an idle
# server on PROXY_CPUS costs the measured one next to nothing.
start_upstream

# Portcullis twice: with the access log at its default level (info), and
# with the per-request access log filtered out.
CONFIG_DIR="$WORK_DIR/portcullis"
write_route_config "$CONFIG_DIR" "[bench]"
write_api_key "$CONFIG_DIR/key-bench.yaml" bench "$KEY"
start_portcullis "$CONFIG_DIR" "$WORK_DIR/portcullis.log"
PORTCULLIS_PORT="$GATEWAY_PORT"
start_portcullis "$CONFIG_DIR" "$WORK_DIR/portcullis-quiet.log" RUST_LOG=warn
PORTCULLIS_QUIET_PORT="$GATEWAY_PORT"

# nginx and HAProxy doing the same check (see write_nginx_proxy_config and
# write_haproxy_config in lib.sh).
NGINX_PORT="$(free_port)"
write_nginx_proxy_config "$WORK_DIR/nginx" "$NGINX_PORT" "$KEY"
start_pinned "$PROXY_CPUS" "$WORK_DIR/nginx/stderr.log" \
    nginx -p "$WORK_DIR/nginx" -c "$WORK_DIR/nginx/nginx.conf" -e "$WORK_DIR/nginx/error.log"
HAPROXY_PORT="$(free_port)"
write_haproxy_config "$WORK_DIR/haproxy.cfg" "$HAPROXY_PORT" "$KEY"
start_pinned "$PROXY_CPUS" "$WORK_DIR/haproxy.log" haproxy -db -f "$WORK_DIR/haproxy.cfg"

for port in "$PORTCULLIS_PORT" "$PORTCULLIS_QUIET_PORT" "$NGINX_PORT" "$HAPROXY_PORT"; do
    wait_for_status "$port" /gw/default/bench 200 -H "X-Api-Key: $KEY"
    expect_status 401 "$port" /gw/default/bench
done

# Rows: label, result name, URL, whether the key is sent, description.
ROWS=(
    "a|direct|http://127.0.0.1:$UPSTREAM_PORT/bench|key|upstream directly"
    "b|portcullis|http://127.0.0.1:$PORTCULLIS_PORT/gw/default/bench|key|Portcullis, valid key (access log on)"
    "b'|portcullis_quiet|http://127.0.0.1:$PORTCULLIS_QUIET_PORT/gw/default/bench|key|Portcullis, valid key, RUST_LOG=warn"
    "c|nginx|http://127.0.0.1:$NGINX_PORT/gw/default/bench|key|nginx map check + proxy (access log on)"
    "d|haproxy|http://127.0.0.1:$HAPROXY_PORT/gw/default/bench|key|HAProxy ACL check + proxy (no access log)"
    "e|portcullis_401|http://127.0.0.1:$PORTCULLIS_PORT/gw/default/bench|none|Portcullis, missing key: 401"
)

declare -A RESULTS

# Runs wrk once and stores its RESULT line under NAME.
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

for ((round = 1; round <= REPEAT; round++)); do
    for row in "${ROWS[@]}"; do
        IFS='|' read -r _ name url key _ <<<"$row"
        headers=()
        [[ "$key" == key ]] && headers=(-H "X-Api-Key: $KEY")
        log "round $round/$REPEAT: $name"
        if ((round == 1)); then
            taskset -c "$CLIENT_CPUS" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "${headers[@]}" "$url" >/dev/null
        fi
        measure "$name#$round" "$CONNECTIONS" "$url" "${headers[@]}"
        measure "${name}_single#$round" 1 "$url" "${headers[@]}"
    done
done

# Every row but the 401 row must have returned 2xx only.
for row in "${ROWS[@]}"; do
    IFS='|' read -r _ name _ key _ <<<"$row"
    for ((round = 1; round <= REPEAT; round++)); do
        for run in "$name#$round" "${name}_single#$round"; do
            if [[ "$key" == key ]]; then
                [[ "$(field "$run" non_2xx_3xx)" == 0 ]] || log "warning: $run had responses other than 2xx"
            else
                [[ "$(field "$run" non_2xx_3xx)" == "$(field "$run" requests)" ]] ||
                    log "warning: $run had responses other than 401"
            fi
        done
    done
done

# Prints the result name of the run of NAME with the median requests/s.
median_run() {
    local name="$1" round
    for ((round = 1; round <= REPEAT; round++)); do
        printf '%s %s\n' "$(field "$name#$round" rps)" "$name#$round"
    done | sort -n | awk -v middle=$(((REPEAT + 1) / 2)) 'NR == middle { print $2 }'
}

# Prints `min-max` of the requests/s of all runs of NAME.
rps_range() {
    local name="$1" round
    for ((round = 1; round <= REPEAT; round++)); do
        field "$name#$round" rps
    done | sort -n | awk 'NR == 1 { low = $1 } { high = $1 } END { print low "-" high }'
}

milliseconds() {
    awk -v us="$1" 'BEGIN { printf "%.3f", us / 1000 }'
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
}

table() {
    local suffix="$1" connections="$2" row label name description run
    echo
    echo "wrk -t1 -c$connections -d${DURATION}s, median of $REPEAT runs by requests/s;" \
        "server on CPUs $PROXY_CPUS, wrk and upstream on CPUs $CLIENT_CPUS; latency in ms"
    echo
    echo "| row | target | requests/s | range of $REPEAT runs | p50 | p90 | p99 | p99.9 | socket errors |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for row in "${ROWS[@]}"; do
        IFS='|' read -r label name _ _ description <<<"$row"
        run="$(median_run "$name$suffix")"
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$description" \
            "$(field "$run" rps)" \
            "$(rps_range "$name$suffix")" \
            "$(milliseconds "$(field "$run" p50_us)")" \
            "$(milliseconds "$(field "$run" p90_us)")" \
            "$(milliseconds "$(field "$run" p99_us)")" \
            "$(milliseconds "$(field "$run" p999_us)")" \
            "$(field "$run" socket_errors)"
    done
}

table "" "$CONNECTIONS"
table _single 1
echo
echo "Ratios of the median runs at $CONNECTIONS connections (requests/s, p99) and at one connection (p50):"
echo
echo "| ratio | requests/s | p99 | p50, one connection |"
echo "|---|---:|---:|---:|"
for pair in "portcullis nginx b/c" "portcullis haproxy b/d" "portcullis direct b/a" \
    "portcullis_401 portcullis e/b" "portcullis_quiet nginx b'/c"; do
    read -r top bottom label <<<"$pair"
    top_run="$(median_run "$top")"
    bottom_run="$(median_run "$bottom")"
    printf '| %s | %s | %s | %s |\n' "$label" \
        "$(ratio "$(field "$top_run" rps)" "$(field "$bottom_run" rps)")" \
        "$(ratio "$(field "$top_run" p99_us)" "$(field "$bottom_run" p99_us)")" \
        "$(ratio "$(field "$(median_run "${top}_single")" p50_us)" \
            "$(field "$(median_run "${bottom}_single")" p50_us)")"
done
