/* The consumer's read phase (session.h): one state, one setter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "session.h"

static void test_pending_then_new(void **state)
{
    session s;

    (void)state;
    memset(&s, 0, sizeof(s));
    session_set_read(&s, SESSION_READ_PENDING, "0");
    assert_int_equal(s.read.phase, SESSION_READ_PENDING);
    assert_string_equal(session_read_id(&s), "0");
    session_set_read(&s, SESSION_READ_PENDING, "1700000000000-3");
    assert_string_equal(session_read_id(&s), "1700000000000-3");
    session_set_read(&s, SESSION_READ_NEW, "1700000000000-3");
    assert_int_equal(s.read.phase, SESSION_READ_NEW);
    assert_string_equal(session_read_id(&s), ">");
    /* back to the pending entries: all of them when no ID is given */
    session_set_read(&s, SESSION_READ_PENDING, NULL);
    assert_int_equal(s.read.phase, SESSION_READ_PENDING);
    assert_string_equal(session_read_id(&s), "0");
}

static void test_clock_is_monotonic(void **state)
{
    int64_t a = session_clock_ms();

    (void)state;
    assert_true(a > 0);
    assert_true(session_clock_ms() >= a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pending_then_new),
        cmocka_unit_test(test_clock_is_monotonic),
    };

    return cmocka_run_group_tests_name("session", tests, NULL, NULL);
}
