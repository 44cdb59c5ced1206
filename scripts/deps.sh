#!/usr/bin/env bash
# Installs the Debian packages that building, running and testing need --
# only those missing, so a second run costs nothing.
set -euo pipefail

PKGS=(
    gcc make pkg-config                                     # build
    libhiredis-dev libpq-dev libcjson-dev libuv1-dev libhttp-parser-dev libcurl4-openssl-dev
    redis-server postgresql-15 postgresql-client-15 curl    # local stack
    libcmocka-dev python3 python3-pytest python3-requests   # tests
    python3-psycopg python3-redis clang libclang-rt-14-dev docker-compose python3-yaml
    libjs-chart.js chromium chromium-driver python3-selenium  # dashboard + its browser tests
    prometheus                                              # promtool: deploy/prometheus rules
    pgbouncer                                               # transaction-pooling tests
)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
