#!/usr/bin/env bash
# Checks the chart's RBAC against a live RBAC authorizer: the controller's
# ServiceAccount must be allowed exactly what it needs, and denied the rest.
#
#   KUBECONFIG=/path/to/kubeconfig tests/packaging/rbac-check.sh
#
# Only for a disposable test API server: it creates the objects of
# manifests/install.yaml for real, and a second release of the chart limited
# to watched namespaces. The caller needs permission to impersonate users,
# which `kubectl auth can-i --as` relies on.
#
# Settings:
#   HELM  helm binary (default: the version pinned by install-helm.sh)
set -euo pipefail

if [[ -z "${KUBECONFIG:-}" ]]; then
  echo "error: KUBECONFIG is not set; point it at the kubeconfig of a test API server" >&2
  exit 2
fi

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
helm_bin=${HELM:-$("$repo_root/tests/packaging/install-helm.sh")}

passed=0
failed=0

# expect DECISION USER VERB RESOURCE [kubectl auth can-i flags...]
# Asks the authorizer whether USER may perform VERB on RESOURCE and compares
# its decision (yes or no) with DECISION.
expect() {
  local expected=$1 user=$2 verb=$3 resource=$4
  shift 4
  local actual
  # can-i exits 1 for "no", which is an expected decision here, not an error.
  actual=$(kubectl auth can-i "$verb" "$resource" --as="$user" "$@" 2>/dev/null || true)
  if [[ "$actual" == "$expected" ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL: can-i $verb $resource $* as $user: got '$actual', expected '$expected'" >&2
  fi
}

# Bindings take effect once the authorizer's caches see them, a few
# milliseconds after the write on a test server, longer on a busy cluster.
wait_until_allowed() {
  local user=$1 verb=$2 resource=$3
  shift 3
  for _ in $(seq 1 50); do
    if kubectl auth can-i "$verb" "$resource" --as="$user" "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  echo "error: $user was still not allowed to $verb $resource after 10 seconds" >&2
  return 1
}

echo "Creating the objects of manifests/install.yaml"
kubectl apply -f "$repo_root/manifests/install.yaml" >/dev/null

controller=system:serviceaccount:portcullis-system:portcullis
wait_until_allowed "$controller" list gatewayroutes.portcullis.dev --all-namespaces

echo "Checking the cluster-wide release (no watchNamespaces)"
for resource in gatewayroutes.portcullis.dev apikeys.portcullis.dev services endpointslices.discovery.k8s.io; do
  for verb in get list watch; do
    expect yes "$controller" "$verb" "$resource" --all-namespaces
  done
  expect no "$controller" create "$resource" --namespace=tenant-a
  expect no "$controller" delete "$resource" --namespace=tenant-a
done
for resource in gatewayroutes.portcullis.dev apikeys.portcullis.dev; do
  expect yes "$controller" patch "$resource" --subresource=status --namespace=tenant-a
  expect yes "$controller" update "$resource" --subresource=status --namespace=tenant-a
  expect no "$controller" update "$resource" --namespace=tenant-a
done
expect yes "$controller" create tokenreviews.authentication.k8s.io
expect yes "$controller" create subjectaccessreviews.authorization.k8s.io
# kube-runtime's event recorder writes events.k8s.io/v1 Events only.
expect yes "$controller" create events.events.k8s.io --namespace=tenant-a
expect yes "$controller" patch events.events.k8s.io --namespace=tenant-a
expect no "$controller" delete events.events.k8s.io --namespace=tenant-a
expect no "$controller" create events --namespace=tenant-a
expect yes "$controller" create leases.coordination.k8s.io --namespace=portcullis-system
for verb in get update; do
  expect yes "$controller" "$verb" leases.coordination.k8s.io/portcullis-leader --namespace=portcullis-system
  expect no "$controller" "$verb" leases.coordination.k8s.io/other-lease --namespace=portcullis-system
  expect no "$controller" "$verb" leases.coordination.k8s.io/portcullis-leader --namespace=tenant-a
done
expect no "$controller" get secrets --all-namespaces
expect no "$controller" list pods --all-namespaces
expect no "$controller" invoke gatewayroutes.portcullis.dev --namespace=tenant-a
expect no "$controller" create clusterrolebindings.rbac.authorization.k8s.io

echo "Checking a release limited to watchNamespaces [team-a]"
scoped_namespace=portcullis-scoped
kubectl create namespace "$scoped_namespace" --dry-run=client --output=yaml | kubectl apply -f - >/dev/null
kubectl create namespace team-a --dry-run=client --output=yaml | kubectl apply -f - >/dev/null
"$helm_bin" template portcullis-scoped "$repo_root/charts/portcullis" \
  --namespace "$scoped_namespace" --set 'watchNamespaces={team-a}' |
  kubectl apply -f - >/dev/null

scoped=system:serviceaccount:$scoped_namespace:portcullis-scoped
wait_until_allowed "$scoped" list gatewayroutes.portcullis.dev --namespace=team-a
for resource in gatewayroutes.portcullis.dev apikeys.portcullis.dev services endpointslices.discovery.k8s.io; do
  expect yes "$scoped" list "$resource" --namespace=team-a
  expect yes "$scoped" watch "$resource" --namespace=team-a
  expect no "$scoped" list "$resource" --namespace=team-b
  expect no "$scoped" list "$resource" --all-namespaces
done
expect yes "$scoped" patch gatewayroutes.portcullis.dev --subresource=status --namespace=team-a
expect no "$scoped" patch gatewayroutes.portcullis.dev --subresource=status --namespace=team-b
expect yes "$scoped" create events.events.k8s.io --namespace=team-a
expect no "$scoped" create events.events.k8s.io --namespace=team-b
expect yes "$scoped" create tokenreviews.authentication.k8s.io
expect yes "$scoped" create subjectaccessreviews.authorization.k8s.io
expect yes "$scoped" update leases.coordination.k8s.io/portcullis-leader --namespace="$scoped_namespace"

echo "rbac: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
