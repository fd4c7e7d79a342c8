#!/usr/bin/env bash
# The test command: formatting, lints, every Rust test, and the offline
# packaging checks. End-to-end tests against Kubernetes run when
# PORTCULLIS_E2E_KUBECONFIG names a kubeconfig (see README.md); they are
# skipped with a message otherwise, or fail when PORTCULLIS_E2E_REQUIRED=1.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

echo "== packaging checks"
bash tests/packaging/check.sh

# These create the install manifest's objects for real, so they run only
# against a disposable API server (.ci/run sets PORTCULLIS_E2E_DISPOSABLE).
if [ -n "${PORTCULLIS_E2E_KUBECONFIG:-}" ] && [ "${PORTCULLIS_E2E_DISPOSABLE:-}" = 1 ]; then
  echo "== packaging checks against the API server"
  KUBECONFIG="$PORTCULLIS_E2E_KUBECONFIG" bash tests/packaging/server-dry-run.sh
  KUBECONFIG="$PORTCULLIS_E2E_KUBECONFIG" bash tests/packaging/rbac-check.sh
fi
