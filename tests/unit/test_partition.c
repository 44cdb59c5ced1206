/* The upload paths' partition window (partition.h): which months they may
 * ask to be created. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "partition.h"

/* 2026-12-15T00:00:00Z; its month index is (2026 - 2000) * 12 + 11. */
#define DEC_2026_MS 1797292800000LL
#define DEC_2026 (26 * 12 + 11)

static void test_month_index(void **state)
{
    (void)state;
    assert_int_equal(part_month_index(DEC_2026_MS), DEC_2026);
    assert_int_equal(part_month_index(946684800000LL), 0);          /* 2000-01-01 */
    assert_int_equal(part_month_index(946684800000LL - 1), -1);     /* 1999-12-31 */
    assert_int_equal(part_month_index(4102444800000LL), -1);        /* 2100-01-01 */
}

static void test_default_window_is_24_back_3_ahead(void **state)
{
    int first;
    int last;

    (void)state;
    part_window_set(PART_WINDOW_BACK, PART_NEW_MAX);
    part_window_range(DEC_2026_MS, &first, &last);
    assert_int_equal(first, DEC_2026 - 24);
    assert_int_equal(last, DEC_2026 + 3);
}

static void test_window_is_clipped_to_the_range(void **state)
{
    int first;
    int last;

    (void)state;
    part_window_set(1200, 1);
    part_window_range(DEC_2026_MS, &first, &last);
    assert_int_equal(first, 0);
    assert_int_equal(last, DEC_2026 + 3);
    part_window_set(0, 1);
    part_window_range(4102444800000LL - 86400000LL, &first, &last);  /* 2099-12-31 */
    assert_int_equal(first, PART_MONTHS - 1);
    assert_int_equal(last, PART_MONTHS - 1);
    part_window_set(-5, 0);     /* out of range: 0 back, at least one month */
    part_window_range(DEC_2026_MS, &first, &last);
    assert_int_equal(first, DEC_2026);
}

static void test_any_month_for_the_import(void **state)
{
    int first;
    int last;

    (void)state;
    part_window_any();
    part_window_range(DEC_2026_MS, &first, &last);
    assert_int_equal(first, 0);
    assert_int_equal(last, PART_MONTHS - 1);
    part_window_set(PART_WINDOW_BACK, PART_NEW_MAX);   /* set again: bounded again */
    part_window_range(DEC_2026_MS, &first, &last);
    assert_int_equal(first, DEC_2026 - 24);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_month_index),
        cmocka_unit_test(test_default_window_is_24_back_3_ahead),
        cmocka_unit_test(test_window_is_clipped_to_the_range),
        cmocka_unit_test(test_any_month_for_the_import),
    };

    return cmocka_run_group_tests_name("partition", tests, NULL, NULL);
}
