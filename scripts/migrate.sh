#!/usr/bin/env bash
# migrate.sh -- apply the PostgreSQL migrations of ljwx-ingest.
#
# Usage: scripts/migrate.sh [--dsn CONNINFO] [--dir DIR] [--status]
#
#   --dsn CONNINFO  libpq connection string or URI
#                   (default: $LJ_PG_DSN, else the PG* environment variables)
#   --dir DIR       folder of the migration files (default: migrations/ here)
#   --status        list applied and pending migrations; change nothing
#   -h, --help      this text
#
# Applies every DIR/[0-9]*.sql not yet recorded in schema_migrations, in
# file-name order, each in its own transaction together with its row
# (version = file name, sha256 checksum). Prints "applied FILE" per file, or
# "up to date". Safe to run twice, and from several places at once: each file
# is checked and applied under a transaction-level advisory lock, and checked
# again under it. A file changed after it was applied is reported on stderr,
# never re-applied: add a new file instead. Migration files must not contain
# BEGIN/COMMIT or statements that cannot run in a transaction.
# On failure: the psql error, exit status non-zero, that file rolled back.
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "migrate: $*" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
dsn=${LJ_PG_DSN:-}
dir=$here/../migrations
status_only=0

while [ $# -gt 0 ]; do
    case "$1" in
        --dsn) [ $# -ge 2 ] || die "--dsn needs a value"; dsn=$2; shift 2 ;;
        --dsn=*) dsn=${1#--dsn=}; shift ;;
        --dir) [ $# -ge 2 ] || die "--dir needs a value"; dir=$2; shift 2 ;;
        --dir=*) dir=${1#--dir=}; shift ;;
        --status) status_only=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "migrate: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

command -v psql >/dev/null || die "psql not found on PATH"
[ -d "$dir" ] || die "no such directory: $dir"
dir=$(cd "$dir" && pwd)

# Quiet server notices (CREATE ... IF NOT EXISTS and the like); errors still show.
export PGOPTIONS="${PGOPTIONS:+$PGOPTIONS }-c client_min_messages=warning"
export PGAPPNAME=${PGAPPNAME:-ljwx-migrate}
psql_run() { psql -X -q -v ON_ERROR_STOP=1 ${dsn:+-d "$dsn"} "$@"; }

# Arbitrary but fixed: every runner of this project uses it. (7262022 is the
# lock of ensure_health_partitions().)
LOCK=7262021

files=()
while IFS= read -r -d '' f; do files+=("$f"); done \
    < <(find "$dir" -maxdepth 1 -type f -name '[0-9]*.sql' -print0 | LC_ALL=C sort -z)
[ ${#files[@]} -gt 0 ] || die "no migrations ([0-9]*.sql) in $dir"

# What is recorded: version -> checksum, version -> applied_at.
declare -A have=() when=()
exists=$(psql_run -tA -c "SELECT to_regclass('schema_migrations') IS NOT NULL")
if [ "$exists" != t ] && [ "$status_only" -eq 0 ]; then
    psql_run --single-transaction -o /dev/null <<SQL
SELECT pg_advisory_xact_lock($LOCK);
DO \$\$
BEGIN
    IF to_regclass('schema_migrations') IS NULL THEN
        CREATE TABLE schema_migrations (
            version    varchar(255) PRIMARY KEY,
            checksum   char(64) NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now());
        COMMENT ON TABLE schema_migrations IS
            'Migrations applied by scripts/migrate.sh: file name, sha256 of its content, time.';
    END IF;
END
\$\$;
SQL
    exists=t
fi
if [ "$exists" = t ]; then
    rows=$(psql_run -tA -F $'\t' -c "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY version")
    while IFS=$'\t' read -r v c t; do
        [ -n "$v" ] || continue
        have[$v]=$c
        when[$v]=$t
    done <<<"$rows"
fi

if [ "$status_only" -eq 1 ]; then
    declare -A seen=()
    for f in "${files[@]}"; do
        v=$(basename "$f")
        seen[$v]=1
        if [ -n "${have[$v]:-}" ]; then
            sum=$(sha256sum "$f" | cut -d' ' -f1)
            note=""
            [ "${have[$v]}" = "$sum" ] || note="  (file changed since it was applied)"
            echo "applied  $v  ${when[$v]}$note"
        else
            echo "pending  $v"
        fi
    done
    for v in "${!have[@]}"; do
        [ -n "${seen[$v]:-}" ] || echo "applied  $v  ${when[$v]}  (no such file in $dir)"
    done
    exit 0
fi

changes=0
for f in "${files[@]}"; do
    v=$(basename "$f")
    sum=$(sha256sum "$f" | cut -d' ' -f1)
    if [ -n "${have[$v]:-}" ]; then
        [ "${have[$v]}" = "$sum" ] ||
            echo "migrate: warning: $v changed after it was applied (checksum ${have[$v]}, now $sum); not re-applied" >&2
        continue
    fi
    # One psql, one transaction: lock, check again (another runner may have
    # applied it meanwhile), apply, record. Query output is discarded (-o);
    # \echo still reaches stdout.
    set +e
    out=$(psql_run --single-transaction -o /dev/null -v version="$v" -v checksum="$sum" \
              -v file="$f" -v lock="$LOCK" -f - <<'SQL'
SELECT pg_advisory_xact_lock(:lock);
SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = :'version') AS already \gset
\if :already
\echo ljwx-migrate:skipped
\else
\i :file
INSERT INTO schema_migrations (version, checksum) VALUES (:'version', :'checksum');
\echo ljwx-migrate:applied
\endif
SQL
    )
    rc=$?
    set -e
    if [ $rc -ne 0 ]; then
        echo "migrate: $v failed (psql exit $rc); rolled back, nothing of it applied" >&2
        exit $rc
    fi
    case "$out" in
        *ljwx-migrate:applied*) echo "applied $v"; changes=$((changes + 1)) ;;
        *ljwx-migrate:skipped*) ;;     # applied by a concurrent runner
        *) die "$v: unexpected result from psql: $out" ;;
    esac
done
[ "$changes" -gt 0 ] || echo "up to date"
