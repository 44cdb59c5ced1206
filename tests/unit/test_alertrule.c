/* Health alert rules matched in the process (alertrule.h): which rule
 * raises the alert of a row, as the SQL it replaced chose it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "alertrule.h"

static rec_health reading(rec_field f, double v)
{
    rec_health r;

    memset(&r, 0, sizeof(r));
    strcpy(r.device_sn, "A1");
    r.num[f] = v;
    r.present = 1u << f;
    return r;
}

static void add(alert_rules *rs, int64_t id, const char *metric, const char *cmp, double t,
                const char *level)
{
    assert_int_equal(alert_rules_add(rs, id, metric, cmp, t, level), 0);
}

static int64_t matched(const alert_rules *rs, rec_field f, double v)
{
    rec_health r = reading(f, v);
    const alert_rule *rule = alert_rules_match(rs, &r, f);

    return rule ? rule->id : 0;
}

static void test_most_severe_rule_wins(void **state)
{
    alert_rules rs = {NULL, 0};

    (void)state;
    add(&rs, 1, "heart_rate", ">", 120, "minor");
    add(&rs, 2, "heart_rate", ">", 140, "major");
    add(&rs, 3, "heart_rate", ">", 180, "critical");
    alert_rules_sort(&rs);
    assert_int_equal(matched(&rs, REC_HEART_RATE, 100), 0);
    assert_int_equal(matched(&rs, REC_HEART_RATE, 130), 1);
    assert_int_equal(matched(&rs, REC_HEART_RATE, 150), 2);
    assert_int_equal(matched(&rs, REC_HEART_RATE, 200), 3);
    assert_string_equal(alert_rules_match(&rs, &(rec_health){.present = 1, .num = {200}},
                                          REC_HEART_RATE)->level,
                        "critical");
    alert_rules_cleanup(&rs);
    assert_null(rs.v);
}

static void test_tie_goes_to_lower_id(void **state)
{
    alert_rules rs = {NULL, 0};

    (void)state;
    add(&rs, 9, "blood_oxygen", "<", 90, "major");
    add(&rs, 4, "blood_oxygen", "<", 95, "major");
    add(&rs, 7, "blood_oxygen", "<", 85, "minor");
    alert_rules_sort(&rs);
    assert_int_equal(matched(&rs, REC_BLOOD_OXYGEN, 80), 4);
    assert_int_equal(matched(&rs, REC_BLOOD_OXYGEN, 92), 4);
    assert_int_equal(matched(&rs, REC_BLOOD_OXYGEN, 96), 0);
    alert_rules_cleanup(&rs);
}

static void test_each_comparison(void **state)
{
    static const struct {
        const char *op;
        int below, at, above;
    } want[] = {{">", 0, 0, 1}, {"<", 1, 0, 0}, {">=", 0, 1, 1}, {"<=", 1, 1, 0}, {"=", 0, 1, 0}};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        alert_rules rs = {NULL, 0};

        add(&rs, 5, "stress", want[i].op, 70, "minor");
        alert_rules_sort(&rs);
        assert_int_equal(matched(&rs, REC_STRESS, 69) == 5, want[i].below);
        assert_int_equal(matched(&rs, REC_STRESS, 70) == 5, want[i].at);
        assert_int_equal(matched(&rs, REC_STRESS, 71) == 5, want[i].above);
        alert_rules_cleanup(&rs);
    }
}

static void test_rules_that_cannot_match_are_left_out(void **state)
{
    alert_rules rs = {NULL, 0};

    (void)state;
    add(&rs, 1, "event", "=", 0, "critical");       /* events are matched elsewhere */
    add(&rs, 2, "step", ">", 10, "minor");           /* not an alert metric */
    add(&rs, 3, "no_such_column", ">", 1, "minor");
    add(&rs, 4, "heart_rate", "!=", 1, "minor");     /* no such comparison */
    assert_int_equal(rs.n, 0);
    add(&rs, 5, "pressure_high", ">", 140, "major");
    assert_int_equal(rs.n, 1);
    alert_rules_cleanup(&rs);
}

static void test_only_the_named_metric_and_only_when_present(void **state)
{
    alert_rules rs = {NULL, 0};
    rec_health r = reading(REC_PRESSURE_LOW, 30);

    (void)state;
    add(&rs, 1, "pressure_high", "<", 50, "major");
    add(&rs, 2, "pressure_low", "<", 50, "minor");
    alert_rules_sort(&rs);
    assert_null(alert_rules_match(&rs, &r, REC_PRESSURE_HIGH));    /* absent: 0 is not a value */
    assert_int_equal(alert_rules_match(&rs, &r, REC_PRESSURE_LOW)->id, 2);
    r.present = 0;
    assert_null(alert_rules_match(&rs, &r, REC_PRESSURE_LOW));
    alert_rules_cleanup(&rs);
}

static void test_doubles_compare_as_stored(void **state)
{
    alert_rules rs = {NULL, 0};
    double above = 37.3 + 2e-14;   /* more digits than the column keeps */

    (void)state;
    assert_true(above > 37.3);
    assert_true(alert_stored_value(&(rec_health){.num = {0, 0, above}}, REC_TEMPERATURE) == 37.3);
    add(&rs, 8, "temperature", ">", 37.3, "minor");
    add(&rs, 9, "temperature", "=", 37.3, "minor");
    alert_rules_sort(&rs);
    assert_int_equal(matched(&rs, REC_TEMPERATURE, above), 9);     /* stored as 37.3 */
    assert_int_equal(matched(&rs, REC_TEMPERATURE, 37.4), 8);
    assert_true(alert_stored_value(&(rec_health){.num = {77}}, REC_HEART_RATE) == 77);
    alert_rules_cleanup(&rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_most_severe_rule_wins),
        cmocka_unit_test(test_tie_goes_to_lower_id),
        cmocka_unit_test(test_each_comparison),
        cmocka_unit_test(test_rules_that_cannot_match_are_left_out),
        cmocka_unit_test(test_only_the_named_metric_and_only_when_present),
        cmocka_unit_test(test_doubles_compare_as_stored),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
