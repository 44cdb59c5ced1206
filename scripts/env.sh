# Sourced by the stack scripts: every setting of the local stack, with a
# default that works on a fresh machine. Override any of them from the
# environment.
: "${LJ_RUN_DIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.run}"
: "${LJ_REDIS_HOST:=127.0.0.1}"
: "${LJ_REDIS_PORT:=6390}"
: "${LJ_REDIS_MAXMEMORY:=1gb}"
: "${LJ_PG_PORT:=5440}"
: "${LJ_PG_DB:=ljwx}"
: "${LJ_PG_USER:=ljwx}"
: "${LJ_HTTP_HOST:=127.0.0.1}"
: "${LJ_HTTP_PORT:=8080}"
: "${LJ_PG_DSN:=host=127.0.0.1 port=$LJ_PG_PORT dbname=$LJ_PG_DB user=$LJ_PG_USER}"
# Redis Cluster (docs/scaling.md): LJ_REDIS_CLUSTER=host:port,... uses that
# cluster and starts no Redis; LJ_LOCAL_CLUSTER=1 starts a 3-master,
# 3-replica cluster on LJ_CLUSTER_PORT.. LJ_CLUSTER_PORT+5 in $LJ_RUN_DIR.
: "${LJ_LOCAL_CLUSTER:=0}"
: "${LJ_CLUSTER_PORT:=7100}"
if [ "$LJ_LOCAL_CLUSTER" = 1 ]; then
    : "${LJ_REDIS_CLUSTER:=127.0.0.1:$LJ_CLUSTER_PORT,127.0.0.1:$((LJ_CLUSTER_PORT + 1)),127.0.0.1:$((LJ_CLUSTER_PORT + 2))}"
fi
if [ -n "${LJ_REDIS_CLUSTER:-}" ]; then
    : "${LJ_STREAM_SHARDS:=6}"
    export LJ_REDIS_CLUSTER LJ_STREAM_SHARDS
fi
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
export LJ_RUN_DIR LJ_REDIS_HOST LJ_REDIS_PORT LJ_PG_PORT LJ_PG_DB LJ_PG_USER LJ_HTTP_HOST \
    LJ_HTTP_PORT LJ_PG_DSN LJ_LOCAL_CLUSTER LJ_CLUSTER_PORT
