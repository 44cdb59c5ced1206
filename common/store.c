#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "copyenc.h"
#include "err.h"
#include "log.h"
#include "pg.h"

/* Session-local and emptied by every COMMIT or ROLLBACK, so a failed batch
 * leaves nothing behind for the next one. */
static const char create_staging_sql[] =
    "CREATE TEMP TABLE IF NOT EXISTS health_staging ("
    " device_sn varchar(64), ts timestamptz, user_id bigint, customer_id bigint,"
    " org_id bigint, heart_rate integer, blood_oxygen integer,"
    " temperature double precision, pressure_high integer, pressure_low integer,"
    " stress integer, step integer, distance integer, calorie integer,"
    " latitude double precision, longitude double precision, altitude double precision,"
    " sleep text, source_method varchar(20), upload_method varchar(20),"
    " stream_id varchar(64), batch_id varchar(64)) ON COMMIT DELETE ROWS";

static const char copy_sql[] =
    "COPY health_staging (" COPYENC_HEALTH_COLUMNS ") FROM STDIN";

/* One statement: insert the new rows, and for each inserted row and metric
 * raise the most severe enabled rule that matches (SPEC §5.3). Rows skipped
 * as duplicates raise nothing again. The first result row carries the
 * inserted count; alert columns are NULL when none was raised. */
static const char merge_sql[] =
    "WITH ins AS ("
    " INSERT INTO t_user_health_data (" COPYENC_HEALTH_COLUMNS ")"
    " SELECT " COPYENC_HEALTH_COLUMNS " FROM health_staging"
    " ON CONFLICT (device_sn, ts) DO NOTHING"
    " RETURNING device_sn, ts, user_id, customer_id, org_id, stream_id, heart_rate,"
    " blood_oxygen, temperature, pressure_high, pressure_low, stress),"
    "hit AS ("
    " SELECT DISTINCT ON (i.device_sn, i.ts, v.metric) r.id AS rule_id, i.user_id,"
    " i.customer_id, i.org_id, i.device_sn, v.metric, v.value, r.level, i.ts, i.stream_id"
    " FROM ins i CROSS JOIN LATERAL (VALUES"
    " ('heart_rate', i.heart_rate::float8), ('blood_oxygen', i.blood_oxygen::float8),"
    " ('temperature', i.temperature), ('pressure_high', i.pressure_high::float8),"
    " ('pressure_low', i.pressure_low::float8), ('stress', i.stress::float8)"
    " ) AS v(metric, value)"
    " JOIN t_alert_rule r ON r.enabled AND r.metric = v.metric AND v.value IS NOT NULL"
    " AND CASE r.comparison WHEN '>' THEN v.value > r.threshold"
    " WHEN '<' THEN v.value < r.threshold WHEN '>=' THEN v.value >= r.threshold"
    " WHEN '<=' THEN v.value <= r.threshold ELSE v.value = r.threshold END"
    " ORDER BY i.device_sn, i.ts, v.metric,"
    " CASE r.level WHEN 'critical' THEN 3 WHEN 'major' THEN 2 ELSE 1 END DESC, r.id),"
    "al AS ("
    " INSERT INTO t_alert_info (rule_id, user_id, customer_id, org_id, device_sn,"
    " alert_type, alert_value, level, alert_time, stream_id)"
    " SELECT * FROM hit ON CONFLICT DO NOTHING"
    " RETURNING id, device_sn, alert_type, alert_value, level, alert_time, user_id)"
    "SELECT (SELECT count(*) FROM ins), al.id, al.device_sn, al.alert_type, al.alert_value,"
    " al.level, to_char(al.alert_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    " al.user_id"
    " FROM (SELECT 1) one LEFT JOIN al ON true";

int store_prepare(PGconn *pg)
{
    return pg_exec(pg, create_staging_sql);
}

