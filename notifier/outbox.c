#include "outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "pg.h"

/* The columns of an alert, in notify_alert's order. */
#define ALERT_COLUMNS                                                                  \
    "a.id, a.device_sn, COALESCE(a.user_id::text, ''),"                                \
    " COALESCE((SELECT u.user_name FROM sys_user u WHERE u.id = a.user_id), ''),"      \
    " COALESCE(a.org_id::text, ''), a.alert_type, COALESCE(a.alert_value::text, ''),"  \
    " a.level, to_char(a.alert_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static const char claim_sql[] =
    "WITH c AS (SELECT id FROM t_alert_info"
    "            WHERE status = 'NEW' AND (claimed_until IS NULL OR claimed_until <= now())"
    "            ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)"
    " UPDATE t_alert_info a SET claimed_until = now() + $2::float8 * interval '1 millisecond',"
    "        claimed_by = $3"
    "   FROM c WHERE a.id = c.id"
    " RETURNING " ALERT_COLUMNS;

/* Renews the lease and reads the delivery log in one round trip: no row
 * when the lease is not ours any more; one row of NULLs when it is and
 * nothing was logged yet. */
static const char renew_sql[] =
    "WITH r AS (UPDATE t_alert_info"
    "              SET claimed_until = now() + $3::float8 * interval '1 millisecond'"
    "            WHERE id = $1 AND claimed_by = $2 AND status = 'NEW' RETURNING id)"
    " SELECT d.channel, d.attempts, d.status,"
    "        GREATEST(0, ceil(extract(epoch FROM d.next_attempt - now()) * 1000))::bigint"
    "   FROM r LEFT JOIN t_alert_delivery d ON d.alert_id = r.id"
    "  ORDER BY d.channel LIMIT $4";

/* The latest earlier alert this one repeats; 'a' is marked and counted on
 * it in the same statement. Levels ranked so a more severe alert is never
 * suppressed by a milder one. */
#define RANK(x) "(CASE " x " WHEN 'critical' THEN 3 WHEN 'major' THEN 2 ELSE 1 END)"
static const char suppress_sql[] =
    "WITH k AS (SELECT id FROM t_alert_info"
    "            WHERE device_sn = $2 AND alert_type = $3 AND id < $1"
    "              AND status IN ('NEW', 'NOTIFIED', 'FAILED')"
    "              AND alert_time > $4::timestamptz - $5::float8 * interval '1 second'"
    "              AND alert_time < $4::timestamptz + $5::float8 * interval '1 second'"
    "              AND " RANK("level") " >= " RANK("$6")
    "            ORDER BY id DESC LIMIT 1),"
    " s AS (UPDATE t_alert_info SET status = 'SUPPRESSED', suppressed_by = (SELECT id FROM k),"
    "              claimed_until = NULL, claimed_by = NULL, notified_at = now()"
    "        WHERE id = $1 AND claimed_by = $7 AND status = 'NEW'"
    "          AND EXISTS (SELECT 1 FROM k) RETURNING suppressed_by)"
    " UPDATE t_alert_info SET suppressed_count = suppressed_count + 1"
    "  WHERE id = (SELECT suppressed_by FROM s) RETURNING id";

static const char route_sql[] =
    "SELECT DISTINCT channel FROM t_notify_route"
    " WHERE enabled AND level = $1"
    "   AND (org_id = $2::bigint OR (org_id IS NULL AND NOT EXISTS"
    "        (SELECT 1 FROM t_notify_route o WHERE o.org_id = $2::bigint)))";

static const char record_sql[] =
    "INSERT INTO t_alert_delivery AS d (alert_id, channel, attempts, status, last_error,"
    "                                   next_attempt, delivered_at)"
    " VALUES ($1, $2, 1, $3::varchar, NULLIF($4::varchar, ''),"
    "         CASE WHEN $3::varchar = 'PENDING'"
    "              THEN now() + $5::float8 * interval '1 millisecond' END,"
    "         CASE WHEN $3::varchar = 'DELIVERED' THEN now() END)"
    " ON CONFLICT (alert_id, channel) DO UPDATE"
    "   SET attempts = d.attempts + 1, status = EXCLUDED.status,"
    "       last_error = COALESCE(EXCLUDED.last_error, d.last_error),"
    "       next_attempt = EXCLUDED.next_attempt, delivered_at = EXCLUDED.delivered_at,"
    "       update_time = now()";

