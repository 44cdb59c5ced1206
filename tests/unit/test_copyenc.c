/* COPY binary-format encoding: fields, whole rows, stored doubles. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "copyenc.h"

/* Reads the COPY binary row at '*p': its field count, then per field the
 * length (-1: NULL) and where its bytes start. */
typedef struct field {
    int32_t len;
    const unsigned char *at;
} field;

static uint64_t be(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    int i;

    for (i = 0; i < bytes; i++)
        v = v << 8 | p[i];
    return v;
}

static const unsigned char *read_row(const unsigned char *p, field *f, int *n)
{
    int i;

    *n = (int16_t)be(p, 2);
    p += 2;
    for (i = 0; i < *n; i++) {
        f[i].len = (int32_t)be(p, 4);
        f[i].at = p + 4;
        p += 4 + (f[i].len > 0 ? f[i].len : 0);
    }
    return p;
}

static void assert_text(const field *f, const char *want)
{
    assert_int_equal(f->len, strlen(want));
    assert_memory_equal(f->at, want, strlen(want));
}

static void assert_int_field(const field *f, int bytes, int64_t want)
{
    assert_int_equal(f->len, bytes);
    assert_int_equal(bytes == 2   ? (int64_t)(int16_t)be(f->at, 2)
                     : bytes == 4 ? (int64_t)(int32_t)be(f->at, 4)
                                  : (int64_t)be(f->at, 8),
                     want);
}

static void assert_double_field(const field *f, double want)
{
    uint64_t bits = be(f->at, 8);
    double got;

    assert_int_equal(f->len, 8);
    memcpy(&got, &bits, sizeof(got));
    assert_true(got == want);
}

static rec_health full_row(void)
{
    rec_health r;
    int f;

    memset(&r, 0, sizeof(r));
    strcpy(r.device_sn, "SN\t1");
    r.ts_ms = 1700000000123;
    r.ts_us = 456;
    for (f = 0; f < REC_NUM_FIELDS; f++)
        r.present |= 1u << f;
    r.num[REC_HEART_RATE] = 72;
    r.num[REC_BLOOD_OXYGEN] = 98;
    r.num[REC_TEMPERATURE] = 36.6;
    r.num[REC_PRESSURE_HIGH] = 120;
    r.num[REC_PRESSURE_LOW] = 80;
    r.num[REC_STRESS] = -30;
    r.num[REC_STEP] = 2147483647;
    r.num[REC_DISTANCE] = 0;
    r.num[REC_CALORIE] = 5;
    r.num[REC_LATITUDE] = -90;
    r.num[REC_LONGITUDE] = 114.054321;
    r.num[REC_ALTITUDE] = 1.0 / 3;
    r.sleep = (char *)"deep\nsleep \\ 睡眠";
    strcpy(r.source_method, "wifi");
    return r;
}

static void test_row_with_all_fields(void **state)
{
    rec_health r = full_row();
    copyenc_owner owner = {7, 8, 9};
    copyenc_meta meta = {"stream_v2", "1700000000000-0", 5, "B1"};
    const unsigned char *p;
    field f[32];
    lj_buf b;
    int n;

    (void)state;
    lj_buf_init(&b);
    assert_int_equal(copyenc_health_row(&b, &r, &owner, &meta), 0);
    p = read_row((const unsigned char *)b.data, f, &n);
    assert_int_equal(n, 23);
    assert_int_equal(p - (const unsigned char *)b.data, b.len);
    assert_text(&f[0], "SN\t1");                    /* no escaping in binary */
    /* 2023-11-14 22:13:20.123456 UTC, in microseconds since 2000-01-01 */
    assert_int_field(&f[1], 8, (1700000000123LL - 946684800000LL) * 1000 + 456);
    assert_int_field(&f[2], 8, 7);
    assert_int_field(&f[3], 8, 8);
    assert_int_field(&f[4], 8, 9);
    assert_int_field(&f[5], 4, 72);
    assert_int_field(&f[6], 4, 98);
    assert_double_field(&f[7], 36.6);
    assert_int_field(&f[8], 4, 120);
    assert_int_field(&f[9], 4, 80);
    assert_int_field(&f[10], 4, -30);
    assert_int_field(&f[11], 4, 2147483647);
    assert_int_field(&f[12], 4, 0);
    assert_int_field(&f[13], 4, 5);
    assert_double_field(&f[14], -90);
    assert_double_field(&f[15], 114.054321);
    assert_double_field(&f[16], strtod("0.333333333333333", NULL));    /* 15 digits kept */
    assert_text(&f[17], "deep\nsleep \\ 睡眠");
    assert_text(&f[18], "wifi");
    assert_text(&f[19], "stream_v2");
    assert_text(&f[20], "1700000000000-0");
    assert_text(&f[21], "B1");
    assert_int_field(&f[22], 2, 5);                 /* stream_shard, smallint */
    lj_buf_cleanup(&b);
}

