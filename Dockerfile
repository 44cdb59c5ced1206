# ljwx-ingest on Debian 12, built with the same Makefile as everywhere else.
FROM debian:12 AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        gcc make pkg-config libhiredis-dev libpq-dev libcjson-dev libuv1-dev libhttp-parser-dev \
        libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY common common
COPY producer producer
COPY consumer consumer
COPY import import
COPY notifier notifier
RUN make all

FROM debian:12
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libhiredis0.14 libpq5 libcjson1 libuv1 libhttp-parser2.9 libcurl4 postgresql-client-15 curl \
        ca-certificates \
        libjs-chart.js \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home ljwx
COPY --from=build /src/build/ljwx-producer /src/build/ljwx-consumer /src/build/ljwx-import \
     /src/build/ljwx-notifier /usr/local/bin/
COPY migrations /opt/ljwx/migrations
COPY scripts/migrate.sh /opt/ljwx/scripts/migrate.sh
# scripts/import runs ljwx-import from LJ_BIN_DIR (docs/migration-import.md).
COPY scripts/import /opt/ljwx/scripts/import
ENV LJ_BIN_DIR=/usr/local/bin
# The dashboard (GET /dashboard); Chart.js comes from libjs-chart.js above.
COPY web/dashboard /opt/ljwx/web/dashboard
ENV LJ_WEB_DIR=/opt/ljwx/web/dashboard
USER ljwx
CMD ["ljwx-producer", "--help"]
