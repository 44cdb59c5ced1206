/* What an XADD followed by WAIT means for the device (xverdict.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "xverdict.h"

static redisReply id(void)
{
    redisReply r = {.type = REDIS_REPLY_STRING, .str = "1-0", .len = 3};
    return r;
}

static redisReply count(long long n)
{
    redisReply r = {.type = REDIS_REPLY_INTEGER, .integer = n};
    return r;
}

static void test_without_wait_the_xadd_decides(void **state)
{
    redisReply ok = id();
    redisReply err = {.type = REDIS_REPLY_ERROR, .str = "OOM", .len = 3};

    (void)state;
    assert_int_equal(xverdict_of(&ok, NULL, 0), XV_ADDED);
    assert_int_equal(xverdict_of(&err, NULL, 0), XV_REFUSED);
    assert_int_equal(xverdict_of(NULL, NULL, 0), XV_LOST);
}

static void test_wait_must_count_enough_replicas(void **state)
{
    redisReply ok = id();
    redisReply zero = count(0), one = count(1), two = count(2);

    (void)state;
    assert_int_equal(xverdict_of(&ok, &one, 1), XV_ADDED);
    assert_int_equal(xverdict_of(&ok, &two, 1), XV_ADDED);
    assert_int_equal(xverdict_of(&ok, &zero, 1), XV_UNREPLICATED);
    assert_int_equal(xverdict_of(&ok, &one, 2), XV_UNREPLICATED);
}

static void test_a_wait_without_a_count_confirms_nothing(void **state)
{
    redisReply ok = id();
    redisReply err = {.type = REDIS_REPLY_ERROR, .str = "ERR", .len = 3};
    redisReply neg = count(-1);

    (void)state;
    assert_int_equal(xverdict_of(&ok, NULL, 1), XV_UNREPLICATED);      /* lost */
    assert_int_equal(xverdict_of(&ok, &err, 1), XV_UNREPLICATED);
    assert_int_equal(xverdict_of(&ok, &neg, 1), XV_UNREPLICATED);
}

static void test_a_failed_xadd_is_not_saved_by_wait(void **state)
{
    redisReply err = {.type = REDIS_REPLY_ERROR, .str = "MOVED", .len = 5};
    redisReply one = count(1);

    (void)state;
    assert_int_equal(xverdict_of(&err, &one, 1), XV_REFUSED);
    assert_int_equal(xverdict_of(NULL, &one, 1), XV_LOST);
}

static void test_wait_answers_before_the_link_gives_up(void **state)
{
    (void)state;
    assert_int_equal(xverdict_wait_ms(2000), 1000);
    assert_int_equal(xverdict_wait_ms(1), 1);     /* never WAIT n 0 (forever) */
    assert_int_equal(xverdict_wait_ms(0), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_without_wait_the_xadd_decides),
        cmocka_unit_test(test_wait_must_count_enough_replicas),
        cmocka_unit_test(test_a_wait_without_a_count_confirms_nothing),
        cmocka_unit_test(test_a_failed_xadd_is_not_saved_by_wait),
        cmocka_unit_test(test_wait_answers_before_the_link_gives_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
