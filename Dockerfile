# syntax=docker/dockerfile:1
# Multi-stage build: the host binary and the default components, in a slim runtime image.

FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
# The components (wasm32-wasip2, release) and the host (release).
RUN cargo build --release --target wasm32-wasip2 --target-dir target/wasm \
        -p order-validation -p pricing -p fulfillment-standard -p fulfillment-express \
 && cargo build --release -p host
# The runtime components folder: <slot>.wasm + <slot>.toml + <slot>.fixtures/ for each
# slot (the fixtures gate every later version), plus the alternative fulfillment
# policy under alternatives/ for swapping.
RUN set -eux; \
    out=/out/components; mkdir -p "$out/alternatives"; \
    release=target/wasm/wasm32-wasip2/release; \
    for pair in validation=order-validation pricing=pricing fulfillment=fulfillment-standard; do \
        slot="${pair%%=*}"; crate="${pair#*=}"; \
        cp "$release/$(echo "$crate" | tr - _).wasm" "$out/$slot.wasm"; \
        cp "components/$crate/$slot.toml" "$out/$slot.toml"; \
        cp -r "components/$crate/fixtures" "$out/$slot.fixtures"; \
    done; \
    cp "$release/fulfillment_express.wasm" "$out/alternatives/fulfillment-express.wasm"; \
    cp components/fulfillment-express/fulfillment.toml "$out/alternatives/fulfillment-express.toml"; \
    cp -r components/fulfillment-express/fixtures "$out/alternatives/fulfillment-express.fixtures"

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /srv --shell /usr/sbin/nologin orderly
COPY --from=build /src/target/release/host /usr/local/bin/host
COPY --from=build --chown=orderly /out/components /srv/components
WORKDIR /srv
USER orderly
ENV COMPONENTS_DIR=/srv/components \
    LISTEN_ADDR=0.0.0.0:8080 \
    GRPC_LISTEN_ADDR=0.0.0.0:50051
EXPOSE 8080 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["host"]
CMD ["serve"]
