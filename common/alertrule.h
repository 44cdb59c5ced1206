/* alertrule.h -- the health alert rules (t_alert_rule, SPEC §5.3), matched
 * in the process instead of by re-reading the stored rows.
 *
 * For each new row and metric the most severe enabled rule that matches
 * raises one alert: critical over major over minor, the lower rule id on a
 * tie. A rule compares the metric's value as stored (doubles keep 15
 * significant digits, copyenc_stored_double()) with its threshold: value <comparison>
 * threshold. Rules on other metrics ('event', columns that are not one of
 * the six below) and rules without a threshold never match a health row.
 *
 * alert_rules_load() needs a connection; the rest is pure and thread-safe.
 */
#ifndef LJ_COMMON_ALERTRULE_H
#define LJ_COMMON_ALERTRULE_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "record.h"

/* The metrics rules may name: REC_HEART_RATE .. REC_STRESS. */
#define ALERT_METRICS (REC_STRESS + 1)

typedef enum alert_cmp { ALERT_GT, ALERT_LT, ALERT_GE, ALERT_LE, ALERT_EQ } alert_cmp;

typedef struct alert_rule {
    int64_t id;
    rec_field metric;
    alert_cmp cmp;
    double threshold;
    int rank;               /* 3 critical, 2 major, 1 minor */
    char level[17];
} alert_rule;

/* Rules sorted by metric, then most severe first, then id. */
typedef struct alert_rules {
    alert_rule *v;
    size_t n;
} alert_rules;

/* Adds one rule from its columns (as t_alert_rule spells them); a rule that
 * can never match a health row is left out. 0 or LJ_ENOMEM. Call
 * alert_rules_sort() after the last one. */
int alert_rules_add(alert_rules *rs, int64_t id, const char *metric, const char *comparison,
                    double threshold, const char *level);
void alert_rules_sort(alert_rules *rs);

/* Replaces 'rs' by the enabled rules of t_alert_rule, read on 'pg' (in the
 * caller's transaction, so a batch sees one set of rules). 0, or an error
 * as pg_exec(). */
int alert_rules_load(PGconn *pg, alert_rules *rs);

void alert_rules_cleanup(alert_rules *rs);

/* The value of metric 'f' of 'r' as PostgreSQL stores it. */
double alert_stored_value(const rec_health *r, rec_field f);

/* The rule that raises the alert of 'r' for metric 'f', or NULL. */
const alert_rule *alert_rules_match(const alert_rules *rs, const rec_health *r, rec_field f);

#endif
