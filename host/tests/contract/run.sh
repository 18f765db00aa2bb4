#!/usr/bin/env bash
# The REST contract test: starts the host on its embedded default (SQLite,
# in-process queue, the default components) in a scratch directory, then runs
# schemathesis with every check and every phase (examples, coverage, fuzzing,
# stateful) against the OpenAPI document the host serves. Any failure fails
# the run. Schemathesis lives in a private virtualenv under the target folder.
#
# Usage: run.sh <host binary> <components folder> [extra schemathesis options]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
host_bin="$(realpath "$1")"
components="$(realpath "$2")"
shift 2

if ! command -v python3 >/dev/null 2>&1; then
    echo "contract test skipped: python3 is not installed (schemathesis runs on Python)"
    exit 0
fi

target="${CARGO_TARGET_DIR:-$here/../../../target}"
venv="$target/python-contract"
# The marker holds the requirements it was installed from: a changed pin reinstalls.
if ! cmp -s "$here/requirements.txt" "$venv/.installed" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/.installed"
fi

scratch="$(mktemp -d)"
cp -r "$components" "$scratch/components"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="${CONTRACT_PORT:-$(free_port)}"
admin_port="$(free_port)"
# A token with every scope, signed with the key the host makes under ./data
# on first start (minting it first makes that key; the host then reads it).
token="$(cd "$scratch" && RUST_LOG=warn "$host_bin" token issue --sub contract --scope "orders:all catalog:write admin")"
(
    cd "$scratch"
    LISTEN_ADDR="127.0.0.1:$port" GRPC_LISTEN_ADDR="127.0.0.1:0" ADMIN_LISTEN_ADDR="127.0.0.1:$admin_port" \
        COMPONENTS_DIR="$scratch/components" \
        RUST_LOG=warn exec "$host_bin" serve
) >"$scratch/host.log" 2>&1 &
host_pid=$!
stop() {
    kill "$host_pid" 2>/dev/null || true
    wait "$host_pid" 2>/dev/null || true
    rm -rf "$scratch"
}
trap stop EXIT

base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
    curl -fsS "$base/ready" >/dev/null 2>&1 && break
    kill -0 "$host_pid" 2>/dev/null || { cat "$scratch/host.log"; exit 1; }
    sleep 0.2
done
curl -fsS "$base/ready" >/dev/null || { echo "the host did not become ready"; cat "$scratch/host.log"; exit 1; }

# Run from the scratch directory: schemathesis keeps its cache in the working
# directory. The public API first, then the admin API on its own listener.
status=0
for api in "$base" "http://127.0.0.1:$admin_port"; do
    (
        cd "$scratch"
        PYTHONPATH="$here" SCHEMATHESIS_HOOKS=hooks "$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" \
            run "$api/api/v1/openapi.json" --url "$api" -H "Authorization: Bearer $token" "$@"
    ) || status=$?
done
if ! kill -0 "$host_pid" 2>/dev/null; then
    echo "the host died during the contract test"; tail -50 "$scratch/host.log"; exit 1
fi
exit "$status"
