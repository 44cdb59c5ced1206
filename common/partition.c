#include "partition.h"

#include <libpq-events.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "err.h"
#include "log.h"
#include "pg.h"

static const char ensure_sql[] = "SELECT ensure_health_months($1::date[])";

/* Set once at start (part_window_set), read by every thread after. */
static int window_back = PART_WINDOW_BACK;
static int window_new_max = PART_NEW_MAX;
static int window_any;

void part_window_set(int back, int new_max)
{
    window_back = back < 0 ? 0 : back;
    window_new_max = new_max < 1 ? 1 : new_max;
    window_any = 0;
}

void part_window_any(void)
{
    window_any = 1;
}

void part_window_range(int64_t now_ms, int *first, int *last)
{
    int now = part_month_index(now_ms);

    if (window_any || now < 0) {    /* a clock outside 2000..2099: no bound to apply */
        *first = 0;
        *last = PART_MONTHS - 1;
        return;
    }
    *first = now - window_back < 0 ? 0 : now - window_back;
    *last = now + PART_MONTHS_AHEAD >= PART_MONTHS ? PART_MONTHS - 1 : now + PART_MONTHS_AHEAD;
}

static int64_t now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int part_month_index(int64_t ts_ms)
{
    time_t secs = (time_t)(ts_ms >= 0 ? ts_ms / 1000 : -((-(ts_ms + 1)) / 1000) - 1);
    struct tm tm;
    int idx;

    if (gmtime_r(&secs, &tm) == NULL)
        return -1;
    idx = (tm.tm_year + 1900 - PART_FIRST_YEAR) * 12 + tm.tm_mon;
    return idx >= 0 && idx < PART_MONTHS ? idx : -1;
}

static int has(const part_months *m, int i)
{
    return (m->bits[i / 8] >> (i % 8)) & 1;
}

static void set(part_months *m, int i)
{
    m->bits[i / 8] |= (uint8_t)(1u << (i % 8));
}

void part_months_add(part_months *m, int64_t ts_ms)
{
    int i = part_month_index(ts_ms);

    if (i >= 0)
        set(m, i);
}

/* The known months live with the connection: made at registration, emptied
 * by PQreset() (it may reach another server), freed by PQfinish(). */
static int on_event(PGEventId id, void *info, void *pass)
{
    (void)pass;
    switch (id) {
    case PGEVT_REGISTER: {
        PGconn *c = ((PGEventRegister *)info)->conn;
        part_months *known = calloc(1, sizeof(*known));

        return known != NULL && PQsetInstanceData(c, on_event, known);
    }
    case PGEVT_CONNRESET: {
        part_months *known = PQinstanceData(((PGEventConnReset *)info)->conn, on_event);

        if (known)
            memset(known, 0, sizeof(*known));
        return 1;
    }
    case PGEVT_CONNDESTROY:
        free(PQinstanceData(((PGEventConnDestroy *)info)->conn, on_event));
        return 1;
    default:
        return 1;
    }
}

int part_register(PGconn *pg)
{
    if (PQinstanceData(pg, on_event) != NULL)
        return 0;
    return PQregisterEventProc(pg, on_event, "ljwx-partitions", NULL) ? 0 : LJ_ENOMEM;
}

/* "{2011-03-01,...}" for the months of 'want' not in 'known' (NULL: none
 * known), within the window and at most its cap, newest first (the months
 * most readings go to); 'missing' gets them. Returns how many. */
static int missing_months(const part_months *want, const part_months *known,
                          part_months *missing, lj_buf *out)
{
    int max = window_any ? PART_MONTHS : window_new_max;
    int first;
    int last;
    int n = 0;
    int i;

    memset(missing, 0, sizeof(*missing));
    part_window_range(now_ms(), &first, &last);
    for (i = last; i >= first && n < max; i--) {
        char day[24];

        if (!has(want, i) || (known && has(known, i)))
            continue;
        set(missing, i);
        snprintf(day, sizeof(day), "%s%04d-%02d-01", n ? "," : "{",
                 PART_FIRST_YEAR + i / 12, i % 12 + 1);
        if (lj_buf_puts(out, day) != 0)
            return LJ_ENOMEM;
        n++;
    }
    if (n > 0 && lj_buf_puts(out, "}") != 0)
        return LJ_ENOMEM;
    return n;
}

static void remember(part_months *known, const part_months *months)
{
    size_t i;

    if (known)
        for (i = 0; i < sizeof(known->bits); i++)
            known->bits[i] |= months->bits[i];
}

/* 1 when 'r' failed because the default partition was in use (55P03). */
static int default_busy(const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

    return state && strcmp(state, "55P03") == 0;
}

/* ensure_health_months('arr'). The function gives up at once when the
 * default partition is in use (migration 006: it must not hold every insert
 * behind it); the transactions holding it are batches that end within
 * milliseconds, so it is asked again a few times, briefly, before the rows
 * go to the default partition. */
static PGresult *ask(PGconn *pg, const char *arr)
{
    static const long wait_ms[] = {10, 30, 100, 250};
    const char *params[1] = {arr};
    PGresult *r;
    size_t i;

    for (i = 0;; i++) {
        r = pg_query_params(pg, ensure_sql, 1, params);
        if (i == sizeof(wait_ms) / sizeof(wait_ms[0]) || !default_busy(r))
            return r;
        PQclear(r);
        nanosleep(&(struct timespec){0, wait_ms[i] * 1000000L}, NULL);
    }
}

int part_ensure(PGconn *pg, const part_months *want)
{
    part_months *known = PQinstanceData(pg, on_event);
    part_months missing;
    const char *state;
    PGresult *r;
    lj_buf arr;
    int n;
    int rc = 0;

    lj_buf_init(&arr);
    if ((n = missing_months(want, known, &missing, &arr)) <= 0) {
        rc = n;
        goto out;
    }
    r = ask(pg, arr.data);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        if (PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "0") != 0)
            log_info("partition", "created %s monthly partitions for months %s",
                     PQgetvalue(r, 0, 0), arr.data);
        remember(known, &missing);
    } else if (PQstatus(pg) != CONNECTION_OK) {
        rc = LJ_EUNAVAIL;
    } else {
        state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        /* No such function (42883: migration 003 not applied) or no
         * EXECUTE (42501): it will not get better on this connection, so
         * no month is asked for again on it; anything else (a lock
         * timeout) may. */
        if (state && (strcmp(state, "42883") == 0 || strcmp(state, "42501") == 0)) {
            log_error("partition", "ensure_health_months() failed sqlstate=%s (migration 003 "
                      "applied? EXECUTE granted?); readings of new months go to the default "
                      "partition on this connection: %s", state, PQerrorMessage(pg));
            if (known)
                memset(known, 0xff, sizeof(*known));
        } else {
            log_warn("partition", "ensure_health_months(%s) failed sqlstate=%s, their rows go "
                     "to the default partition for now: %s", arr.data, state ? state : "-",
                     PQerrorMessage(pg));
        }
    }
    PQclear(r);
out:
    lj_buf_cleanup(&arr);
    return rc;
}
