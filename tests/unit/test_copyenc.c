/* COPY text-format encoding: escaping and whole rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "copyenc.h"

static void assert_escaped(const char *in, const char *want)
{
    lj_buf b;

    lj_buf_init(&b);
    assert_int_equal(copyenc_text(&b, in, strlen(in)), 0);
    assert_string_equal(b.data, want);
    lj_buf_cleanup(&b);
}

static void test_text_escapes_copy_specials(void **state)
{
    (void)state;
    assert_escaped("plain", "plain");
    assert_escaped("a\tb", "a\\tb");
    assert_escaped("line1\nline2", "line1\\nline2");
    assert_escaped("cr\rx", "cr\\rx");
    assert_escaped("back\\slash", "back\\\\slash");
    assert_escaped("\\N", "\\\\N");     /* must not read back as NULL */
    assert_escaped("\t\n\\", "\\t\\n\\\\");
}

static void test_text_keeps_quotes_and_utf8(void **state)
{
    (void)state;
    assert_escaped("it's \"deep\"", "it's \"deep\"");
    assert_escaped("睡眠质量良好", "睡眠质量良好");
    assert_escaped("'; DROP TABLE t_user_health_data; --",
                   "'; DROP TABLE t_user_health_data; --");
}

static void test_row_with_all_fields(void **state)
{
    rec_health r;
    copyenc_owner owner = {7, 8, 9};
    copyenc_meta meta = {"stream_v2", "1700000000000-0", "B1"};
    lj_buf b;
    int f;

    (void)state;
    memset(&r, 0, sizeof(r));
    strcpy(r.device_sn, "SN\t1");
    r.ts_ms = 1700000000123;
    for (f = 0; f < REC_NUM_FIELDS; f++)
        r.present |= 1u << f;
    r.num[REC_HEART_RATE] = 72;
    r.num[REC_BLOOD_OXYGEN] = 98;
    r.num[REC_TEMPERATURE] = 36.6;
    r.num[REC_PRESSURE_HIGH] = 120;
    r.num[REC_PRESSURE_LOW] = 80;
    r.num[REC_STRESS] = 30;
    r.num[REC_STEP] = 2147483647;
    r.num[REC_DISTANCE] = 0;
    r.num[REC_CALORIE] = 5;
    r.num[REC_LATITUDE] = -90;
    r.num[REC_LONGITUDE] = 114.05;
    r.num[REC_ALTITUDE] = -12.5;
    r.sleep = (char *)"deep\nsleep";
    strcpy(r.source_method, "wifi");
    lj_buf_init(&b);
    assert_int_equal(copyenc_health_row(&b, &r, &owner, &meta), 0);
    assert_string_equal(b.data,
                        "SN\\t1\t2023-11-14 22:13:20.123+00\t7\t8\t9\t72\t98\t36.6\t120\t80\t30\t"
                        "2147483647\t0\t5\t-90\t114.05\t-12.5\tdeep\\nsleep\twifi\tstream_v2\t"
                        "1700000000000-0\tB1\n");
    lj_buf_cleanup(&b);
}

static void test_row_absent_fields_are_null(void **state)
{
    rec_health r;
    copyenc_meta meta = {"optimized", NULL, ""};
    lj_buf b;

    (void)state;
    memset(&r, 0, sizeof(r));
    strcpy(r.device_sn, "A");
    r.ts_ms = 946684800000;
    r.present = 1u << REC_HEART_RATE;
    r.num[REC_HEART_RATE] = 0;
    strcpy(r.source_method, "api");
    lj_buf_init(&b);
    assert_int_equal(copyenc_health_row(&b, &r, NULL, &meta), 0);
    assert_string_equal(b.data, "A\t2000-01-01 00:00:00.000+00\t\\N\t\\N\t\\N\t0\t\\N\t\\N\t"
                                "\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\tapi\t"
                                "optimized\t\\N\t\\N\n");
    lj_buf_cleanup(&b);
}

static void assert_like_printf(double v)
{
    char want[64];
    char got[COPYENC_DOUBLE_MAX];
    size_t len;

    snprintf(want, sizeof(want), "%.15g", v);
    len = copyenc_double(v, got);
    if (strcmp(got, want) != 0 || len != strlen(want))
        fail_msg("copyenc_double(%.17g) = \"%s\", printf: \"%s\"", v, got, want);
}

static void test_double_is_printf_g15(void **state)
{
    static const double edges[] = {0.0, -0.0, 0.1 + 0.2, 1e-5, 0.001, 0.0005, 999999999.999,
                                   1e9, -1e9, 123456789.123, 37.3 + 2e-14, 1.0 / 3, 1e300,
                                   -2.5, 36.6, 0.5, 100.0, 22.543210, -0.001};
    uint64_t x = 0x9E3779B97F4A7C15ull;
    size_t i;
    long n;

    (void)state;
    for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
        assert_like_printf(edges[i]);
    for (n = -200000; n <= 200000; n += 7) {       /* readings: 0-3 fractional digits */
        assert_like_printf((double)n);
        assert_like_printf((double)n / 10);
        assert_like_printf((double)n / 100);
        assert_like_printf((double)n / 1000);
        assert_like_printf(n * 0.001);              /* not the nearest double of n/1000 */
    }
    for (i = 0; i < 200000; i++) {                  /* any double */
        double d;

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(&d, &x, sizeof(d));
        assert_like_printf(d);
        assert_like_printf((double)(int64_t)(x >> 20) / 4096.0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_escapes_copy_specials),
        cmocka_unit_test(test_text_keeps_quotes_and_utf8),
        cmocka_unit_test(test_row_with_all_fields),
        cmocka_unit_test(test_row_absent_fields_are_null),
        cmocka_unit_test(test_double_is_printf_g15),
    };

    return cmocka_run_group_tests_name("copyenc", tests, NULL, NULL);
}
