/* Flow-control logic with time passed in: the token buckets (GCRA) and the
 * circuit breaker's state machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "breaker.h"
#include "ratelimit.h"

#define S 1000000000ull
#define MS 1000000ull

static int take(ratelimit *rl, const char *key, uint64_t now, uint64_t *retry)
{
    return ratelimit_take(rl, key, strlen(key), now, retry);
}

static void test_burst_then_rate(void **state)
{
    ratelimit *rl = ratelimit_new(5, 20, 1024);
    uint64_t t = 100 * S;
    uint64_t retry = 0;
    int i;

    (void)state;
    assert_non_null(rl);
    for (i = 0; i < 20; i++)
        assert_true(take(rl, "W1", t, &retry));
    assert_false(take(rl, "W1", t, &retry));
    assert_int_equal(retry, 200 * MS);          /* one token per 1/5 s */
    assert_false(take(rl, "W1", t + 199 * MS, &retry));
    assert_int_equal(retry, 1 * MS);
    assert_true(take(rl, "W1", t + 200 * MS, &retry));
    assert_false(take(rl, "W1", t + 200 * MS, &retry));
    /* another key has its own bucket */
    assert_true(take(rl, "W2", t, &retry));
    /* idle for 4 s: the bucket is full again, no more */
    for (i = 0; i < 20; i++)
        assert_true(take(rl, "W1", t + 5 * S, &retry));
    assert_false(take(rl, "W1", t + 5 * S, &retry));
    ratelimit_free(rl);
}

static void test_rate_over_a_long_run(void **state)
{
    ratelimit *rl = ratelimit_new(5, 20, 64);
    uint64_t retry;
    int taken = 0;
    uint64_t t;

    (void)state;
    /* 50 attempts a second for 10 s: the burst plus 5 a second */
    for (t = 0; t < 10 * S; t += 20 * MS)
        taken += take(rl, "flood", S + t, &retry);
    assert_in_range(taken, 20 + 49, 20 + 50);
    ratelimit_free(rl);
}

/* Fills a 1024-slot table with 'n' keys arriving 'gap' ns apart. */
static void fill(ratelimit *rl, int n, uint64_t gap, ratelimit_usage *u)
{
    uint64_t retry;
    char key[32];
    int i;

    for (i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "dev-%d", i);
        assert_true(take(rl, key, S + (uint64_t)i * gap, &retry));
    }
    ratelimit_usage_get(rl, u);
}

static void test_table_is_bounded_and_evicts_idle_keys_first(void **state)
{
    ratelimit *rl = ratelimit_new(5, 2, 1000);
    ratelimit_usage u;

    (void)state;
    /* 100,000 keys, one every ms: each is idle (bucket full) 200 ms after
     * its upload, so about 200 are busy at a time and almost only idle keys
     * are evicted (a busy one only when all 8 slots near its home are busy) */
    fill(rl, 100000, 1 * MS, &u);
    assert_int_equal(u.slots, 1024);
    assert_true(u.tracked <= u.slots && u.tracked > u.slots / 2);
    assert_true(u.evicted_busy <= 10);
    ratelimit_free(rl);

    /* the same keys at once: more busy keys than slots, some evicted busy */
    rl = ratelimit_new(5, 2, 1000);
    fill(rl, 100000, 0, &u);
    assert_true(u.tracked <= u.slots);
    assert_true(u.evicted_busy > 90000);
    ratelimit_free(rl);
}

static void test_breaker_opens_probes_and_closes(void **state)
{
    breaker *b = breaker_new("test", 3, 100, 400);
    breaker_snapshot s;
    uint64_t retry = 0;
    uint64_t t = 10 * S;

    (void)state;
    assert_non_null(b);
    /* failures that are not consecutive do not open it */
    assert_true(breaker_allow(b, t, &retry));
    breaker_report(b, 0, t);
    breaker_report(b, 0, t);
    breaker_report(b, 1, t);
    breaker_report(b, 0, t);
    breaker_report(b, 0, t);
    breaker_snapshot_get(b, t, &s);
    assert_int_equal(s.state, BREAKER_CLOSED);
    breaker_report(b, 0, t);                    /* third in a row */
    breaker_snapshot_get(b, t, &s);
    assert_int_equal(s.state, BREAKER_OPEN);
    assert_int_equal(s.opens, 1);
    assert_false(breaker_allow(b, t + 40 * MS, &retry));
    assert_int_equal(retry, 60);
    /* a late success from before the opening changes nothing */
    breaker_report(b, 1, t + 50 * MS);
    assert_false(breaker_allow(b, t + 50 * MS, &retry));
    /* cool-down over: one probe, the others still refused */
    assert_true(breaker_allow(b, t + 100 * MS, &retry));
    assert_false(breaker_allow(b, t + 101 * MS, &retry));
    breaker_snapshot_get(b, t + 101 * MS, &s);
    assert_int_equal(s.state, BREAKER_HALF_OPEN);
    /* the probe fails: open again for twice as long */
    breaker_report(b, 0, t + 110 * MS);
    assert_false(breaker_allow(b, t + 300 * MS, &retry));
    assert_true(breaker_allow(b, t + 310 * MS, &retry));
    breaker_report(b, 0, t + 310 * MS);         /* 400 ms: the maximum */
    assert_false(breaker_allow(b, t + 700 * MS, &retry));
    assert_true(breaker_allow(b, t + 710 * MS, &retry));
    breaker_report(b, 0, t + 710 * MS);         /* still 400 ms, not 800 */
    assert_true(breaker_allow(b, t + 1110 * MS, &retry));
    breaker_report(b, 1, t + 1120 * MS);        /* the probe succeeds */
    breaker_snapshot_get(b, t + 1120 * MS, &s);
    assert_int_equal(s.state, BREAKER_CLOSED);
    assert_int_equal(s.opens, 4);
    assert_true(breaker_allow(b, t + 1120 * MS, &retry));
    /* closed again with the base cool-down */
    breaker_report(b, 0, t + 2 * S);
    breaker_report(b, 0, t + 2 * S);
    breaker_report(b, 0, t + 2 * S);
    assert_false(breaker_allow(b, t + 2 * S + 99 * MS, &retry));
    assert_true(breaker_allow(b, t + 2 * S + 100 * MS, &retry));
    breaker_free(b);
}