static void test_row_absent_fields_are_null(void **state)
{
    rec_health r;
    copyenc_meta meta = {"optimized", NULL, -1, ""};
    field f[32];
    lj_buf b;
    int n;
    int i;

    (void)state;
    memset(&r, 0, sizeof(r));
    strcpy(r.device_sn, "A");
    r.ts_ms = 946684800000;
    r.present = 1u << REC_HEART_RATE;
    strcpy(r.source_method, "api");
    lj_buf_init(&b);
    assert_int_equal(copyenc_health_row(&b, &r, NULL, &meta), 0);
    read_row((const unsigned char *)b.data, f, &n);
    assert_int_equal(n, 23);
    assert_int_field(&f[1], 8, 0);                  /* the epoch of 2000 itself */
    assert_int_field(&f[5], 4, 0);                  /* present: 0 is a value */
    for (i = 2; i < 23; i++)
        if (i != 5 && i != 18 && i != 19)
            assert_int_equal(f[i].len, -1);
    assert_text(&f[18], "api");
    assert_text(&f[19], "optimized");
    lj_buf_cleanup(&b);
}

static void test_integer_outside_int4_is_refused_by_the_server(void **state)
{
    rec_health r = full_row();
    copyenc_meta meta = {"stream_v2", NULL, 0, NULL};
    field f[32];
    lj_buf b;
    int n;

    (void)state;
    r.num[REC_STEP] = 2147483648.0;
    r.num[REC_CALORIE] = -2147483648.0;
    lj_buf_init(&b);
    assert_int_equal(copyenc_health_row(&b, &r, NULL, &meta), 0);
    read_row((const unsigned char *)b.data, f, &n);
    assert_int_equal(f[11].len, 8);                 /* not an int4: 22P03 */
    assert_int_field(&f[13], 4, -2147483648LL);
    lj_buf_cleanup(&b);
}

static void test_stream_header_and_trailer(void **state)
{
    lj_buf b;

    (void)state;
    lj_buf_init(&b);
    assert_int_equal(copyenc_begin(&b), 0);
    assert_int_equal(b.len, 19);
    assert_memory_equal(b.data, "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0", 19);
    assert_int_equal(copyenc_end(&b), 0);
    assert_int_equal(b.len, 21);
    assert_memory_equal(b.data + 19, "\xff\xff", 2);
    lj_buf_cleanup(&b);
}

static void assert_stored_like_text(double v)
{
    char text[64];
    double want;
    double got = copyenc_stored_double(v);

    snprintf(text, sizeof(text), "%.15g", v);
    want = strtod(text, NULL);
    if (memcmp(&got, &want, sizeof(got)) != 0 && !(isnan(got) && isnan(want)))
        fail_msg("copyenc_stored_double(%.17g) = %.17g, text format: %.17g", v, got, want);
}

static void test_stored_double_is_the_text_round_trip(void **state)
{
    static const double edges[] = {0.0, -0.0, 0.1 + 0.2, 1e-5, 0.001, 0.0005, 999999999.999,
                                   1e9, -1e9, 123456789.123, 37.3 + 2e-14, 1.0 / 3, 1e300,
                                   -2.5, 36.6, 0.5, 100.0, 22.543210, -0.001, 114.0543219,
                                   1e-7, 999999999.999999};
    uint64_t x = 0x9E3779B97F4A7C15ull;
    size_t i;
    long n;

    (void)state;
    for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
        assert_stored_like_text(edges[i]);
    for (n = -2000000; n <= 2000000; n += 7) {     /* readings: 0-6 fractional digits */
        assert_stored_like_text((double)n / 10);
        assert_stored_like_text((double)n / 1000);
        assert_stored_like_text((double)n / 1e6);
        assert_stored_like_text(n * 0.001);         /* not the nearest double of n/1000 */
        assert_stored_like_text(n * 1e-6 + 180);
    }
    for (i = 0; i < 200000; i++) {                  /* any double */
        double d;

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(&d, &x, sizeof(d));
        assert_stored_like_text(d);
        assert_stored_like_text((double)(int64_t)(x >> 20) / 4096.0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_with_all_fields),
        cmocka_unit_test(test_row_absent_fields_are_null),
        cmocka_unit_test(test_integer_outside_int4_is_refused_by_the_server),
        cmocka_unit_test(test_stream_header_and_trailer),
        cmocka_unit_test(test_stored_double_is_the_text_round_trip),
    };

    return cmocka_run_group_tests_name("copyenc", tests, NULL, NULL);
}
