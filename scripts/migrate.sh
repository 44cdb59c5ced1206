#!/usr/bin/env bash
# Applies migrations/[0-9]*.sql in order, each once, each in its own
# transaction together with its row in schema_migrations.
#
#   scripts/migrate.sh [--dsn CONNINFO] [--dir DIR] [--status]
#
# --dsn     libpq connection string (default: $LJ_PG_DSN, else the PG* variables)
# --dir     folder of the migration files (default: migrations/ of this repository)
# --status  list applied and pending migrations, change nothing
#
# Safe to run twice, and from two places at once: every file is checked and
# applied under one transaction-level advisory lock. A file whose content
# changed after it was applied is reported (its checksum), not re-applied.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dsn=${LJ_PG_DSN:-}
dir=$here/../migrations
status_only=0

while [ $# -gt 0 ]; do
    case "$1" in
        --dsn) dsn=$2; shift 2 ;;
        --dsn=*) dsn=${1#--dsn=}; shift ;;
        --dir) dir=$2; shift 2 ;;
        --dir=*) dir=${1#--dir=}; shift ;;
        --status) status_only=1; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "migrate: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
psql_run() { psql -X -q -v ON_ERROR_STOP=1 ${dsn:+-d "$dsn"} "$@"; }

# The lock id is arbitrary but fixed: every runner of this project uses it.
LOCK=7262021
TABLE_SQL="CREATE TABLE IF NOT EXISTS schema_migrations (
    version    varchar(255) PRIMARY KEY,
    checksum   char(64) NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())"

applied_checksum() {
    psql_run -tA -v version="$1" <<'SQL'
SELECT checksum FROM schema_migrations WHERE version = :'version'
SQL
}

psql_run --single-transaction -c "SELECT pg_advisory_xact_lock($LOCK)" -c "$TABLE_SQL" >/dev/null

files=()
while IFS= read -r f; do files+=("$f"); done < <(find "$dir" -maxdepth 1 -name '[0-9]*.sql' | sort)
[ ${#files[@]} -gt 0 ] || { echo "migrate: no migrations in $dir" >&2; exit 1; }

changes=0
for f in "${files[@]}"; do
    version=$(basename "$f")
    sum=$(sha256sum "$f" | cut -d' ' -f1)
    have=$(applied_checksum "$version")
    if [ "$status_only" -eq 1 ]; then
        if [ -n "$have" ]; then echo "applied  $version"; else echo "pending  $version"; fi
        continue
    fi
    if [ -n "$have" ]; then
        [ "$have" = "$sum" ] ||
            echo "migrate: warning: $version changed after it was applied (not re-applied)" >&2
        continue
    fi
    # Check again under the lock: another runner may have applied it meanwhile.
    out=$(psql_run --single-transaction -v version="$version" -v checksum="$sum" \
        -v file="$f" <<'SQL'
SELECT pg_advisory_xact_lock(7262021);
SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = :'version') AS already \gset
\if :already
\echo skipped
\else
\i :file
INSERT INTO schema_migrations (version, checksum) VALUES (:'version', :'checksum');
\echo applied
\endif
SQL
    )
    case "$out" in
        *applied*) echo "applied $version"; changes=$((changes + 1)) ;;
    esac
done
[ "$status_only" -eq 1 ] || [ "$changes" -gt 0 ] || echo "up to date"