static void test_breaker_with_threshold_0_never_opens(void **state)
{
    breaker *b = breaker_new("off", 0, 100, 100);
    uint64_t retry;
    int i;

    (void)state;
    for (i = 0; i < 1000; i++)
        breaker_report(b, 0, S);
    assert_true(breaker_allow(b, S, &retry));
    breaker_free(b);
}

static void test_an_abstaining_probe_lets_another_probe_at_once(void **state)
{
    breaker *b = breaker_new("abstain", 1, 100, 1000);
    breaker_snapshot s;
    uint64_t retry;

    (void)state;
    breaker_abstain(b, S);                      /* closed: nothing changes */
    breaker_report(b, 0, S);
    assert_true(breaker_allow(b, S + 100 * MS, &retry));    /* the probe */
    assert_false(breaker_allow(b, S + 101 * MS, &retry));
    breaker_abstain(b, S + 102 * MS);           /* it never reached Redis */
    breaker_snapshot_get(b, S + 102 * MS, &s);
    assert_int_equal(s.state, BREAKER_HALF_OPEN);
    assert_int_equal(s.opens, 1);
    assert_true(breaker_allow(b, S + 103 * MS, &retry));    /* the next probe */
    assert_false(breaker_allow(b, S + 104 * MS, &retry));
    breaker_report(b, 1, S + 105 * MS);
    breaker_snapshot_get(b, S + 105 * MS, &s);
    assert_int_equal(s.state, BREAKER_CLOSED);
    breaker_free(b);
}

static void test_lost_probe_is_replaced_after_a_cool_down(void **state)
{
    breaker *b = breaker_new("lost", 1, 100, 1000);
    uint64_t retry;

    (void)state;
    breaker_report(b, 0, S);
    assert_true(breaker_allow(b, S + 100 * MS, &retry));    /* probe, never reported */
    assert_false(breaker_allow(b, S + 150 * MS, &retry));
    assert_true(breaker_allow(b, S + 200 * MS, &retry));
    breaker_free(b);
}

static void test_a_reset_breaker_is_as_new(void **state)
{
    breaker *b = breaker_new("redis 10.0.0.1:6379", 1, 100, 400);
    breaker_snapshot s;
    uint64_t retry = 0;
    uint64_t t = 10 * S;

    (void)state;
    assert_non_null(b);
    assert_true(breaker_allow(b, t, &retry));
    breaker_report(b, 0, t);                    /* open */
    assert_false(breaker_allow(b, t, &retry));
    breaker_reset(b, "redis 10.0.0.2:6379");    /* given to another master */
    breaker_snapshot_get(b, t, &s);
    assert_int_equal(s.state, BREAKER_CLOSED);
    assert_int_equal(s.consecutive_failures, 0);
    assert_int_equal(s.opens, 0);
    assert_int_equal(s.refused, 0);
    assert_true(breaker_allow(b, t, &retry));
    breaker_report(b, 0, t);                    /* the first cool-down again */
    assert_false(breaker_allow(b, t + 99 * MS, &retry));
    assert_true(breaker_allow(b, t + 100 * MS, &retry));
    breaker_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_rate),
        cmocka_unit_test(test_rate_over_a_long_run),
        cmocka_unit_test(test_table_is_bounded_and_evicts_idle_keys_first),
        cmocka_unit_test(test_breaker_opens_probes_and_closes),
        cmocka_unit_test(test_breaker_with_threshold_0_never_opens),
        cmocka_unit_test(test_lost_probe_is_replaced_after_a_cool_down),
        cmocka_unit_test(test_an_abstaining_probe_lets_another_probe_at_once),
        cmocka_unit_test(test_a_reset_breaker_is_as_new),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
