#include "alertrule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "copyenc.h"
#include "err.h"
#include "log.h"
#include "pg.h"

/* The threshold's 8 bytes in hex (float8send): exact, whatever the
 * session's extra_float_digits. */
static const char load_sql[] =
    "SELECT id, metric, comparison, encode(float8send(threshold), 'hex'), level"
    " FROM t_alert_rule WHERE enabled AND threshold IS NOT NULL";

static double from_hex(const char *hex)
{
    uint64_t bits = strtoull(hex, NULL, 16);
    double v;

    memcpy(&v, &bits, sizeof(v));
    return v;
}

static const struct {
    const char *op;
    alert_cmp cmp;
} cmps[] = {{">", ALERT_GT}, {"<", ALERT_LT}, {">=", ALERT_GE}, {"<=", ALERT_LE}, {"=", ALERT_EQ}};

static int metric_of(const char *name, rec_field *f)
{
    int i;

    for (i = 0; i < ALERT_METRICS; i++)
        if (strcmp(rec_field_column((rec_field)i), name) == 0) {
            *f = (rec_field)i;
            return 0;
        }
    return -1;
}

static int cmp_of(const char *op, alert_cmp *c)
{
    size_t i;

    for (i = 0; i < sizeof(cmps) / sizeof(cmps[0]); i++)
        if (strcmp(cmps[i].op, op) == 0) {
            *c = cmps[i].cmp;
            return 0;
        }
    return -1;
}

static int rank_of(const char *level)
{
    return strcmp(level, "critical") == 0 ? 3 : strcmp(level, "major") == 0 ? 2 : 1;
}

int alert_rules_add(alert_rules *rs, int64_t id, const char *metric, const char *comparison,
                    double threshold, const char *level)
{
    alert_rule r = {.id = id, .threshold = threshold, .rank = rank_of(level)};
    alert_rule *grown;

    if (metric_of(metric, &r.metric) != 0 || cmp_of(comparison, &r.cmp) != 0)
        return 0;
    snprintf(r.level, sizeof(r.level), "%s", level);
    if ((grown = realloc(rs->v, (rs->n + 1) * sizeof(*grown))) == NULL)
        return LJ_ENOMEM;
    rs->v = grown;
    rs->v[rs->n++] = r;
    return 0;
}

static int rule_order(const void *pa, const void *pb)
{
    const alert_rule *a = pa;
    const alert_rule *b = pb;

    if (a->metric != b->metric)
        return a->metric < b->metric ? -1 : 1;
    if (a->rank != b->rank)
        return a->rank > b->rank ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

void alert_rules_sort(alert_rules *rs)
{
    if (rs->n > 1)
        qsort(rs->v, rs->n, sizeof(*rs->v), rule_order);
}

void alert_rules_cleanup(alert_rules *rs)
{
    free(rs->v);
    rs->v = NULL;
    rs->n = 0;
}

int alert_rules_load(PGconn *pg, alert_rules *rs)
{
    PGresult *r = pg_query(pg, load_sql);
    int rc = 0;
    int i;

    alert_rules_cleanup(rs);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        log_error("store", "reading t_alert_rule failed: %s", PQerrorMessage(pg));
        rc = pg_failure(pg, r);
        PQclear(r);
        return rc;
    }
    for (i = 0; rc == 0 && i < PQntuples(r); i++)
        rc = alert_rules_add(rs, strtoll(PQgetvalue(r, i, 0), NULL, 10), PQgetvalue(r, i, 1),
                             PQgetvalue(r, i, 2), from_hex(PQgetvalue(r, i, 3)),
                             PQgetvalue(r, i, 4));
    PQclear(r);
    alert_rules_sort(rs);
    return rc;
}

double alert_stored_value(const rec_health *r, rec_field f)
{
    return rec_field_is_int(f) ? r->num[f] : copyenc_stored_double(r->num[f]);
}

static int matches(const alert_rule *rule, double v)
{
    switch (rule->cmp) {
    case ALERT_GT:
        return v > rule->threshold;
    case ALERT_LT:
        return v < rule->threshold;
    case ALERT_GE:
        return v >= rule->threshold;
    case ALERT_LE:
        return v <= rule->threshold;
    case ALERT_EQ:
        return v == rule->threshold;
    }
    return 0;
}

const alert_rule *alert_rules_match(const alert_rules *rs, const rec_health *r, rec_field f)
{
    double v = 0;
    int have = 0;
    size_t i;

    if (!(r->present & (1u << f)))
        return NULL;
    for (i = 0; i < rs->n && rs->v[i].metric <= f; i++) {
        if (rs->v[i].metric != f)
            continue;
        if (!have)
            v = alert_stored_value(r, f), have = 1;
        if (matches(&rs->v[i], v))
            return &rs->v[i];
    }
    return NULL;
}
