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
