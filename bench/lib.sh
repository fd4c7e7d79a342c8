# Shared helpers for the load and rotation benchmarks. Sourced, not run.
#
# Every server started here listens on 127.0.0.1 only, is recorded in
# STARTED_PIDS and is stopped by `cleanup`, which the sourcing script
# installs as its EXIT trap.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORTCULLIS="$REPO_ROOT/target/release/portcullis"

# CPU pinning on a 2-core machine: the server under test gets PROXY_CPUS,
# and the load generator and the upstream share CLIENT_CPUS.
PROXY_CPUS="${PROXY_CPUS:-0}"
CLIENT_CPUS="${CLIENT_CPUS:-1}"

STARTED_PIDS=()
WORK_DIR=""

log() {
    printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    STARTED_PIDS=()
    if [[ -n "$WORK_DIR" && -d "$WORK_DIR" && -z "${KEEP_WORK_DIR:-}" ]]; then
        rm -rf "$WORK_DIR"
    fi
}

make_work_dir() {
    WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-bench.XXXXXX")"
    log "configs and logs in $WORK_DIR"
}

# Installs wrk, nginx and HAProxy from Debian packages when any is missing.
ensure_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || missing+=(nginx-light)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v curl >/dev/null || missing+=(curl)
    if ((${#missing[@]} == 0)); then
        return
    fi
    if [[ "$(id -u)" != 0 ]]; then
        die "missing ${missing[*]}; install them (apt-get install -y ${missing[*]}) or run as root"
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

build_portcullis() {
    log "building target/release/portcullis"
    (cd "$REPO_ROOT" && cargo build --release --quiet -p portcullis)
}

# Prints a TCP port on 127.0.0.1 that is free at the time of the call.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until GET http://127.0.0.1:PORT/PATH returns STATUS, for at most
# WAIT_SECONDS (default 15). Extra arguments are passed to curl (for
# example headers).
wait_for_status() {
    local port="$1" path="$2" expected="$3"
    shift 3
    local deadline=$((SECONDS + ${WAIT_SECONDS:-15})) status
    while ((SECONDS < deadline)); do
        status="$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$@" "http://127.0.0.1:$port$path" || true)"
        if [[ "$status" == "$expected" ]]; then
            return 0
        fi
        sleep 0.1
    done
    die "GET http://127.0.0.1:$port$path returned $status, expected $expected"
}

# Prints the status of one GET, with extra curl arguments.
http_status() {
    local port="$1" path="$2"
    shift 2
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "http://127.0.0.1:$port$path"
}

# Runs a command pinned to CPUS in the background and records its pid.
start_pinned() {
    local cpus="$1" logfile="$2"
    shift 2
    taskset -c "$cpus" "$@" >"$logfile" 2>&1 &
    STARTED_PIDS+=("$!")
}

# nginx as run by this user in the foreground: one worker, its own prefix
# directory for temp files, logs in the work directory.
nginx_main_block() {
    local prefix="$1"
    local user_line=""
    # As root, nginx would switch its worker to `nobody`; keep the caller's user.
    if [[ "$(id -u)" == 0 ]]; then
        user_line="user root;"
    fi
    cat <<EOF
$user_line
worker_processes 1;
daemon off;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events { worker_connections 4096; }
EOF
}

nginx_temp_paths() {
    local prefix="$1"
    cat <<EOF
    client_body_temp_path $prefix/client_body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;
EOF
}

# Starts the upstream: nginx returning 200 and a 3-byte body for every
# request, pinned to CLIENT_CPUS. Sets UPSTREAM_PORT.
start_upstream() {
    UPSTREAM_PORT="$(free_port)"
    local prefix="$WORK_DIR/upstream"
    mkdir -p "$prefix"
    {
        nginx_main_block "$prefix"
        cat <<EOF
http {
$(nginx_temp_paths "$prefix")
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / {
            default_type text/plain;
            return 200 "ok\n";
        }
    }
}
EOF
    } >"$prefix/nginx.conf"
    start_pinned "$CLIENT_CPUS" "$prefix/stderr.log" nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log"
    wait_for_status "$UPSTREAM_PORT" /bench 200
    log "upstream (nginx, 1 worker, CPUs $CLIENT_CPUS) on 127.0.0.1:$UPSTREAM_PORT"
}

# Writes PREFIX/nginx.conf for the nginx row of bench/run.sh: a map from
# X-Api-Key to allowed, 401 otherwise, a keep-alive upstream pool and the
# access log on as in a default nginx set-up. Extra arguments are added to
# the main context (for example `master_process off;`).
write_nginx_proxy_config() {
    local prefix="$1" port="$2" key="$3"
    shift 3
    mkdir -p "$prefix"
    {
        nginx_main_block "$prefix"
        cat <<EOF
http {
$(nginx_temp_paths "$prefix")
    access_log $prefix/access.log;
    keepalive_requests 100000000;
    map \$http_x_api_key \$api_key_allowed {
        default 0;
        "$key" 1;
    }
    upstream up {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$port;
        location = /gw/default/bench {
            if (\$api_key_allowed = 0) {
                add_header WWW-Authenticate 'ApiKey realm="bench"' always;
                return 401 '{"error":"missing or invalid API key"}';
            }
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Api-Key "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_pass http://up/bench;
        }
    }
}
EOF
        printf '%s\n' "$@"
    } >"$prefix/nginx.conf"
}

# Writes the HAProxy configuration of the HAProxy row of bench/run.sh into
# FILE: an ACL on the X-Api-Key header, 401 otherwise, server-side
# connection reuse and no access log (HAProxy logs only to syslog).
write_haproxy_config() {
    local file="$1" port="$2" key="$3"
    cat >"$file" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend bench
    bind 127.0.0.1:$port
    acl known_key req.hdr(x-api-key) -m str $key
    http-request return status 401 content-type application/json string '{"error":"missing or invalid API key"}' hdr WWW-Authenticate 'ApiKey realm="bench"' unless known_key
    http-request del-header x-api-key
    http-request set-path /bench
    default_backend up
backend up
    http-reuse always
    server up1 127.0.0.1:$UPSTREAM_PORT
EOF
    haproxy -c -q -f "$file" || die "HAProxy rejected $file"
}

# Prints a new random key: 32 bytes, base64url without padding.
new_key() {
    head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'
}

# Prints `sha256:<hex>` of a key.
key_hash() {
    printf '%s' "$1" | sha256sum | awk '{print "sha256:" $1}'
}

# Writes an ApiKey file for key NAME with the hash of KEY into FILE,
# replacing FILE atomically by rename.
write_api_key() {
    local file="$1" name="$2" key="$3"
    local temporary
    temporary="$(dirname "$file")/.$(basename "$file").tmp"
    cat >"$temporary" <<EOF
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata: {name: $name, namespace: default}
spec:
  keyHash: "$(key_hash "$key")"
EOF
    mv -f "$temporary" "$file"
}

# Writes the route `GET /bench` allowlisting the keys named in ALLOWLIST
# (a YAML flow list such as `[bench]`) and the EndpointSlice of the
# upstream into CONFIG_DIR.
write_route_config() {
    local config_dir="$1" allowlist="$2"
    mkdir -p "$config_dir"
    cat >"$config_dir/route.yaml" <<EOF
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata: {name: bench, namespace: default}
spec:
  method: GET
  path: /bench
  allowedApiKeyIds: $allowlist
  target: {service: up, port: http}
EOF
    cat >"$config_dir/endpoints.yaml" <<EOF
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: up-1
  namespace: default
  labels: {kubernetes.io/service-name: up}
addressType: IPv4
ports: [{name: http, port: $UPSTREAM_PORT, protocol: TCP}]
endpoints:
  - addresses: ["127.0.0.1"]
EOF
}

# Starts `portcullis serve` on CONFIG_DIR pinned to PROXY_CPUS with one
# tokio worker thread. Sets GATEWAY_PORT and GATEWAY_PID. Extra arguments
# are environment assignments (for example RUST_LOG=warn).
start_portcullis() {
    local config_dir="$1" logfile="$2"
    shift 2
    GATEWAY_PORT="$(free_port)"
    local admin_port
    admin_port="$(free_port)"
    start_pinned "$PROXY_CPUS" "$logfile" env TOKIO_WORKER_THREADS=1 "$@" \
        "$PORTCULLIS" serve --config "$config_dir" \
        --listen "127.0.0.1:$GATEWAY_PORT" --admin-listen "127.0.0.1:$admin_port"
    GATEWAY_PID="${STARTED_PIDS[-1]}"
    wait_for_status "$admin_port" /readyz 200
    log "portcullis (1 tokio worker, CPUs $PROXY_CPUS) on 127.0.0.1:$GATEWAY_PORT"
}

# Stops one process started by start_pinned, with SIGNAL (default TERM).
stop_pid() {
    local pid="$1" signal="${2:-TERM}" kept=() p
    kill -s "$signal" "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${STARTED_PIDS[@]}"; do
        [[ "$p" == "$pid" ]] || kept+=("$p")
    done
    STARTED_PIDS=("${kept[@]}")
}
