/* The consumer's adaptive XREADGROUP COUNT (consumer/batchsize.h): grows
 * under a backlog, shrinks when the stream drains or commits get slow, and
 * never leaves [min, max]. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "batchsize.h"

#define FAST_MS 5.0

static void test_starts_small_and_doubles_while_reads_come_back_full(void **state)
{
    batchsize z;

    (void)state;
    batchsize_init(&z, 10, 500, 200, 1);
    assert_int_equal(z.count, 10);
    assert_int_equal(batchsize_update(&z, 10, -1, FAST_MS), 20);
    assert_int_equal(batchsize_update(&z, 20, -1, FAST_MS), 40);
    assert_int_equal(batchsize_update(&z, 40, -1, FAST_MS), 80);
    assert_int_equal(batchsize_update(&z, 80, -1, FAST_MS), 160);
    assert_int_equal(batchsize_update(&z, 160, -1, FAST_MS), 320);
    assert_int_equal(batchsize_update(&z, 320, -1, FAST_MS), 500);     /* the ceiling */
    assert_int_equal(batchsize_update(&z, 500, -1, FAST_MS), 500);
}

static void test_a_known_lag_jumps_a_full_read_up_to_it(void **state)
{
    batchsize z;

    (void)state;
    batchsize_init(&z, 10, 500, 200, 1);
    assert_int_equal(batchsize_update(&z, 10, 300, FAST_MS), 300);
    assert_int_equal(batchsize_update(&z, 300, 100000, FAST_MS), 500);
    /* a lag read before the drain does not keep a short read's COUNT up */
    assert_int_equal(batchsize_update(&z, 7, 100000, FAST_MS), 14);
}

static void test_short_and_empty_reads_shrink_it(void **state)
{
    batchsize z;

    (void)state;
    batchsize_init(&z, 10, 500, 200, 1);
    z.count = 500;
    assert_int_equal(batchsize_update(&z, 120, -1, FAST_MS), 240);
    assert_int_equal(batchsize_update(&z, 3, -1, FAST_MS), 10);       /* not below min */
    z.count = 400;
    assert_int_equal(batchsize_update(&z, 0, -1, 0), 10);
}

static void test_slow_commits_cut_it_to_what_fits_the_target(void **state)
{
    batchsize z;

    (void)state;
    batchsize_init(&z, 10, 1000, 200, 1);
    z.count = 400;
    /* full, but 400 entries took 800 ms: 100 fit in 200 ms */
    assert_int_equal(batchsize_update(&z, 400, 5000, 800.0), 100);
    assert_int_equal(batchsize_update(&z, 100, 5000, 100.0), 1000);      /* lag, clamped */
    z.count = 100;
    assert_int_equal(batchsize_update(&z, 100, -1, 190.0), 200);        /* under target */
    assert_int_equal(batchsize_update(&z, 200, -1, 100000.0), 10);      /* never below min */
    batchsize_init(&z, 10, 1000, 0, 1);                                 /* target off */
    z.count = 400;
    assert_int_equal(batchsize_update(&z, 400, -1, 100000.0), 800);
}

static void test_fixed_stays_at_max(void **state)
{
    batchsize z;

    (void)state;
    batchsize_init(&z, 10, 200, 200, 0);
    assert_int_equal(z.count, 200);
    assert_int_equal(batchsize_update(&z, 0, -1, 0), 200);
    assert_int_equal(batchsize_update(&z, 3, -1, FAST_MS), 200);
    assert_int_equal(batchsize_update(&z, 200, 9999, 100000.0), 200);
}

static void test_bounds_are_sane_whatever_the_settings(void **state)
{
    batchsize z;

    (void)state;
    batchsize_init(&z, 50, 20, 200, 1);      /* min above max: max */
    assert_int_equal(z.count, 20);
    assert_int_equal(batchsize_update(&z, 20, 1000, FAST_MS), 20);
    assert_int_equal(batchsize_update(&z, 0, -1, 0), 20);
    batchsize_init(&z, 0, 0, 200, 1);        /* nonsense: one entry a read */
    assert_int_equal(batchsize_update(&z, 1, -1, FAST_MS), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starts_small_and_doubles_while_reads_come_back_full),
        cmocka_unit_test(test_a_known_lag_jumps_a_full_read_up_to_it),
        cmocka_unit_test(test_short_and_empty_reads_shrink_it),
        cmocka_unit_test(test_slow_commits_cut_it_to_what_fits_the_target),
        cmocka_unit_test(test_fixed_stays_at_max),
        cmocka_unit_test(test_bounds_are_sane_whatever_the_settings),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
