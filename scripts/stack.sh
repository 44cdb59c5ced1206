#!/usr/bin/env bash
# Local Redis and PostgreSQL for ljwx-ingest, in a data folder (default .run/).
#
#   scripts/stack.sh start    start both (initdb and create the database on first run,
#                             apply migrations); a running server is left as it is
#   scripts/stack.sh stop     stop both
#   scripts/stack.sh status   say what runs where
#
# Settings: see scripts/env.sh (LJ_RUN_DIR, LJ_REDIS_PORT, LJ_PG_PORT, ...).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=env.sh
. "$here/env.sh"

redis_dir=$LJ_RUN_DIR/redis
pg_dir=$LJ_RUN_DIR/pg

# postgres refuses to run as root: run it as the 'postgres' system user then.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

redis_cli() { redis-cli -h "$LJ_REDIS_HOST" -p "$LJ_REDIS_PORT" "$@"; }
redis_up() { redis_cli ping 2>/dev/null | grep -q PONG; }
pg_up() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$LJ_PG_PORT"; }

start_redis() {
    if redis_up; then echo "redis: already running on $LJ_REDIS_HOST:$LJ_REDIS_PORT"; return; fi
    mkdir -p "$redis_dir"
    # AOF with fsync every second; noeviction so a full Redis refuses writes
    # instead of dropping stream entries (SPEC §3).
    redis-server --port "$LJ_REDIS_PORT" --bind "$LJ_REDIS_HOST" --protected-mode yes \
        --dir "$redis_dir" --appendonly yes --appendfsync everysec --save "" \
        --maxmemory "$LJ_REDIS_MAXMEMORY" --maxmemory-policy noeviction \
        --daemonize yes --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log"
    for _ in $(seq 50); do redis_up && break; sleep 0.1; done
    redis_up || { echo "redis: failed to start, see $redis_dir/redis.log" >&2; exit 1; }
    echo "redis: started on $LJ_REDIS_HOST:$LJ_REDIS_PORT (data in $redis_dir)"
}

init_pg() {
    mkdir -p "$pg_dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$pg_dir"
    if ! as_pg test -w "$pg_dir"; then
        echo "postgres: user 'postgres' cannot write $pg_dir; set LJ_RUN_DIR to a folder" \
             "it can reach (e.g. LJ_RUN_DIR=/var/tmp/ljwx)" >&2
        exit 1
    fi
    as_pg "$PG_BIN/initdb" -D "$pg_dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
        >"$pg_dir/initdb.log"
    echo "postgres: initialised $pg_dir/data"
}

start_pg() {
    if pg_up; then echo "postgres: already running on 127.0.0.1:$LJ_PG_PORT"; return; fi
    [ -f "$pg_dir/data/PG_VERSION" ] || init_pg
    as_pg "$PG_BIN/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/postgres.log" -w -s start \
        -o "-p $LJ_PG_PORT -k $pg_dir -c listen_addresses=127.0.0.1"
    echo "postgres: started on 127.0.0.1:$LJ_PG_PORT (data in $pg_dir/data)"
}

create_db() {
    local psql=(psql -X -q -h 127.0.0.1 -p "$LJ_PG_PORT" -U postgres -d postgres -tA)
    if [ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = '$LJ_PG_USER'")" ]; then
        "${psql[@]}" -c "CREATE ROLE \"$LJ_PG_USER\" LOGIN"
    fi
    if [ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$LJ_PG_DB'")" ]; then
        "${psql[@]}" -c "CREATE DATABASE \"$LJ_PG_DB\" OWNER \"$LJ_PG_USER\""
        echo "postgres: created database $LJ_PG_DB"
    fi
}

stop_all() {
    if redis_up; then redis_cli shutdown >/dev/null 2>&1 || true; echo "redis: stopped"; fi
    if [ -f "$pg_dir/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$pg_dir/data" -m fast -w -s stop && echo "postgres: stopped"
    fi
}

status() {
    if redis_up; then echo "redis: up on $LJ_REDIS_HOST:$LJ_REDIS_PORT"; else echo "redis: down"; fi
    if pg_up; then echo "postgres: up on 127.0.0.1:$LJ_PG_PORT"; else echo "postgres: down"; fi
}

case "${1:-}" in
    start) start_redis; start_pg; create_db; "$here/migrate.sh" --dsn "$LJ_PG_DSN" ;;
    stop) stop_all ;;
    status) status ;;
    *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; [ "${1:-}" = --help ] ;;
esac