static const char finish_sql[] =
    "UPDATE t_alert_info"
    "   SET status = $3::varchar, claimed_by = NULL,"
    "       claimed_until = CASE WHEN $3::varchar = 'NEW'"
    "                            THEN now() + $4::float8 * interval '1 millisecond' END,"
    "       notified_at = CASE WHEN $3::varchar = 'NEW' THEN NULL ELSE now() END"
    " WHERE id = $1 AND claimed_by = $2 AND status = 'NEW'";

static const char release_sql[] =
    "UPDATE t_alert_info SET claimed_until = NULL, claimed_by = NULL"
    " WHERE claimed_by = $1 AND status = 'NEW'";

static const char expire_sql[] =
    "UPDATE t_alert_info a SET status = 'EXPIRED', notified_at = now(), claimed_until = NULL"
    " WHERE status = 'NEW' AND create_time < now() - $1::float8 * interval '1 second'"
    "   AND (claimed_until IS NULL OR claimed_until <= now())"
    "   AND NOT EXISTS (SELECT 1 FROM t_alert_delivery d WHERE d.alert_id = a.id)";

/* Runs 'sql'; '*res' is the result when it has status 'want' (PQclear it).
 * Else the failure is logged and returned. */
static int run(PGconn *c, const char *what, const char *sql, int n, const char *const *p,
               ExecStatusType want, PGresult **res)
{
    PGresult *r = pg_query_params(c, sql, n, p);
    int rc;

    if (r && PQresultStatus(r) == want) {
        *res = r;
        return 0;
    }
    rc = pg_failure(c, r);
    log_error("outbox", "%s failed sqlstate=%s: %s", what,
              r && PQresultErrorField(r, PG_DIAG_SQLSTATE)
                  ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : "-",
              PQerrorMessage(c));
    PQclear(r);
    return rc;
}

static void copy_col(char *dst, size_t len, const PGresult *r, int row, int col)
{
    snprintf(dst, len, "%s", PQgetvalue(r, row, col));
}

static void read_alert(const PGresult *r, int row, notify_alert *a)
{
    copy_col(a->id, sizeof(a->id), r, row, 0);
    copy_col(a->device_sn, sizeof(a->device_sn), r, row, 1);
    copy_col(a->user_id, sizeof(a->user_id), r, row, 2);
    copy_col(a->user_name, sizeof(a->user_name), r, row, 3);
    copy_col(a->org_id, sizeof(a->org_id), r, row, 4);
    copy_col(a->type, sizeof(a->type), r, row, 5);
    copy_col(a->value, sizeof(a->value), r, row, 6);
    copy_col(a->level, sizeof(a->level), r, row, 7);
    copy_col(a->time, sizeof(a->time), r, row, 8);
}

static int by_id(const void *x, const void *y)
{
    long long a = atoll(((const notify_alert *)x)->id);
    long long b = atoll(((const notify_alert *)y)->id);

    return (a > b) - (a < b);
}

int outbox_claim(PGconn *c, const char *me, int max, int lease_ms, notify_alert *out, int *n)
{
    char smax[16];
    char slease[16];
    const char *p[3] = {smax, slease, me};
    PGresult *r;
    int rc;
    int i;

    snprintf(smax, sizeof(smax), "%d", max);
    snprintf(slease, sizeof(slease), "%d", lease_ms);
    if ((rc = run(c, "claim", claim_sql, 3, p, PGRES_TUPLES_OK, &r)) != 0)
        return rc;
    *n = PQntuples(r) < max ? PQntuples(r) : max;
    for (i = 0; i < *n; i++)
        read_alert(r, i, &out[i]);
    PQclear(r);
    qsort(out, (size_t)*n, sizeof(*out), by_id);
    return 0;
}

/* Runs the UPDATE 'sql'; '*rows' says how many rows it changed. */
static int changed(PGconn *c, const char *what, const char *sql, int n, const char *const *p,
                   long *rows)
{
    PGresult *r;
    int rc;

    if ((rc = run(c, what, sql, n, p, PGRES_COMMAND_OK, &r)) != 0)
        return rc;
    *rows = atol(PQcmdTuples(r));
    PQclear(r);
    return 0;
}

/* As changed(), for an UPDATE of one alert guarded by claimed_by: '*held'
 * says whether it changed the row. */
static int guarded(PGconn *c, const char *what, const char *sql, int n, const char *const *p,
                   int *held)
{
    long rows = 0;
    int rc = changed(c, what, sql, n, p, &rows);

    *held = rows > 0;
    return rc;
}

