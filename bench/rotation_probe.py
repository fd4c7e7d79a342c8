#!/usr/bin/env python3
"""Measure how long a rotated-out API key keeps working in Portcullis.

Each round writes a new hash into the ApiKey file (temporary file, then an
atomic rename), or with --kubectl-namespace patches the ApiKey's keyHash
with `kubectl patch` and starts the clock when the patch returns, and polls the gateway with the old key on one keep-alive
connection until a request returns 401. The time from the rename to that 401 is
the rotation latency. The probe then keeps sending the old key for
`--after-requests` requests and counts any that succeed, and waits until the
new key is accepted before the next round. Only the Python standard library
is used; bench/rotation.sh starts the servers and the background load.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import random
import subprocess
import statistics
import sys
import time


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def write_api_key(path: str, name: str, key: str) -> None:
    digest = hashlib.sha256(key.encode()).hexdigest()
    temporary = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(
            "apiVersion: portcullis.dev/v1alpha1\n"
            "kind: ApiKey\n"
            f"metadata: {{name: {name}, namespace: default}}\n"
            "spec:\n"
            f'  keyHash: "sha256:{digest}"\n'
        )
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def patch_api_key(namespace: str, name: str, key: str) -> None:
    digest = hashlib.sha256(key.encode()).hexdigest()
    patch = json.dumps({"spec": {"keyHash": f"sha256:{digest}"}})
    subprocess.run(
        ["kubectl", "patch", "apikey", name, "-n", namespace, "--type", "merge", "-p", patch],
        check=True,
        stdout=subprocess.DEVNULL,
    )


class Client:
    """One keep-alive HTTP/1.1 connection to the gateway, reopened on error."""

    def __init__(self, port: int, path: str):
        self.port = port
        self.path = path
        self.connection = None

    def status(self, key: str) -> int:
        for _ in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                self.connection.request("GET", self.path, headers={"X-Api-Key": key})
                response = self.connection.getresponse()
                response.read()
                return response.status
            except (OSError, http.client.HTTPException):
                self.connection.close()
                self.connection = None
        raise RuntimeError(f"request to 127.0.0.1:{self.port}{self.path} failed twice")


def wait_until(client: Client, key: str, expected: int, timeout: float) -> float:
    """Poll with `key` until a request returns `expected`, and return the seconds taken."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if client.status(key) == expected:
            return time.monotonic() - started
    raise RuntimeError(f"no request returned {expected} within {timeout} s")


def percentile(values: list, fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="gateway port on 127.0.0.1")
    parser.add_argument("--path", default="/gw/default/bench", help="route URL path")
    parser.add_argument("--key-file", help="ApiKey YAML file to rewrite")
    parser.add_argument(
        "--kubectl-namespace",
        help="patch the ApiKey in this namespace with kubectl instead of writing a file",
    )
    parser.add_argument("--key-name", default="bench", help="ApiKey name")
    parser.add_argument("--key", required=True, help="current plaintext key")
    parser.add_argument("--rounds", type=int, default=30, help="rotations to measure")
    parser.add_argument(
        "--after-requests",
        type=int,
        default=200,
        help="old-key requests sent after the first 401 of each round",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per wait")
    parser.add_argument(
        "--pause",
        type=float,
        default=0.3,
        help="minimum seconds between rounds; up to 1 s of random jitter is added",
    )
    args = parser.parse_args()
    if not 1 <= args.rounds <= 1000:
        parser.error("--rounds must be 1 to 1000")
    if (args.key_file is None) == (args.kubectl_namespace is None):
        parser.error("give exactly one of --key-file and --kubectl-namespace")

    client = Client(args.port, args.path)
    key = args.key
    wait_until(client, key, 200, args.timeout)

    latencies = []
    old_key_accepted_after_rejection = 0
    server_errors = 0
    for _ in range(args.rounds):
        old_key, key = key, new_key()

        if args.kubectl_namespace:
            patch_api_key(args.kubectl_namespace, args.key_name, key)
            started = time.monotonic()
        else:
            started = time.monotonic()
            write_api_key(args.key_file, args.key_name, key)
        while True:
            status = client.status(old_key)
            if status >= 500:
                server_errors += 1
            if status == 401:
                latencies.append(time.monotonic() - started)
                break
            if time.monotonic() - started > args.timeout:
                raise RuntimeError(f"the old key still returned {status} after {args.timeout} s")

        for _ in range(args.after_requests):
            status = client.status(old_key)
            if status == 200:
                old_key_accepted_after_rejection += 1
            elif status >= 500:
                server_errors += 1

        wait_until(client, key, 200, args.timeout)
        # Random jitter keeps the writes from falling at one fixed phase of
        # the gateway's periodic rescans.
        time.sleep(args.pause + random.uniform(0.0, 1.0))

    milliseconds = [1000 * s for s in latencies]
    summary = {
        "rounds": len(latencies),
        "old_key_rejected_ms": {
            "p50": round(statistics.median(milliseconds), 1),
            "p99": round(percentile(milliseconds, 0.99), 1),
            "min": round(min(milliseconds), 1),
            "max": round(max(milliseconds), 1),
        },
        "old_key_accepted_after_first_rejection": old_key_accepted_after_rejection,
        "probe_5xx": server_errors,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
