#!/usr/bin/env bash
# Builds Portcullis, starts two demo functions and the gateway on loopback
# with this directory's routes, creates a fresh API key for the
# partner-reporting ApiKey, and prints ready-to-paste curl commands.
# The key is printed once, here; only its SHA-256 is written to disk.
#
# Ports: 8080 (traffic), 9090 (admin), 18081 and 18082 (demo functions).
# Stop with Ctrl-C; everything started here is stopped with it.
set -euo pipefail

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
cp "$here/routes.yaml" "$here/endpoints.yaml" "$config/"

# The key goes to stdout exactly once; the config gets only its hash.
key=$("$bin" key create partner-reporting --config "$config" -n acme \
  --description "Reporting partner, read-only customer data")

"$bin" demo-function --listen 127.0.0.1:18081 --name customer-data 2>"$workdir/customer-data.log" &
pids+=($!)
"$bin" demo-function --listen 127.0.0.1:18082 --name web 2>"$workdir/web.log" &
pids+=($!)
"$bin" serve --config "$config" --listen 127.0.0.1:8080 --admin-listen 127.0.0.1:9090 \
  2>"$workdir/gateway.log" &
pids+=($!)

for _ in $(seq 1 100); do
  if curl -fsS http://127.0.0.1:9090/readyz >/dev/null 2>&1; then break; fi
  sleep 0.1
done
if ! curl -fsS http://127.0.0.1:9090/readyz >/dev/null 2>&1; then
  echo "error: the gateway did not become ready; its log:" >&2
  cat "$workdir/gateway.log" >&2
  exit 1
fi

cat <<TEXT

Portcullis is serving the quickstart on http://127.0.0.1:8080 (admin on :9090).
The key below was generated just now and is shown only this once.

  # 200: the partner key may read customer data
  curl -i -H 'X-Api-Key: $key' http://127.0.0.1:8080/gw/acme/customers/42

  # 401: the same request without the key never reaches the function
  curl -i http://127.0.0.1:8080/gw/acme/customers/42

  # 200: public route, no key
  curl -i http://127.0.0.1:8080/gw/acme/health

  # What the gateway thinks of every route and key
  curl -s http://127.0.0.1:9090/status

Config directory: $config (edit it; changes apply within a second)
Gateway log: $workdir/gateway.log
Press Ctrl-C to stop.
TEXT

wait "${pids[2]}"
