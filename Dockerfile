# syntax=docker/dockerfile:1
# The streamer's container image: a Rust build stage, then a slim runtime with CA
# certificates, the Amazon RDS CA bundle, curl (for the health check) and a non-root
# user. Build from the repo root: `docker build -t pg-cdc-to-kinesis .` (the CDK app
# does this on `cdk deploy`). configs*.yml from the repo root are baked in under
# /etc/pg-cdc-to-kinesis/; pick one with `--config` (the default is configs.yml).

FROM rust:1-slim-bookworm AS builder
# aws-lc-rs (rustls' crypto) builds C code with cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang perl pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin pg-cdc-to-kinesis \
 && cp target/release/pg-cdc-to-kinesis /usr/local/bin/pg-cdc-to-kinesis

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
# RDS server certificates chain to these CAs; fetched at build time so the image
# verifies RDS with `sslrootcert: /etc/ssl/certs/rds-global-bundle.pem`.
RUN curl -fsSL --retry 3 -o /etc/ssl/certs/rds-global-bundle.pem \
      https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem \
 && grep -q "BEGIN CERTIFICATE" /etc/ssl/certs/rds-global-bundle.pem
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
