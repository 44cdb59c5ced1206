/* The byte buffer: integer formatting and JSON string escaping. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"

static void test_int_matches_printf(void **state)
{
    const long long values[] = {0, 7, -7, 10, 1700000000123LL, LLONG_MAX, LLONG_MIN};
    char want[32];
    lj_buf b;
    size_t i;

    (void)state;
    lj_buf_init(&b);
    for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        lj_buf_reset(&b);
        assert_int_equal(lj_buf_int(&b, values[i]), 0);
        snprintf(want, sizeof(want), "%lld", values[i]);
        assert_string_equal(b.data, want);
    }
    lj_buf_cleanup(&b);
}

static void test_json_string_escapes(void **state)
{
    lj_buf b;

    (void)state;
    lj_buf_init(&b);
    assert_int_equal(lj_buf_json_str(&b, "a\"b\\c\nd\te\x01\xe7\x9d\xa1", 13), 0);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\nd\\te\\u0001\xe7\x9d\xa1\"");
    lj_buf_cleanup(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int_matches_printf),
        cmocka_unit_test(test_json_string_escapes),
    };

    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
