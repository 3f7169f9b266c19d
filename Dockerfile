# Multi-stage build of the sqlmcp binary; the runtime image is small, runs
# as an unprivileged user, and carries the local embedding model.
FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked && cp target/release/sqlmcp /usr/local/bin/sqlmcp

# all-MiniLM-L6-v2, fetched and checksum-verified as scripts/run does.
FROM python:3.11-slim AS model
COPY scripts/fetch-model /fetch-model
RUN SQLMCP_MODEL_DIR=/model /fetch-model

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin sqlmcp \
    && install -d -o sqlmcp -g sqlmcp -m 700 /var/lib/sqlmcp
COPY --from=build /usr/local/bin/sqlmcp /usr/local/bin/sqlmcp
COPY --from=model /model /usr/share/sqlmcp/model
ENV SQLMCP_MODEL_DIR=/usr/share/sqlmcp/model
USER sqlmcp
EXPOSE 8000
# /healthz over bash's /dev/tcp: the image needs no HTTP client.
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8000 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '200 OK' <&3"]
ENTRYPOINT ["sqlmcp"]
