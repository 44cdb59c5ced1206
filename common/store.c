#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "copyenc.h"
#include "err.h"
#include "log.h"
#include "alertrule.h"
#include "partition.h"
#include "pg.h"
#include "report.h"

/* Created inside the transaction that uses it and dropped by its COMMIT
 * (or undone by its ROLLBACK): no session state, so a transaction pooler
 * may give every transaction another server session, and a failed batch
 * leaves nothing behind. 'ord' (not COPYed: filled in input order) tells
 * which item a staged row came from. */
static const char create_staging_sql[] =
    "CREATE TEMP TABLE health_staging ("
    " device_sn varchar(64), ts timestamptz, user_id bigint, customer_id bigint,"
    " org_id bigint, heart_rate integer, blood_oxygen integer,"
    " temperature double precision, pressure_high integer, pressure_low integer,"
    " stress integer, step integer, distance integer, calorie integer,"
    " latitude double precision, longitude double precision, altitude double precision,"
    " sleep text, source_method varchar(20), upload_method varchar(20),"
    " stream_id varchar(64), batch_id varchar(64), stream_shard smallint,"
    " ord bigint GENERATED ALWAYS AS IDENTITY) ON COMMIT DROP";

static const char copy_sql[] =
    "COPY health_staging (" COPYENC_HEALTH_COLUMNS ") FROM STDIN" COPYENC_OPTIONS;

/* The staging path: rows already stored are skipped. Its one result lists
 * the staged rows it skipped, by position among the rows sent ("3,17";
 * NULL: none). Staged keys are unique (repeats within a call are not sent),
 * so a row is skipped iff its key is not in 'ins'. */
static const char merge_sql[] =
    "WITH ins AS ("
    " INSERT INTO t_user_health_data (" COPYENC_HEALTH_COLUMNS ")"
    " SELECT " COPYENC_HEALTH_COLUMNS " FROM health_staging"
    " ON CONFLICT (device_sn, ts) DO NOTHING"
    " RETURNING device_sn, ts)"
    "SELECT string_agg((s.ord - (SELECT min(ord) FROM health_staging))::text, ','"
    " ORDER BY s.ord) FROM health_staging s WHERE NOT EXISTS"
    " (SELECT 1 FROM ins WHERE ins.device_sn = s.device_sn AND ins.ts = s.ts)";

/* The direct path: the batch COPYed straight into the table; every row is new. */
static const char direct_copy_sql[] =
    "COPY t_user_health_data (" COPYENC_HEALTH_COLUMNS ") FROM STDIN" COPYENC_OPTIONS;

/* The alerts the new rows raised (alertrule.h matched them), one array per
 * column, and the status of them all ($11: NEW, or IMPORTED for back-filled
 * rows: history, not work for operators). The result has collect()'s shape. */
#define ALERT_ARRAYS 10
static const char alerts_sql[] =
    "WITH al AS ("
    " INSERT INTO t_alert_info (rule_id, user_id, customer_id, org_id, device_sn,"
    " alert_type, alert_value, level, alert_time, stream_id, status)"
    " SELECT a.*, $11::varchar FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[],"
    " $5::varchar[], $6::varchar[], $7::float8[], $8::varchar[], $9::timestamptz[],"
    " $10::varchar[]) AS a"
    " ON CONFLICT DO NOTHING"
    " RETURNING id, device_sn, alert_type, alert_value, level, alert_time, user_id)"
    "SELECT 0, 0, al.id, al.device_sn, al.alert_type, al.alert_value, al.level,"
    " to_char(al.alert_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    " al.user_id FROM al";

int store_prepare(PGconn *pg)
{
    return part_register(pg);
}

void store_stats_cleanup(store_stats *st)
{
    free(st->alerts);
    st->alerts = NULL;
    st->nalerts = 0;
}

