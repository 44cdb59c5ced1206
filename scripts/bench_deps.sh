#!/usr/bin/env bash
# The load tools `make bench` and `make soak` need on top of scripts/deps.sh:
# wrk, nginx (the reference server), redis-benchmark (in redis-tools),
# matplotlib (the soak's plot). Only what is missing.
set -euo pipefail
missing=()
for p in wrk nginx-light redis-tools python3-matplotlib; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nginx from another package is fine too.
if command -v nginx >/dev/null; then missing=("${missing[@]/nginx-light}"); fi
missing=(${missing[@]+"${missing[@]}"})
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
