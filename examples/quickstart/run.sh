#!/usr/bin/env bash
# Builds Portcullis, starts two demo functions and the gateway on loopback
# with this directory's routes, creates a fresh API key for the
# partner-reporting ApiKey, and prints ready-to-paste curl commands.
# The key is printed once, here; only its SHA-256 is written to disk.
#
# Ports: 8080 (traffic), 9090 (admin), 18081 and 18082 (demo functions);
# set PORTCULLIS_PORT, PORTCULLIS_ADMIN_PORT, DEMO_PORT_1 or DEMO_PORT_2 to
# use others. Stop with Ctrl-C; everything started here is stopped with it,
# and the temporary config directory is deleted.
set -euo pipefail

port=${PORTCULLIS_PORT:-8080}
admin_port=${PORTCULLIS_ADMIN_PORT:-9090}
demo_port_1=${DEMO_PORT_1:-18081}
demo_port_2=${DEMO_PORT_2:-18082}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for p in "$port" "$admin_port" "$demo_port_1" "$demo_port_2"; do
  if port_in_use "$p"; then
    echo "error: port $p on 127.0.0.1 is already in use; stop what uses it or choose" \
      "other ports with PORTCULLIS_PORT, PORTCULLIS_ADMIN_PORT, DEMO_PORT_1 and DEMO_PORT_2" >&2
    exit 1
  fi
done

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

echo "Building portcullis (release)..." >&2
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p portcullis
bin="$root/target/release/portcullis"

workdir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT INT TERM

config="$workdir/config"
mkdir -p "$config"
cp "$here/routes.yaml" "$config/"
sed -e "s/port: 18081/port: $demo_port_1/" -e "s/port: 18082/port: $demo_port_2/" \
  "$here/endpoints.yaml" >"$config/endpoints.yaml"

# `key create` prints the key on stdout and writes only its SHA-256 into
# the config directory.
key=$("$bin" key create partner-reporting --config "$config" -n acme \
  --description "Reporting partner, read-only customer data")

"$bin" demo-function --listen "127.0.0.1:$demo_port_1" --name customer-data \
  2>"$workdir/customer-data.log" &
pids+=($!)
"$bin" demo-function --listen "127.0.0.1:$demo_port_2" --name web 2>"$workdir/web.log" &
pids+=($!)
"$bin" serve --config "$config" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin_port" \
  2>"$workdir/gateway.log" &
pids+=($!)

# fail NAME LOG: reports a process that did not start, with its log.
fail() {
  echo "error: the $1 did not start; its log:" >&2
  cat "$2" >&2
  exit 1
}

started=false
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 &&
    port_in_use "$demo_port_1" && port_in_use "$demo_port_2"; then
    started=true
    break
  fi
  sleep 0.1
done
kill -0 "${pids[0]}" 2>/dev/null || fail "customer-data demo function" "$workdir/customer-data.log"
kill -0 "${pids[1]}" 2>/dev/null || fail "web demo function" "$workdir/web.log"
kill -0 "${pids[2]}" 2>/dev/null || fail gateway "$workdir/gateway.log"
$started || fail gateway "$workdir/gateway.log"

cat <<TEXT

Portcullis is serving the quickstart on http://127.0.0.1:$port (admin on :$admin_port).
The key below was generated just now and is shown only this once.

  # 200: the partner key may read customer data
  curl -i -H 'X-Api-Key: $key' http://127.0.0.1:$port/gw/acme/customers/42

  # 401: the same request without the key never reaches the function
  curl -i http://127.0.0.1:$port/gw/acme/customers/42

  # 200: public route, no key
  curl -i http://127.0.0.1:$port/gw/acme/health

  # CORS preflight handled by the gateway, then 10 orders a minute per client
  curl -i -X OPTIONS -H 'Origin: http://localhost:3000' \\
    -H 'Access-Control-Request-Method: POST' http://127.0.0.1:$port/gw/acme/orders
  curl -i -X POST -H 'X-Api-Key: $key' http://127.0.0.1:$port/gw/acme/orders

  # What the gateway thinks of every route and key
  curl -s http://127.0.0.1:$admin_port/status

Config directory: $config
  (edit it and changes apply within a second; it is deleted when you stop)
Gateway log: $workdir/gateway.log
Press Ctrl-C to stop.
TEXT

wait "${pids[2]}"