void store_alert_argv(const char *stream, int maxlen, const store_alert *a, store_alert_text *t,
                      const char *argv[STORE_ALERT_ARGC])
{
    const char *v[STORE_ALERT_ARGC] = {"XADD", stream, "MAXLEN", "~", t->maxlen, "*",
                                       "alert_id", t->id,
                                       "device_sn", a->device_sn, "user_id", t->user,
                                       "alert_type", a->alert_type, "value", t->value,
                                       "level", a->level, "time", a->time};

    snprintf(t->id, sizeof(t->id), "%lld", (long long)a->id);
    snprintf(t->user, sizeof(t->user), "%lld", (long long)a->user_id);
    snprintf(t->value, sizeof(t->value), "%.15g", a->value);
    snprintf(t->maxlen, sizeof(t->maxlen), "%d", maxlen);
    memcpy(argv, v, sizeof(v));
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

/* Encodes every row of 'items' but those 'skip' marks (NULL: none). */
/* One row to send: its record, item and position in item order. */
typedef struct row_ref {
    const rec_health *r;
    size_t item;
    size_t k;
} row_ref;

static int row_cmp(const void *pa, const void *pb)
{
    const row_ref *a = pa;
    const row_ref *b = pb;
    int c = strcmp(a->r->device_sn, b->r->device_sn);

    if (c != 0)
        return c;
    if (a->r->ts_ms != b->r->ts_ms)
        return a->r->ts_ms < b->r->ts_ms ? -1 : 1;
    if (a->r->ts_us != b->r->ts_us)
        return a->r->ts_us < b->r->ts_us ? -1 : 1;
    return (a->k > b->k) - (a->k < b->k);
}

/* The rows to send (those not marked in 'skip'), sorted by their unique key
 * (device_sn, ts): every writer takes the keys' index locks in one order,
 * so two batches holding the same readings wait for each other instead of
 * deadlocking. '*out' (free it) has '*nout' rows. */
static int sorted_rows(const store_item *items, size_t n, size_t rows,
                       const unsigned char *skip, row_ref **out, size_t *nout)
{
    row_ref *v = malloc((rows ? rows : 1) * sizeof(*v));
    size_t i;
    size_t j;
    size_t k = 0;

    *nout = 0;
    if ((*out = v) == NULL)
        return LJ_ENOMEM;
    for (i = 0; i < n; i++)
        for (j = 0; j < items[i].n; j++, k++)
            if (skip == NULL || !skip[k])
                v[(*nout)++] = (row_ref){&items[i].recs[j], i, k};
    qsort(v, *nout, sizeof(*v), row_cmp);
    return 0;
}

static int encode_items(lj_buf *out, const store_item *items, const row_ref *rows,
                        size_t nrows, const copyenc_owner *owners, const char *upload_method)
{
    size_t i;

    if (copyenc_begin(out) != 0)
        return LJ_ENOMEM;
    for (i = 0; i < nrows; i++) {
        const store_item *it = &items[rows[i].item];
        copyenc_meta meta = {upload_method, it->stream_id, it->shard, it->batch_id};

        if (copyenc_health_row(out, rows[i].r, owners ? &owners[rows[i].k] : NULL, &meta) != 0)
            return LJ_ENOMEM;
    }
    return copyenc_end(out);
}

static uint64_t key_hash(const rec_health *r)
{
    uint64_t h = 1469598103934665603ull;
    const char *c;

    for (c = r->device_sn; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ull;
    h ^= (uint64_t)r->ts_ms * 0x9E3779B97F4A7C15ull + r->ts_us;
    return h ^ (h >> 29);
}

static int same_key(const rec_health *a, const rec_health *b)
{
    return a->ts_ms == b->ts_ms && a->ts_us == b->ts_us && strcmp(a->device_sn, b->device_sn) == 0;
}

/* Marks in 'skip' (one byte a row, in item order) each row whose key
 * (device_sn, ts) an earlier row of the call has: such a row would only be
 * skipped by the merge, and would send a direct COPY to the staging path. */
static int mark_repeats(const store_item *items, size_t n, size_t rows, unsigned char *skip)
{
    size_t slots = 16;
    const rec_health **seen;
    size_t i;
    size_t j;
    size_t k = 0;

    while (slots < rows * 2)
        slots <<= 1;
    if ((seen = calloc(slots, sizeof(*seen))) == NULL)
        return LJ_ENOMEM;
    for (i = 0; i < n; i++)
        for (j = 0; j < items[i].n; j++, k++) {
            const rec_health *r = &items[i].recs[j];
            size_t h = (size_t)key_hash(r) & (slots - 1);

            while (seen[h] && !same_key(seen[h], r))
                h = (h + 1) & (slots - 1);
            skip[k] = seen[h] != NULL;
            if (!skip[k])
                seen[h] = r;
        }
    free(seen);
    return 0;
}

static void read_alert(const PGresult *r, int row, store_alert *a)
{
    a->id = strtoll(PQgetvalue(r, row, 2), NULL, 10);
    snprintf(a->device_sn, sizeof(a->device_sn), "%s", PQgetvalue(r, row, 3));
    snprintf(a->alert_type, sizeof(a->alert_type), "%s", PQgetvalue(r, row, 4));
    a->value = PQgetisnull(r, row, 5) ? 0 : strtod(PQgetvalue(r, row, 5), NULL);
    snprintf(a->level, sizeof(a->level), "%s", PQgetvalue(r, row, 6));
    snprintf(a->time, sizeof(a->time), "%s", PQgetvalue(r, row, 7));
    a->user_id = PQgetisnull(r, row, 8) ? 0 : strtoll(PQgetvalue(r, row, 8), NULL, 10);
}

/* Reads a result of the shape (inserted rows, entries with a new row,
 * alert columns...): adds the counts to 'st' and appends the alerts of its
 * rows. */
static int collect(const PGresult *r, store_stats *st)
{
    int rows = PQntuples(r);
    store_alert *grown;
    int i;

    if (rows == 0)
        return 0;
    st->inserted += (size_t)strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    st->entries_new += (size_t)strtoull(PQgetvalue(r, 0, 1), NULL, 10);
    if (PQgetisnull(r, 0, 2))
        return 0;
    grown = realloc(st->alerts, (st->nalerts + (size_t)rows) * sizeof(*grown));
    if (grown == NULL)
        return LJ_ENOMEM;
    st->alerts = grown;
    for (i = 0; i < rows; i++)
        read_alert(r, i, &st->alerts[st->nalerts++]);
    return 0;
}

/* Runs 'r' (already executed) through collect(); PQclear()s it. */
static int take_result(PGconn *pg, PGresult *r, store_stats *st, const char *what)
{
    int rc;

    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        log_error("store", "%s failed sqlstate=%s: %s", what,
                  PQresultErrorField(r, PG_DIAG_SQLSTATE) ? PQresultErrorField(r, PG_DIAG_SQLSTATE)
                                                          : "-",
                  PQerrorMessage(pg));
        rc = pg_failure(pg, r);
    } else {
        rc = collect(r, st);
    }
    PQclear(r);
    return rc;
}

/* BEGIN, 'body' (which runs the statements), COMMIT; ROLLBACK on failure.
 * On failure 'st' is emptied. */
typedef int (*txn_body)(PGconn *pg, const void *arg, store_stats *st);

static int in_transaction(PGconn *pg, txn_body body, const void *arg, store_stats *st)
{
    int rc;

    if ((rc = pg_begin(pg)) != 0)
        goto failed;
    if ((rc = body(pg, arg, st)) != 0) {
        if (PQstatus(pg) == CONNECTION_OK)
            pg_exec(pg, "ROLLBACK");
        goto failed;
    }
    if ((rc = pg_exec(pg, "COMMIT")) != 0)
        goto failed;    /* a failed COMMIT has already ended the transaction */
    return 0;
failed:
    store_stats_cleanup(st);
    st->inserted = 0;
    return rc;
}

/* ------------------------------------------------------------------------
 * Health records
 * ------------------------------------------------------------------------ */

typedef struct health_job {
    const lj_buf *data;
    const store_item *items;
    size_t n;
    const row_ref *rows;            /* the rows in 'data', in its order */
    size_t nrows;
    const copyenc_owner *owners;    /* by row position in item order, or NULL */
    const char *upload_method;
    unsigned char *stored;          /* per row of 'rows': 1 when it was new */
} health_job;

/* Clears 'stored' for the rows the merge listed as skipped ('skipped':
 * positions among the rows sent, i.e. in 'rows'; NULL: none). */
static void mark_skipped(const health_job *job, const char *skipped)
{
    const char *p = skipped;

    while (p && *p) {
        char *end;
        size_t k = (size_t)strtoull(p, &end, 10);

        if (k < job->nrows)
            job->stored[k] = 0;
        p = *end == ',' ? end + 1 : NULL;
    }
}

/* Staging COPY, then INSERT ... ON CONFLICT DO NOTHING: right for any batch. */
static int staging_body(PGconn *pg, const health_job *job)
{
    PGresult *r;
    int rc;

    if ((rc = pg_exec(pg, create_staging_sql)) != 0 ||
        (rc = pg_copy_in(pg, copy_sql, job->data->data, job->data->len)) != 0)
        return rc;
    r = pg_query(pg, merge_sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        log_error("store", "merge failed sqlstate=%s: %s",
                  PQresultErrorField(r, PG_DIAG_SQLSTATE) ? PQresultErrorField(r, PG_DIAG_SQLSTATE)
                                                          : "-",
                  PQerrorMessage(pg));
        rc = pg_failure(pg, r);
    } else {
        mark_skipped(job, PQgetisnull(r, 0, 0) ? NULL : PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    return rc;
}

/* Appends one element to the array literal 'a' ("{" first): 'v' quoted and
 * escaped, or unquoted when 'bare' (numbers, NULL). */
static int put_elem(lj_buf *a, const char *v, int bare)
{
    if (lj_buf_puts(a, a->len == 0 ? "{" : ",") != 0)
        return LJ_ENOMEM;
    if (bare)
        return lj_buf_puts(a, v);
    if (lj_buf_puts(a, "\"") != 0)
        return LJ_ENOMEM;
    for (; *v; v++)
        if (((*v == '"' || *v == '\\') && lj_buf_puts(a, "\\") != 0) ||
            lj_buf_append(a, v, 1) != 0)
            return LJ_ENOMEM;
    return lj_buf_puts(a, "\"");
}

static const char *id_text(int64_t id, char *buf, size_t len)
{
    if (id <= 0)
        return "NULL";
    snprintf(buf, len, "%lld", (long long)id);
    return buf;
}

/* One alert of row 'k' of the job by 'rule' into the ten arrays. */
static int put_alert(lj_buf *col, const health_job *job, size_t k, const alert_rule *rule,
                     rec_field f)
{
    const row_ref *ref = &job->rows[k];
    const copyenc_owner *o = job->owners ? &job->owners[ref->k] : NULL;
    const char *stream_id = job->items[ref->item].stream_id;
    char num[5][32];
    char ts[40];

    snprintf(num[0], sizeof(num[0]), "%lld", (long long)rule->id);
    snprintf(num[4], sizeof(num[4]), "%.17g", alert_stored_value(ref->r, f));
    rec_format_ts_us(ref->r->ts_ms, ref->r->ts_us, ts, sizeof(ts));
    if (put_elem(&col[0], num[0], 1) != 0 ||
        put_elem(&col[1], id_text(o ? o->user_id : 0, num[1], sizeof(num[1])), 1) != 0 ||
        put_elem(&col[2], id_text(o ? o->customer_id : 0, num[2], sizeof(num[2])), 1) != 0 ||
        put_elem(&col[3], id_text(o ? o->org_id : 0, num[3], sizeof(num[3])), 1) != 0 ||
        put_elem(&col[4], ref->r->device_sn, 0) != 0 ||
        put_elem(&col[5], rec_field_column(f), 0) != 0 ||
        put_elem(&col[6], num[4], 1) != 0 || put_elem(&col[7], rule->level, 0) != 0 ||
        put_elem(&col[8], ts, 0) != 0 ||
        put_elem(&col[9], stream_id && *stream_id ? stream_id : "NULL", !(stream_id && *stream_id)))
        return LJ_ENOMEM;
    return 0;
}

/* The rules, matched against every new row of the job; the alerts they
 * raise inserted (a repeat of a stored alert is skipped) and collected. */
static int raise_alerts(PGconn *pg, const health_job *job, store_stats *st)
{
    alert_rules rules = {NULL, 0};
    lj_buf col[ALERT_ARRAYS];
    const char *params[ALERT_ARRAYS + 1];
    size_t k;
    int f;
    int rc;
    int i;

    for (i = 0; i < ALERT_ARRAYS; i++)
        lj_buf_init(&col[i]);
    if ((rc = alert_rules_load(pg, &rules)) != 0)
        goto out;
    for (k = 0; rc == 0 && rules.n > 0 && k < job->nrows; k++)
        for (f = 0; rc == 0 && job->stored[k] && f < ALERT_METRICS; f++) {
            const alert_rule *rule = alert_rules_match(&rules, job->rows[k].r, (rec_field)f);

            if (rule)
                rc = put_alert(col, job, k, rule, (rec_field)f);
        }
    if (rc != 0 || col[0].len == 0)
        goto out;
    for (i = 0; i < ALERT_ARRAYS; i++) {
        if (lj_buf_puts(&col[i], "}") != 0) {
            rc = LJ_ENOMEM;
            goto out;
        }
        params[i] = col[i].data;
    }
    params[ALERT_ARRAYS] = strcmp(job->upload_method, STORE_UPLOAD_IMPORT) == 0 ? "IMPORTED" : "NEW";
    rc = take_result(pg, pg_query_params(pg, alerts_sql, ALERT_ARRAYS + 1, params), st, "alerts");
out:
    for (i = 0; i < ALERT_ARRAYS; i++)
        lj_buf_cleanup(&col[i]);
    alert_rules_cleanup(&rules);
    return rc;
}

/* SPEC §5.1's faster variant: COPY straight into the table under a
 * savepoint, about twice the rate of staging + INSERT ... SELECT. A batch
 * holding a row that is already stored (a redelivery, a reading sent twice)
 * or that the table refuses rolls back to the savepoint and takes the
 * staging path, which skips duplicates and names the refused entry. Then
 * the new rows' alerts. */
static int health_body(PGconn *pg, const void *arg, store_stats *st)
{
    const health_job *job = arg;
    size_t fresh = 0;
    size_t k;
    int rc;

    memset(job->stored, 1, job->nrows ? job->nrows : 1);
    if ((rc = pg_exec(pg, "SAVEPOINT direct")) != 0)
        return rc;
    rc = pg_copy_quiet(pg, direct_copy_sql, job->data->data, job->data->len);
    if (rc == LJ_EPOISON && (rc = pg_exec(pg, "ROLLBACK TO SAVEPOINT direct")) == 0)
        rc = staging_body(pg, job);
    if (rc != 0)
        return rc;
    for (k = 0; k < job->nrows; k++)
        fresh += job->stored[k];
    st->inserted += fresh;
    return fresh > 0 ? raise_alerts(pg, job, st) : 0;     /* no new row: no alert */
}

/* Per item, the rows that were new ('fresh', room for 'n'); and the stream
 * entries with at least one. */
static void count_fresh(const health_job *job, size_t *fresh, store_stats *st)
{
    size_t i;
    size_t k;

    for (i = 0; i < job->n; i++)
        fresh[i] = 0;
    for (k = 0; k < job->nrows; k++)
        fresh[job->rows[k].item] += job->stored[k];
    for (i = 0; i < job->n; i++)
        st->entries_new += fresh[i] > 0 && job->items[i].stream_id && *job->items[i].stream_id;
}

/* The partitions of the months the batch touches, before its transaction
 * (creating one waits for writers: no lock of ours may be held then); only
 * months in the process's window, a few per batch (partition.h): the rest
 * of the readings go to the default partition. */
static int ensure_months(PGconn *pg, const store_item *items, size_t n)
{
    part_months want;
    size_t i;
    size_t j;

    memset(&want, 0, sizeof(want));
    for (i = 0; i < n; i++)
        for (j = 0; j < items[i].n; j++)
            part_months_add(&want, items[i].recs[j].ts_ms);
    return part_ensure(pg, &want);
}

int store_health_batch(PGconn *pg, enrich_cache *cache, const store_item *items, size_t n,
                       const char *upload_method, store_stats *st)
{
    return store_health_each(pg, cache, items, n, upload_method, st, NULL);
}

int store_health_each(PGconn *pg, enrich_cache *cache, const store_item *items, size_t n,
                      const char *upload_method, store_stats *st, size_t *each)
{
    copyenc_owner *owners = NULL;
    unsigned char *skip = NULL;
    unsigned char *stored = NULL;
    size_t *fresh = NULL;
    row_ref *order = NULL;
    size_t nsend = 0;
    health_job job;
    lj_buf data;
    size_t rows = 0;
    size_t i;
    int rc;

    memset(st, 0, sizeof(*st));
    lj_buf_init(&data);
    for (i = 0; i < n; i++)
        rows += items[i].n;
    if ((skip = malloc(rows ? rows : 1)) == NULL || (stored = malloc(rows ? rows : 1)) == NULL ||
        (fresh = malloc((n ? n : 1) * sizeof(*fresh))) == NULL) {
        rc = LJ_ENOMEM;
        goto out;
    }
    if ((rc = mark_repeats(items, n, rows, skip)) != 0 ||
        (rc = find_owners(pg, cache, items, n, rows, &owners, st)) != 0)
        goto out;
    if ((rc = sorted_rows(items, n, rows, skip, &order, &nsend)) != 0 ||
        (rc = encode_items(&data, items, order, nsend, owners, upload_method)) != 0)
        goto out;
    if ((rc = ensure_months(pg, items, n)) != 0)
        goto out;
    job = (health_job){&data, items, n, order, nsend, owners, upload_method, stored};
    if ((rc = in_transaction(pg, health_body, &job, st)) == 0) {
        count_fresh(&job, fresh, st);
        if (each)
            memcpy(each, fresh, n * sizeof(*each));
        st->duplicates = rows - st->inserted;
    }
out:
    free(order);
    free(skip);
    free(stored);
    free(fresh);
    free(owners);
    lj_buf_cleanup(&data);
    return rc;
}

/* ------------------------------------------------------------------------
 * Device status reports and events
 * ------------------------------------------------------------------------ */

/* Owners of 'n' devices whose serials are 'stride' bytes apart from 'first'. */
static int owners_of(PGconn *pg, enrich_cache *cache, const char *first, size_t stride,
                     size_t n, copyenc_owner *owners, store_stats *st)
{
    const char **sns;
    size_t i;
    int rc;

    memset(owners, 0, n * sizeof(*owners));
    if (cache == NULL || n == 0)
        return 0;
    if ((sns = malloc(n * sizeof(*sns))) == NULL)
        return LJ_ENOMEM;
    for (i = 0; i < n; i++)
        sns[i] = first + i * stride;
    rc = enrich_lookup(cache, pg, sns, n, now_ms(), owners);
    for (i = 0; rc == 0 && i < n; i++)
        st->unbound += owners[i].user_id <= 0;
    free(sns);
    return rc;
}

/* An id as a parameter: NULL when unknown. */
static const char *id_param(int64_t id, char *buf, size_t len)
{
    if (id <= 0)
        return NULL;
    snprintf(buf, len, "%lld", (long long)id);
    return buf;
}

/* History first: its unique stream_id makes a redelivered report a no-op,
 * and only a new report may move the latest state (never backwards). */
static const char device_sql[] =
    "WITH h AS ("
    " INSERT INTO t_device_info_history (device_sn, info, report_time, stream_id, stream)"
    " VALUES ($1, $2::jsonb, $3::timestamptz, $4, $11)"
    " ON CONFLICT (stream, stream_id) DO NOTHING"
    " RETURNING device_sn),"
    "latest AS ("
    " INSERT INTO t_device_info (device_sn, info, battery_level, wear_state, firmware_version,"
    " user_id, customer_id, org_id, stream_id, report_time)"
    " SELECT $1, $2::jsonb, $5::integer, NULLIF($6, ''), NULLIF($7, ''), $8::bigint,"
    " $9::bigint, $10::bigint, $4, $3::timestamptz FROM h"
    " ON CONFLICT (device_sn) DO UPDATE SET info = EXCLUDED.info,"
    " battery_level = EXCLUDED.battery_level, wear_state = EXCLUDED.wear_state,"
    " firmware_version = EXCLUDED.firmware_version, user_id = EXCLUDED.user_id,"
    " customer_id = EXCLUDED.customer_id, org_id = EXCLUDED.org_id,"
    " stream_id = EXCLUDED.stream_id, report_time = EXCLUDED.report_time, update_time = now()"
    " WHERE t_device_info.report_time <= EXCLUDED.report_time)"
    "SELECT (SELECT count(*) FROM h), (SELECT count(*) FROM h), NULL";

typedef struct report_job {
    const char *stream;
    const void *reps;
    const char *const *stream_ids;
    const copyenc_owner *owners;
    size_t n;
    size_t *each;           /* per-report new rows, or NULL */
} report_job;

static int device_body(PGconn *pg, const void *arg, store_stats *st)
{
    const report_job *job = arg;
    const rep_device *d = job->reps;
    size_t before;
    size_t i;
    int rc = 0;

    for (i = 0; rc == 0 && i < job->n; i++) {
        char ts[40];
        char battery[16];
        char ids[3][24];
        const char *params[11];

        rec_format_ts(d[i].ts_ms, ts, sizeof(ts));
        snprintf(battery, sizeof(battery), "%d", d[i].battery_level);
        params[0] = d[i].device_sn;
        params[1] = d[i].info;
        params[2] = ts;
        params[3] = job->stream_ids[i];
        params[4] = d[i].battery_level >= 0 ? battery : NULL;
        params[5] = d[i].wear_state;
        params[6] = d[i].firmware_version;
        params[7] = id_param(job->owners[i].user_id, ids[0], sizeof(ids[0]));
        params[8] = id_param(job->owners[i].customer_id, ids[1], sizeof(ids[1]));
        params[9] = id_param(job->owners[i].org_id, ids[2], sizeof(ids[2]));
        params[10] = job->stream;
        before = st->inserted;
        rc = take_result(pg, pg_query_params(pg, device_sql, 11, params), st,
                         "device info");
        if (job->each)
            job->each[i] = st->inserted - before;
    }
    return rc;
}

/* The event, and an alert from the most severe enabled rule for its type. */
static const char event_sql[] =
    "WITH ev AS ("
    " INSERT INTO t_common_event (device_sn, event_type, event_time, payload, user_id,"
    " customer_id, org_id, stream_id)"
    " VALUES ($1, $2, $3::timestamptz, $4::jsonb, $5::bigint, $6::bigint, $7::bigint, $8)"
    " ON CONFLICT (device_sn, event_type, event_time) DO NOTHING"
    " RETURNING device_sn, event_type, event_time, user_id, customer_id, org_id, stream_id),"
    "al AS ("
    " INSERT INTO t_alert_info (rule_id, user_id, customer_id, org_id, device_sn, alert_type,"
    " alert_value, level, alert_time, stream_id)"
    " SELECT r.id, ev.user_id, ev.customer_id, ev.org_id, ev.device_sn, ev.event_type, NULL,"
    " r.level, ev.event_time, ev.stream_id FROM ev CROSS JOIN LATERAL ("
    " SELECT id, level FROM t_alert_rule WHERE enabled AND metric = 'event'"
    " AND event_type = ev.event_type"
    " ORDER BY CASE level WHEN 'critical' THEN 3 WHEN 'major' THEN 2 ELSE 1 END DESC, id"
    " LIMIT 1) r"
    " ON CONFLICT DO NOTHING"
    " RETURNING id, device_sn, alert_type, alert_value, level, alert_time, user_id)"
    "SELECT (SELECT count(*) FROM ev), (SELECT count(*) FROM ev),"
    " al.id, al.device_sn, al.alert_type, al.alert_value,"
    " al.level, to_char(al.alert_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    " al.user_id"
    " FROM (SELECT 1) one LEFT JOIN al ON true";

static int event_body(PGconn *pg, const void *arg, store_stats *st)
{
    const report_job *job = arg;
    const rep_event *e = job->reps;
    size_t before;
    size_t i;
    int rc = 0;

    for (i = 0; rc == 0 && i < job->n; i++) {
        char ts[40];
        char ids[3][24];
        const char *params[8];

        rec_format_ts(e[i].ts_ms, ts, sizeof(ts));
        params[0] = e[i].device_sn;
        params[1] = e[i].event_type;
        params[2] = ts;
        params[3] = e[i].payload;
        params[4] = id_param(job->owners[i].user_id, ids[0], sizeof(ids[0]));
        params[5] = id_param(job->owners[i].customer_id, ids[1], sizeof(ids[1]));
        params[6] = id_param(job->owners[i].org_id, ids[2], sizeof(ids[2]));
        params[7] = job->stream_ids[i];
        before = st->inserted;
        rc = take_result(pg, pg_query_params(pg, event_sql, 8, params), st,
                         "event");
        if (job->each)
            job->each[i] = st->inserted - before;
    }
    return rc;
}

static int store_reports(PGconn *pg, enrich_cache *cache, const char *stream, const void *reps,
                         size_t stride, const char *first_sn, const char *const *stream_ids,
                         size_t n, txn_body body, store_stats *st, size_t *each)
{
    copyenc_owner *owners = calloc(n ? n : 1, sizeof(*owners));
    report_job job = {stream, reps, stream_ids, owners, n, each};
    int rc;

    memset(st, 0, sizeof(*st));
    if (owners == NULL)
        return LJ_ENOMEM;
    if ((rc = owners_of(pg, cache, first_sn, stride, n, owners, st)) == 0 &&
        (rc = in_transaction(pg, body, &job, st)) == 0)
        st->duplicates = n - st->inserted;
    free(owners);
    return rc;
}

int store_device_batch(PGconn *pg, enrich_cache *cache, const char *stream,
                       const rep_device *reps, const char *const *stream_ids, size_t n,
                       store_stats *st, size_t *each)
{
    return store_reports(pg, cache, stream, reps, sizeof(*reps), n ? reps[0].device_sn : NULL,
                         stream_ids, n, device_body, st, each);
}

int store_event_batch(PGconn *pg, enrich_cache *cache, const rep_event *evs,
                      const char *const *stream_ids, size_t n, store_stats *st, size_t *each)
{
    return store_reports(pg, cache, NULL, evs, sizeof(*evs), n ? evs[0].device_sn : NULL,
                         stream_ids, n, event_body, st, each);
}
