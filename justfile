# Recipes for building, testing and running the order service.
# `just` with no arguments lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

target_dir := env("CARGO_TARGET_DIR", justfile_directory() / "target")
# Components build in a target directory of their own (see components/testkit/src/build.rs).
wasm_dir := target_dir / "wasm"
components_dir := env("COMPONENTS_DIR", justfile_directory() / "data/components")

# The default component of each slot: `slot=crate`.
default_components := "validation=order-validation pricing=pricing fulfillment=fulfillment-standard"
component_crates := "order-validation pricing fulfillment-standard fulfillment-express fixture-trap fixture-spin fixture-memory-hog fixture-forbidden fixture-malformed fixture-trap-policy fixture-sleep fixture-pollables fixture-sockets fixture-filesystem fixture-kv-flood"

default:
    @just --list

# Build every component for wasm32-wasip2, install the defaults into the components folder, build the host.
build: build-components
    cargo build -p host

# Build the components (release, wasm32-wasip2) and install the default one of each slot.
build-components: build-wasm
    mkdir -p "{{components_dir}}"
    for pair in {{default_components}}; do \
        slot="${pair%%=*}"; crate="${pair#*=}"; \
        just install-component "$slot" "{{wasm_dir}}/wasm32-wasip2/release/${crate//-/_}.wasm" "components/$crate"; \
    done
    @echo "components installed in {{components_dir}}"

# Build every component for wasm32-wasip2 (release), installing nothing.
build-wasm:
    rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
    cargo build --release --target wasm32-wasip2 --target-dir "{{wasm_dir}}" {{ prepend("-p ", component_crates) }}

# Put a built component in the components folder for `slot`, the way a
# running host expects: fixtures first, then the .toml, then the .wasm, each
# written beside and renamed into place (the .wasm last: it triggers the swap).
install-component slot wasm crate_dir:
    #!/usr/bin/env bash
    set -euo pipefail
    dir="{{components_dir}}"
    mkdir -p "$dir"
    if [ -d "{{crate_dir}}/fixtures" ]; then
        rm -rf "$dir/{{slot}}.fixtures.tmp"
        cp -r "{{crate_dir}}/fixtures" "$dir/{{slot}}.fixtures.tmp"
        rm -rf "$dir/{{slot}}.fixtures"
        mv "$dir/{{slot}}.fixtures.tmp" "$dir/{{slot}}.fixtures"
    fi
    cp "{{crate_dir}}/{{slot}}.toml" "$dir/{{slot}}.toml.tmp"
    mv "$dir/{{slot}}.toml.tmp" "$dir/{{slot}}.toml"
    cp "{{wasm}}" "$dir/{{slot}}.wasm.tmp"
    mv "$dir/{{slot}}.wasm.tmp" "$dir/{{slot}}.wasm"

# Swap the fulfillment policy of a running host to the express policy (or back: `just swap-fulfillment standard`).
swap-fulfillment policy="express": build-wasm
    just install-component fulfillment "{{wasm_dir}}/wasm32-wasip2/release/fulfillment_{{policy}}.wasm" "components/fulfillment-{{policy}}"

# Start the host on its embedded default with the default components.
run *args: build
    cargo run -p host -- {{args}}

# Build the components, then run every test in the workspace (this builds the
# host too), then the REST contract test against the host it built.
test: build-components
    cargo test --workspace --all-targets
    host/tests/contract/run.sh "{{target_dir}}/debug/host" "{{components_dir}}"

# The REST contract test: the host on its embedded default, and schemathesis
# (every check; examples, coverage, fuzzing and stateful phases) against the
# OpenAPI document it serves. Schemathesis goes into a private virtualenv.
contract *args: build-components
    cargo build -p host
    host/tests/contract/run.sh "{{target_dir}}/debug/host" "{{components_dir}}" {{args}}

# Benchmarks, printed with ratios against a baseline measured in the same run:
# per-slot call cost against native code; HTTP load on PostgreSQL + Redis
# against the same transaction issued directly through sqlx; fulfillment
# throughput and lag against the same transitions issued directly; hot swap
# (drop to serving, and throughput during swaps against steady state); a
# deployment of 1 API + 3 worker processes (upload to every process serving
# it, and throughput while pricing is uploaded every second); the
# `sql` capability's call against the same query issued directly; gRPC
# against REST on the same orders and connections; bearer tokens (one
# verification per algorithm, and the API with a reused token against the
# same API with tokens off).
bench: build-components
    cargo bench -p host --bench slot_calls
    cargo bench -p host --bench http_load
    cargo bench -p host --bench fulfillment
    cargo bench -p host --bench swap
    cargo bench -p host --bench fleet
    cargo bench -p host --bench sql_capability
    cargo bench -p host --bench grpc_vs_rest
    cargo bench -p host --bench auth

fmt:
    cargo fmt --all

lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
