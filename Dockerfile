# A small image for the DaemonSet: build with the Rust toolchain, run on distroless (glibc and
# libgcc only; no shell, no package manager).
#   docker build -t logferry:0.1.0 .
FROM rust:1-slim-bookworm AS build
# The Kafka client (rdkafka) builds librdkafka and OpenSSL from their sources: their build
# scripts need make and perl, which the slim image (gcc and libc6-dev only) lacks. isal-rs builds
# ISA-L (the Elasticsearch sink's gzip) from its source with nasm and autotools.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make perl nasm autoconf automake libtool \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Workspace members: cargo needs their manifests to resolve the workspace, though only the agent
# (`-p logferry`) is built and shipped; the bench and the dev harness never enter the image.
COPY bench ./bench
COPY harness ./harness
RUN cargo build --release --locked -p logferry

FROM gcr.io/distroless/cc-debian12
COPY --from=build /src/target/release/logferry /usr/local/bin/logferry
# Root, to read root-owned container logs; the manifest drops every capability.
USER 0
ENTRYPOINT ["/usr/local/bin/logferry"]
CMD ["--config", "/etc/logferry/logferry.toml"]
