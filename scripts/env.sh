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
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
export LJ_RUN_DIR LJ_REDIS_HOST LJ_REDIS_PORT LJ_PG_PORT LJ_PG_DB LJ_PG_USER LJ_HTTP_HOST \
    LJ_HTTP_PORT LJ_PG_DSN
