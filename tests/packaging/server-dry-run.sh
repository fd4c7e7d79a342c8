#!/usr/bin/env bash
# Validates manifests/install.yaml against a live API server with
# `kubectl apply --dry-run=server`.
#
#   KUBECONFIG=/path/to/kubeconfig tests/packaging/server-dry-run.sh
#
# Meant for a disposable test API server: the CRDs and the portcullis-system
# Namespace are created for real first, because a dry run neither establishes
# a CRD nor creates a namespace, and the objects after them need both. The
# rest of the manifest is only dry-run.
#
# What the API server checks depends on the server. Every server rejects
# unknown fields (kubectl's default strict field validation), invalid CRDs and
# objects in namespaces that do not exist. A full kube-apiserver also validates
# the built-in kinds (Deployment, Service, RBAC), which lightweight test
# servers without the built-in validation skip.
set -euo pipefail

if [[ -z "${KUBECONFIG:-}" ]]; then
  echo "error: KUBECONFIG is not set; point it at the kubeconfig of a test API server" >&2
  exit 2
fi

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
install_yaml="$repo_root/manifests/install.yaml"
chart_crds="$repo_root/charts/portcullis/crds/crds.yaml"
readonly NAMESPACE=portcullis-system

echo "Creating the CRDs and the $NAMESPACE namespace"
kubectl apply -f "$chart_crds"
kubectl wait --for=condition=Established --timeout=60s \
  crd/gatewayroutes.portcullis.dev crd/apikeys.portcullis.dev
kubectl create namespace "$NAMESPACE" --dry-run=client --output=yaml | kubectl apply -f -

echo "Dry-running $install_yaml"
kubectl apply --dry-run=server -f "$install_yaml"

# The CRDs also have to accept the example resources that users start from.
echo "Dry-running an example GatewayRoute and ApiKey"
kubectl apply --dry-run=server -f - <<'EOF'
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata:
  name: customer-data
  namespace: portcullis-system
spec:
  method: GET
  path: /customers/:customerId
  allowedApiKeyIds: [partner-reporting]
  target: {service: customer-data, port: 8080}
  eventFormat: simple
  rateLimit: 120
  cors: {enabled: true}
---
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata:
  name: partner-reporting
  namespace: portcullis-system
spec:
  keyHash: "sha256:0000000000000000000000000000000000000000000000000000000000000000"
  description: Reporting partner, read-only customer data
EOF

# A dry run that accepts everything proves nothing, so one invalid route must
# be rejected by the CRD's schema (timeoutSeconds is at most 900).
echo "Dry-running an invalid GatewayRoute, which must be rejected"
if kubectl apply --dry-run=server -f - <<'EOF'; then
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata:
  name: invalid-timeout
  namespace: portcullis-system
spec:
  method: GET
  path: /slow
  timeoutSeconds: 901
  target: {service: slow, port: 8080}
EOF
  echo "error: the API server accepted a GatewayRoute with timeoutSeconds 901" >&2
  exit 1
fi

echo "server dry run passed"
