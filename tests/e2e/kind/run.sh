#!/usr/bin/env bash
# Runs the end-to-end suite against Portcullis installed on a kind cluster.
#
#   tests/e2e/kind/run.sh [--keep]
#
# Needs docker, kind, kubectl, helm and cargo. The script creates a kind
# cluster, builds the image from the repository's Dockerfile and loads it into
# the cluster, and installs the chart. Then it port-forwards the gateway
# Service to 127.0.0.1 and runs `cargo test -p portcullis-e2e` in cluster
# mode. Each test creates its own namespace, deploys the demo functions `echo`
# and `events` of demo-functions.yaml into it, and deletes it at the end.
#
# On exit it stops the port-forward and deletes the cluster, unless --keep is
# given; then the cluster stays for inspection and the script prints how to
# reach it. A cluster of the same name that existed before the run is reused
# and never deleted.
#
# Settings:
#   KIND_CLUSTER_NAME  cluster name (default: portcullis-e2e)
#   KIND_NODE_IMAGE    node image for `kind create cluster --image`
#                      (default: the one of the installed kind)
#   HELM               helm binary (default: helm on PATH)
set -euo pipefail

usage() {
  sed -n '2,/^set -euo pipefail/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

keep=false
for argument in "$@"; do
  case "$argument" in
    --keep) keep=true ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      echo "error: unknown argument '$argument'; see --help" >&2
      exit 2
      ;;
  esac
done

readonly CLUSTER_NAME=${KIND_CLUSTER_NAME:-portcullis-e2e}
readonly IMAGE=portcullis:e2e
readonly RELEASE=portcullis
readonly RELEASE_NAMESPACE=portcullis-system
helm_bin=${HELM:-helm}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)

for tool in docker kind kubectl "$helm_bin" cargo; do
  if ! command -v "$tool" >/dev/null; then
    echo "error: $tool is not installed or not on PATH" >&2
    exit 1
  fi
done

log() {
  echo "==> $*" >&2
}

# A kubeconfig of its own keeps the user's ~/.kube/config and current context
# untouched. kubectl and helm read KUBECONFIG, and the suite gets the same file
# as PORTCULLIS_E2E_KUBECONFIG.
work_dir=$(mktemp -d)
export KUBECONFIG="$work_dir/kubeconfig"
created_cluster=false
port_forward_pid=""

cleanup() {
  local status=$?
  set +e
  if [[ -n "$port_forward_pid" ]]; then
    kill "$port_forward_pid" 2>/dev/null
    wait "$port_forward_pid" 2>/dev/null
  fi
  if [[ "$status" -ne 0 && -s "$KUBECONFIG" ]]; then
    log "Failed with status $status; state of the cluster:"
    kubectl get pods --all-namespaces -o wide
    kubectl --namespace "$RELEASE_NAMESPACE" logs "deployment/$RELEASE" --tail=100
  fi
  if [[ "$keep" == true ]]; then
    log "Keeping cluster $CLUSTER_NAME. Reach it with:"
    echo "    kind export kubeconfig --name $CLUSTER_NAME" >&2
    echo "Delete it with: kind delete cluster --name $CLUSTER_NAME" >&2
  elif [[ "$created_cluster" == true ]]; then
    log "Deleting cluster $CLUSTER_NAME"
    kind delete cluster --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG"
  fi
  rm -rf "$work_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Cluster and image ---------------------------------------------------------

existing_clusters=$(kind get clusters 2>/dev/null)
if grep -qxF "$CLUSTER_NAME" <<<"$existing_clusters"; then
  log "Reusing existing kind cluster $CLUSTER_NAME"
  kind export kubeconfig --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG"
else
  log "Creating kind cluster $CLUSTER_NAME"
  create_args=(--name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG" --wait 180s)
  if [[ -n "${KIND_NODE_IMAGE:-}" ]]; then
    create_args+=(--image "$KIND_NODE_IMAGE")
  fi
  created_cluster=true
  kind create cluster "${create_args[@]}"
fi

log "Building $IMAGE"
docker build --tag "$IMAGE" "$repo_root"

log "Loading $IMAGE into the cluster nodes"
kind load docker-image "$IMAGE" --name "$CLUSTER_NAME"

# --- Gateway ---------------------------------------------------------------------

# The CRDs come from the chart's crds/ directory, which Helm applies on the
# first install only; applying them here keeps a reused cluster current.
log "Installing the chart as release $RELEASE in $RELEASE_NAMESPACE"
kubectl apply -f "$repo_root/charts/portcullis/crds/crds.yaml"
"$helm_bin" upgrade --install "$RELEASE" "$repo_root/charts/portcullis" \
  --namespace "$RELEASE_NAMESPACE" --create-namespace \
  --set image.repository=portcullis \
  --set image.tag=e2e \
  --set image.pullPolicy=IfNotPresent \
  --set logFormat=text

log "Waiting for the rollout"
kubectl --namespace "$RELEASE_NAMESPACE" rollout status "deployment/$RELEASE" --timeout=300s

# --- Port-forward ------------------------------------------------------------------

# ":80" lets kubectl choose a free local port, which it prints as
# "Forwarding from 127.0.0.1:PORT -> 8080".
log "Port-forwarding service/$RELEASE to 127.0.0.1"
kubectl --namespace "$RELEASE_NAMESPACE" port-forward --address 127.0.0.1 \
  "service/$RELEASE" :80 >"$work_dir/port-forward.log" 2>&1 &
port_forward_pid=$!

local_port=""
for _ in $(seq 1 100); do
  local_port=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$work_dir/port-forward.log" | head -n 1)
  if [[ -n "$local_port" ]]; then
    break
  fi
  if ! kill -0 "$port_forward_pid" 2>/dev/null; then
    cat "$work_dir/port-forward.log" >&2
    echo "error: kubectl port-forward exited" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z "$local_port" ]]; then
  cat "$work_dir/port-forward.log" >&2
  echo "error: kubectl port-forward printed no local port within 10 seconds" >&2
  exit 1
fi
log "Gateway at http://127.0.0.1:$local_port"

# --- Suite ---------------------------------------------------------------------------

log "Running the end-to-end suite"
cd "$repo_root"
PORTCULLIS_E2E_MODE=cluster \
  PORTCULLIS_E2E_KUBECONFIG="$KUBECONFIG" \
  PORTCULLIS_E2E_GATEWAY="http://127.0.0.1:$local_port" \
  PORTCULLIS_E2E_REQUIRED=1 \
  cargo test -p portcullis-e2e -- --test-threads 4
