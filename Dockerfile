# Builds the three Fanline services into one small image; compose/ picks the binary per service.
FROM rust:1.85-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins -p ingest -p fanout -p reader

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/ingest /src/target/release/fanout /src/target/release/reader /usr/local/bin/
# The directory store's volume (compose `blobs`): a fresh named volume takes this owner.
RUN mkdir -p /var/lib/fanline/blobs && chown nobody /var/lib/fanline/blobs
USER nobody