void store_stats_cleanup(store_stats *st)
{
    free(st->alerts);
    st->alerts = NULL;
    st->nalerts = 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Looks up the owner of every record (NULL 'cache': none). */
static int find_owners(PGconn *pg, enrich_cache *cache, const store_item *items, size_t n,
                       size_t rows, copyenc_owner **owners, store_stats *st)
{
    const char **sns;
    size_t i;
    size_t j;
    size_t k = 0;
    int rc;

    *owners = NULL;
    if (cache == NULL || rows == 0)
        return 0;
    sns = malloc(rows * sizeof(*sns));
    *owners = malloc(rows * sizeof(**owners));
    if (sns == NULL || *owners == NULL) {
        free(sns);
        return LJ_ENOMEM;
    }
    for (i = 0; i < n; i++)
        for (j = 0; j < items[i].n; j++)
            sns[k++] = items[i].recs[j].device_sn;
    rc = enrich_lookup(cache, pg, sns, rows, now_ms(), *owners);
    for (k = 0; rc == 0 && k < rows; k++)
        st->unbound += (*owners)[k].user_id <= 0;
    free(sns);
    return rc;
}

static int encode_items(lj_buf *out, const store_item *items, size_t n,
                        const copyenc_owner *owners, const char *upload_method)
{
    size_t i;
    size_t j;
    size_t k = 0;

    for (i = 0; i < n; i++) {
        copyenc_meta meta = {upload_method, items[i].stream_id, items[i].batch_id};

        for (j = 0; j < items[i].n; j++, k++)
            if (copyenc_health_row(out, &items[i].recs[j], owners ? &owners[k] : NULL,
                                   &meta) != 0)
                return LJ_ENOMEM;
    }
    return 0;
}

static void read_alert(const PGresult *r, int row, store_alert *a)
{
    a->id = strtoll(PQgetvalue(r, row, 1), NULL, 10);
    snprintf(a->device_sn, sizeof(a->device_sn), "%s", PQgetvalue(r, row, 2));
    snprintf(a->alert_type, sizeof(a->alert_type), "%s", PQgetvalue(r, row, 3));
    a->value = strtod(PQgetvalue(r, row, 4), NULL);
    snprintf(a->level, sizeof(a->level), "%s", PQgetvalue(r, row, 5));
    snprintf(a->time, sizeof(a->time), "%s", PQgetvalue(r, row, 6));
    a->user_id = PQgetisnull(r, row, 7) ? 0 : strtoll(PQgetvalue(r, row, 7), NULL, 10);
}

/* Runs the merge and reads the inserted count and the raised alerts. */
static int merge_staging(PGconn *pg, store_stats *st)
{
    PGresult *r = PQexec(pg, merge_sql);
    int rows;
    int i;
    int rc = 0;

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        log_error("store", "merge failed: %s", PQerrorMessage(pg));
        rc = pg_failure(pg);
        goto out;
    }
    rows = PQntuples(r);
    st->inserted = rows > 0 ? (size_t)strtoull(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    if (rows == 0 || PQgetisnull(r, 0, 1))
        goto out;
    if ((st->alerts = calloc((size_t)rows, sizeof(*st->alerts))) == NULL) {
        rc = LJ_ENOMEM;
        goto out;
    }
    for (i = 0; i < rows; i++)
        read_alert(r, i, &st->alerts[i]);
    st->nalerts = (size_t)rows;
out:
    PQclear(r);
    return rc;
}

int store_health_batch(PGconn *pg, enrich_cache *cache, const store_item *items, size_t n,
                       const char *upload_method, store_stats *st)
{
    copyenc_owner *owners = NULL;
    lj_buf data;
    size_t rows = 0;
    size_t i;
    int rc;

    memset(st, 0, sizeof(*st));
    lj_buf_init(&data);
    for (i = 0; i < n; i++)
        rows += items[i].n;
    if ((rc = find_owners(pg, cache, items, n, rows, &owners, st)) != 0)
        goto out;
    if ((rc = encode_items(&data, items, n, owners, upload_method)) != 0)
        goto out;
    if ((rc = pg_exec(pg, "BEGIN")) != 0)
        goto out;
    if ((rc = pg_copy_in(pg, copy_sql, data.data, data.len)) != 0)
        goto rollback;
    if ((rc = merge_staging(pg, st)) != 0)
        goto rollback;
    if ((rc = pg_exec(pg, "COMMIT")) != 0)
        goto failed;    /* a failed COMMIT has already ended the transaction */
    st->duplicates = rows - st->inserted;
    goto out;
rollback:
    if (PQstatus(pg) == CONNECTION_OK)
        pg_exec(pg, "ROLLBACK");
failed:
    store_stats_cleanup(st);
out:
    free(owners);
    lj_buf_cleanup(&data);
    return rc;
}