static channel_verdict state_of(const char *status)
{
    if (strcmp(status, "DELIVERED") == 0)
        return CHANNEL_DELIVERED;
    return strcmp(status, "DEAD") == 0 ? CHANNEL_DEAD : CHANNEL_RETRY;
}

int outbox_renew(PGconn *c, const char *me, const notify_alert *a, int lease_ms,
                 outbox_delivery *out, int *n, int *held)
{
    char slease[16];
    char smax[16];
    const char *p[4] = {a->id, me, slease, smax};
    PGresult *r;
    int rc;
    int i;

    snprintf(slease, sizeof(slease), "%d", lease_ms);
    snprintf(smax, sizeof(smax), "%d", OUTBOX_MAX_DELIVERIES);
    if ((rc = run(c, "renew", renew_sql, 4, p, PGRES_TUPLES_OK, &r)) != 0)
        return rc;
    *held = PQntuples(r) > 0;
    *n = 0;
    for (i = 0; i < PQntuples(r); i++) {
        if (PQgetisnull(r, i, 0))
            continue;
        copy_col(out[*n].channel, sizeof(out[*n].channel), r, i, 0);
        out[*n].attempts = atoi(PQgetvalue(r, i, 1));
        out[*n].state = state_of(PQgetvalue(r, i, 2));
        out[*n].wait_ms = PQgetisnull(r, i, 3) ? 0 : atol(PQgetvalue(r, i, 3));
        (*n)++;
    }
    PQclear(r);
    return 0;
}

int outbox_suppress(PGconn *c, const char *me, const notify_alert *a, int window_s,
                    int *suppressed)
{
    char swin[16];
    const char *p[7] = {a->id, a->device_sn, a->type, a->time, swin, a->level, me};
    PGresult *r;
    int rc;

    *suppressed = 0;
    if (window_s <= 0)
        return 0;
    snprintf(swin, sizeof(swin), "%d", window_s);
    if ((rc = run(c, "suppress", suppress_sql, 7, p, PGRES_TUPLES_OK, &r)) != 0)
        return rc;
    *suppressed = PQntuples(r) > 0;
    PQclear(r);
    return 0;
}

int outbox_route(PGconn *c, const notify_alert *a, unsigned *kinds)
{
    const char *p[2] = {a->level, *a->org_id ? a->org_id : NULL};
    PGresult *r;
    int rc;
    int i;
    int k;

    *kinds = 0;
    if ((rc = run(c, "route", route_sql, 2, p, PGRES_TUPLES_OK, &r)) != 0)
        return rc;
    for (i = 0; i < PQntuples(r); i++)
        for (k = 0; k < CHANNEL_KINDS; k++)
            if (strcmp(PQgetvalue(r, i, 0), channel_route_name((channel_kind)k)) == 0)
                *kinds |= 1u << k;
    PQclear(r);
    return 0;
}

int outbox_record(PGconn *c, const notify_alert *a, const char *channel, channel_verdict state,
                  const char *why, long next_ms)
{
    static const char *const names[] = {"DELIVERED", "PENDING", "DEAD"};
    char snext[24];
    const char *p[5] = {a->id, channel, names[state], why ? why : "", snext};
    PGresult *r;
    int rc;

    snprintf(snext, sizeof(snext), "%ld", next_ms);
    if ((rc = run(c, "record", record_sql, 5, p, PGRES_COMMAND_OK, &r)) != 0)
        return rc;
    PQclear(r);
    return 0;
}

int outbox_finish(PGconn *c, const char *me, const notify_alert *a, const char *status,
                  long next_ms, int *held)
{
    char snext[24];
    const char *p[4] = {a->id, me, status, snext};

    snprintf(snext, sizeof(snext), "%ld", next_ms);
    return guarded(c, "finish", finish_sql, 4, p, held);
}

int outbox_release(PGconn *c, const char *me)
{
    const char *p[1] = {me};
    long n = 0;
    int rc = changed(c, "release", release_sql, 1, p, &n);

    if (rc == 0 && n > 0)
        log_info("outbox", "released=%ld alerts claimed and not handled", n);
    return rc;
}

int outbox_expire(PGconn *c, int max_age_s, long *n)
{
    char sage[16];
    const char *p[1] = {sage};

    snprintf(sage, sizeof(sage), "%d", max_age_s);
    return changed(c, "expire", expire_sql, 1, p, n);
}
