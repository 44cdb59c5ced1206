#!/usr/bin/env bash
# Local Redis and PostgreSQL for ljwx-ingest, in a data folder (default .run/).
#
#   scripts/stack.sh start    start both (initdb and create the database on first run,
#                             apply migrations); a running server is left as it is
#   scripts/stack.sh stop     stop both
#   scripts/stack.sh status   say what runs where
#
# Settings: see scripts/env.sh (LJ_RUN_DIR, LJ_REDIS_PORT, LJ_PG_PORT, ...;
# LJ_REDIS_CLUSTER or LJ_LOCAL_CLUSTER=1 for a Redis Cluster).
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

# -- the local cluster (LJ_LOCAL_CLUSTER=1) ------------------------------------
cluster_ports() { seq "$LJ_CLUSTER_PORT" $((LJ_CLUSTER_PORT + 5)); }
node_up() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }
cluster_ok() { redis-cli -h 127.0.0.1 -p "$LJ_CLUSTER_PORT" cluster info 2>/dev/null |
               grep -q cluster_state:ok; }

start_cluster() {
    local p dir nodes=()
    for p in $(cluster_ports); do
        nodes+=("127.0.0.1:$p")
        node_up "$p" && continue
        dir=$LJ_RUN_DIR/cluster/$p
        mkdir -p "$dir"
        # As start_redis, plus cluster mode; nodes.conf keeps the cluster's
        # shape for the next start.
        redis-server --port "$p" --bind 127.0.0.1 --protected-mode yes --dir "$dir" \
            --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
            --appendonly yes --appendfsync everysec --save "" \
            --maxmemory "$LJ_REDIS_MAXMEMORY" --maxmemory-policy noeviction \
            --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    done
    for p in $(cluster_ports); do
        for _ in $(seq 50); do node_up "$p" && break; sleep 0.1; done
        node_up "$p" || { echo "redis: node $p failed to start, see $LJ_RUN_DIR/cluster/$p" >&2; exit 1; }
    done
    if ! cluster_ok; then
        [ -s "$LJ_RUN_DIR/cluster/$LJ_CLUSTER_PORT/nodes.conf" ] && sleep 3   # rejoining
        cluster_ok || redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 \
            --cluster-yes >"$LJ_RUN_DIR/cluster/create.log"
    fi
    for _ in $(seq 100); do cluster_ok && break; sleep 0.1; done
    cluster_ok || { echo "redis: the local cluster is not ok, see $LJ_RUN_DIR/cluster" >&2; exit 1; }
    echo "redis: local cluster of 6 nodes (3 masters, 3 replicas) on ports" \
         "$LJ_CLUSTER_PORT..$((LJ_CLUSTER_PORT + 5)) (data in $LJ_RUN_DIR/cluster)"
}

stop_cluster() {
    local p
    for p in $(cluster_ports); do
        node_up "$p" && redis-cli -h 127.0.0.1 -p "$p" shutdown >/dev/null 2>&1 || true
    done
    echo "redis: local cluster stopped"
}

# Redis as configured: the local cluster, a cluster of the operator's
# (nothing to start), or one Redis.
redis_start() {
    if [ "$LJ_LOCAL_CLUSTER" = 1 ]; then start_cluster
    elif [ -n "${LJ_REDIS_CLUSTER:-}" ]; then echo "redis: using the cluster $LJ_REDIS_CLUSTER"
    else start_redis; fi
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
    if [ "$LJ_LOCAL_CLUSTER" = 1 ]; then stop_cluster
    elif [ -z "${LJ_REDIS_CLUSTER:-}" ] && redis_up; then
        redis_cli shutdown >/dev/null 2>&1 || true; echo "redis: stopped"
    fi
    if [ -f "$pg_dir/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$pg_dir/data" -m fast -w -s stop && echo "postgres: stopped"
    fi
}

status() {
    if [ -n "${LJ_REDIS_CLUSTER:-}" ]; then
        if redis-cli -c -h "${LJ_REDIS_CLUSTER%%:*}" -p "$(echo "${LJ_REDIS_CLUSTER%%,*}" | cut -d: -f2)" \
            cluster info 2>/dev/null | grep -q cluster_state:ok; then
            echo "redis: cluster ok ($LJ_REDIS_CLUSTER)"
        else echo "redis: cluster down or not ok ($LJ_REDIS_CLUSTER)"; fi
    elif redis_up; then echo "redis: up on $LJ_REDIS_HOST:$LJ_REDIS_PORT"; else echo "redis: down"; fi
    if pg_up; then echo "postgres: up on 127.0.0.1:$LJ_PG_PORT"; else echo "postgres: down"; fi
}

case "${1:-}" in
    start) redis_start; start_pg; create_db; "$here/migrate.sh" --dsn "$LJ_PG_DSN" ;;
    stop) stop_all ;;
    status) status ;;
    *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; [ "${1:-}" = --help ] ;;
esac
