# syntax=docker/dockerfile:1
# The streamer's container image: a Rust build stage, then a slim runtime with CA
# certificates, the Amazon RDS CA bundle, curl (for the health check) and a non-root
# user. Build from the repo root: `docker build -t pg-cdc-to-kinesis .` (the CDK app
# does this on `cdk deploy`, for arm64 unless `-c architecture=x86_64`). configs*.yml
# from the repo root are baked in under /etc/pg-cdc-to-kinesis/; pick one with
# `--config` (the default is configs.yml).
#
# The context is only what .dockerignore lets in (Cargo.toml, Cargo.lock, src/,
# configs*.yml, the CA bundle), so edits to the CDK app, scripts or docs never change
# the image or its asset hash.

FROM rust:1-slim-bookworm AS builder
# aws-lc-rs (rustls' crypto) builds C code with cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang perl pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, against empty targets: this layer is rebuilt only when
# Cargo.toml or Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin \
 && echo 'fn main() {}' > src/bin/pg-cdc-to-kinesis.rs \
 && echo 'fn main() {}' > src/bin/pg-cdc-admin.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin pg-cdc-to-kinesis \
 && rm -rf src
COPY src ./src
# Newer mtimes than the placeholders', so cargo rebuilds the crate itself.
RUN touch src/lib.rs src/bin/*.rs \
 && cargo build --release --locked --bin pg-cdc-to-kinesis \
 && cp target/release/pg-cdc-to-kinesis /usr/local/bin/pg-cdc-to-kinesis

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
# RDS server certificates chain to these CAs. The bundle is pinned in the repository
# (certs/README.md) and lives at the path the admin Lambda's layer gives it too, so
# `sslrootcert: /opt/pg-cdc-to-kinesis/rds-global-bundle.pem` works in both; the old
# path /etc/ssl/certs/rds-global-bundle.pem still works here.
COPY certs/rds-global-bundle.pem /opt/pg-cdc-to-kinesis/rds-global-bundle.pem
RUN echo "fefac91d6800404461cece76724bc0a2383f4f556a1c9beb0813fac6f2e1e49f  /opt/pg-cdc-to-kinesis/rds-global-bundle.pem" | sha256sum -c - \
 && ln -s /opt/pg-cdc-to-kinesis/rds-global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin cdc
COPY --from=builder /usr/local/bin/pg-cdc-to-kinesis /usr/local/bin/pg-cdc-to-kinesis
COPY configs*.yml /etc/pg-cdc-to-kinesis/
USER 10001
# /healthz, /readyz and /metrics (the config's `http_listen`, default 0.0.0.0:8080).
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
# SIGTERM drains in-flight batches for up to shutdown_timeout_secs, then exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["pg-cdc-to-kinesis", "run", "--log-format", "json"]
CMD ["--config", "/etc/pg-cdc-to-kinesis/configs.yml"]
