/* Record model and validation (SPEC §2.1): every rule, at its bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "record.h"

#define NOW_MS 1750000000000LL

static rec_opts opts = {1000, 32, 0, NOW_MS};

/* Parses 'json' (a body) into 'b'; returns rec_parse_body's code. */
static int parse(const char *json, rec_batch *b, const char **msg)
{
    rec_batch_init(b);
    return rec_parse_body(json, strlen(json), &opts, b, msg);
}

/* A body holding one record: returns 1 when accepted, 0 when rejected;
 * 'reason' gets the rejection reason. The record is copied to 'out'. */
static int accepts(const char *record, rec_health *out, char *reason)
{
    rec_batch b;
    const char *msg;
    int ok;

    assert_int_equal(parse(record, &b, &msg), 0);
    assert_int_equal(b.total, 1);
    ok = b.n == 1;
    if (ok && out) {
        *out = b.recs[0];
        out->sleep = b.recs[0].sleep ? strdup(b.recs[0].sleep) : NULL;
    }
    if (!ok && reason)
        snprintf(reason, REC_REASON_MAX, "%s", b.errs[0].reason);
    rec_batch_cleanup(&b);
    return ok;
}

static void assert_rejected(const char *record, const char *reason_part)
{
    char reason[REC_REASON_MAX];

    if (accepts(record, NULL, reason))
        fail_msg("accepted: %s", record);
    if (strstr(reason, reason_part) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\" for %s", reason, reason_part, record);
}

static double field_of(const char *record, rec_field f)
{
    rec_health r;

    if (!accepts(record, &r, NULL))
        fail_msg("rejected: %s", record);
    free(r.sleep);
    assert_true(r.present & (1u << f));
    return r.num[f];
}

/* Accepted at 'lo' and 'hi', rejected just outside both, for every key. */
static void check_bounds(const char *key, rec_field f, const char *lo, const char *hi,
                         const char *below, const char *above, const char *column)
{
    char rec[256];

    snprintf(rec, sizeof(rec), "{\"deviceSn\":\"A\",\"%s\":%s}", key, lo);
    assert_true(field_of(rec, f) == strtod(lo, NULL));
    snprintf(rec, sizeof(rec), "{\"deviceSn\":\"A\",\"%s\":%s}", key, hi);
    assert_true(field_of(rec, f) == strtod(hi, NULL));
    snprintf(rec, sizeof(rec), "{\"deviceSn\":\"A\",\"%s\":%s}", key, below);
    assert_rejected(rec, column);
    snprintf(rec, sizeof(rec), "{\"deviceSn\":\"A\",\"%s\":%s}", key, above);
    assert_rejected(rec, "out of range");
}

static void test_ranges_of_every_field_and_both_spellings(void **state)
{
    (void)state;
    check_bounds("heart_rate", REC_HEART_RATE, "0", "300", "-1", "301", "heart_rate");
    check_bounds("heartRate", REC_HEART_RATE, "0", "300", "-1", "301", "heart_rate");
    check_bounds("blood_oxygen", REC_BLOOD_OXYGEN, "0", "100", "-1", "101", "blood_oxygen");
    check_bounds("bloodOxygen", REC_BLOOD_OXYGEN, "0", "100", "-1", "101", "blood_oxygen");
    check_bounds("body_temperature", REC_TEMPERATURE, "25.0", "45.0", "24.9", "45.1",
                 "temperature");
    check_bounds("temperature", REC_TEMPERATURE, "25", "45", "24.99", "45.01", "temperature");
    check_bounds("blood_pressure_systolic", REC_PRESSURE_HIGH, "0", "300", "-1", "301",
                 "pressure_high");
    check_bounds("pressureHigh", REC_PRESSURE_HIGH, "0", "300", "-1", "301", "pressure_high");
    check_bounds("blood_pressure_diastolic", REC_PRESSURE_LOW, "0", "300", "-1", "301",
                 "pressure_low");
    check_bounds("pressureLow", REC_PRESSURE_LOW, "0", "300", "-1", "301", "pressure_low");
    check_bounds("stress", REC_STRESS, "0", "100", "-1", "101", "stress");
    check_bounds("step", REC_STEP, "0", "2147483647", "-1", "2147483648", "step");
    check_bounds("distance", REC_DISTANCE, "0", "2147483647", "-1", "2147483648", "distance");
    check_bounds("calorie", REC_CALORIE, "0", "2147483647", "-1", "2147483648", "calorie");
    check_bounds("latitude", REC_LATITUDE, "-90", "90", "-90.001", "90.001", "latitude");
    check_bounds("longitude", REC_LONGITUDE, "-180", "180", "-180.5", "180.5", "longitude");
    check_bounds("altitude", REC_ALTITUDE, "-100000", "100000", "-100001", "100001",
                 "altitude");
}

static void test_first_spelling_wins(void **state)
{
    (void)state;
    assert_true(field_of("{\"deviceSn\":\"A\",\"heartRate\":90,\"heart_rate\":80}",
                         REC_HEART_RATE) == 80);
    assert_true(field_of("{\"deviceSn\":\"A\",\"temperature\":36,\"body_temperature\":37}",
                         REC_TEMPERATURE) == 37);
}

static void test_numeric_strings(void **state)
{
    (void)state;
    assert_true(field_of("{\"deviceSn\":\"A\",\"heartRate\":\"80\"}", REC_HEART_RATE) == 80);
    assert_true(field_of("{\"deviceSn\":\"A\",\"temperature\":\"36.5\"}", REC_TEMPERATURE) ==
                36.5);
    assert_true(field_of("{\"deviceSn\":\"A\",\"latitude\":\"-12.5\"}", REC_LATITUDE) == -12.5);
    assert_true(field_of("{\"deviceSn\":\"A\",\"step\":\"1e3\"}", REC_STEP) == 1000);
    assert_rejected("{\"deviceSn\":\"A\",\"heartRate\":\"abc\"}", "heart_rate must be a number");
    assert_rejected("{\"deviceSn\":\"A\",\"heartRate\":\"\"}", "must be a number");
    assert_rejected("{\"deviceSn\":\"A\",\"heartRate\":\" 80\"}", "must be a number");
    assert_rejected("{\"deviceSn\":\"A\",\"heartRate\":\"80 \"}", "must be a number");
    assert_rejected("{\"deviceSn\":\"A\",\"heartRate\":\"0x10\"}", "must be a number");
    assert_rejected("{\"deviceSn\":\"A\",\"heartRate\":\"nan\"}", "must be a number");
    assert_rejected("{\"deviceSn\":\"A\",\"heartRate\":\"inf\"}", "must be a number");
    assert_rejected("{\"deviceSn\":\"A\",\"heartRate\":\"1e400\"}", "must be a number");
    assert_rejected("{\"deviceSn\":\"A\",\"heartRate\":1e400}", "must be a number");
    assert_rejected("{\"deviceSn\":\"A\",\"heartRate\":true}", "must be a number");
    assert_rejected("{\"deviceSn\":\"A\",\"heartRate\":[80]}", "must be a number");
    assert_rejected("{\"deviceSn\":\"A\",\"heartRate\":{}}", "must be a number");
}

static void test_integer_fields_need_integral_values(void **state)
{
    (void)state;
    assert_true(field_of("{\"deviceSn\":\"A\",\"heartRate\":80.0}", REC_HEART_RATE) == 80);
    assert_rejected("{\"deviceSn\":\"A\",\"heartRate\":80.5}", "heart_rate must be an integer");
    assert_rejected("{\"deviceSn\":\"A\",\"step\":\"10.5\"}", "step must be an integer");
    assert_true(field_of("{\"deviceSn\":\"A\",\"temperature\":36.55}", REC_TEMPERATURE) ==
                36.55);
}

static void test_null_is_absent_and_unknown_keys_are_ignored(void **state)
{
    rec_health r;

    (void)state;
    assert_true(accepts("{\"deviceSn\":\"A\",\"heartRate\":null,\"sleep\":null,"
                        "\"timestamp\":null,\"uploadMethod\":null,\"colour\":\"red\","
                        "\"nested\":{\"x\":[1,2]}}", &r, NULL));
    assert_int_equal(r.present, 0);
    assert_null(r.sleep);
    assert_int_equal(r.ts_ms, NOW_MS);
    assert_string_equal(r.source_method, "api");
}

static void test_device_serial_rules(void **state)
{
    char rec[256];
    char sn[70];
    rec_health r;

    (void)state;
    assert_true(accepts("{\"id\":\"ID-1\"}", &r, NULL));
    assert_string_equal(r.device_sn, "ID-1");
    assert_true(accepts("{\"device_sn\":\"DS-1\"}", &r, NULL));
    assert_string_equal(r.device_sn, "DS-1");
    assert_true(accepts("{\"device_sn\":\"C\",\"id\":\"B\",\"deviceSn\":\"A\"}", &r, NULL));
    assert_string_equal(r.device_sn, "A");
    memset(sn, 'x', 64);
    sn[64] = '\0';
    snprintf(rec, sizeof(rec), "{\"deviceSn\":\"%s\"}", sn);
    assert_true(accepts(rec, &r, NULL));
    assert_int_equal(strlen(r.device_sn), 64);
    sn[64] = 'x';
    sn[65] = '\0';
    snprintf(rec, sizeof(rec), "{\"deviceSn\":\"%s\"}", sn);
    assert_rejected(rec, "device_sn must be 1..64");
    assert_rejected("{\"heartRate\":80}", "device_sn is required");
    assert_rejected("{\"deviceSn\":null}", "device_sn is required");
    assert_rejected("{\"deviceSn\":\"\"}", "device_sn must be 1..64");
    assert_rejected("{\"deviceSn\":\"A B\"}", "device_sn must be 1..64");
    assert_rejected("{\"deviceSn\":\"A\\tB\"}", "device_sn must be 1..64");
    assert_rejected("{\"deviceSn\":\"手表\"}", "device_sn must be 1..64");
    assert_rejected("{\"deviceSn\":12345}", "device_sn must be a string");
}

static int64_t ts_of(const char *record)
{
    rec_health r;

    if (!accepts(record, &r, NULL))
        fail_msg("rejected: %s", record);
    return r.ts_ms;
}

static void test_timestamp_forms(void **state)
{
    (void)state;
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":1700000000}"), 1700000000000LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":1700000000123}"),
                     1700000000123LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":1700000000.5}"), 1700000000500LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":\"1700000000\"}"),
                     1700000000000LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":\"2023-11-14 22:13:20\"}"),
                     1700000000000LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":\"2024-02-29 12:00:00\"}"),
                     1709208000000LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":\"2000-01-01 00:00:00\"}"),
                     946684800000LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\"}"), NOW_MS);
    assert_rejected("{\"deviceSn\":\"A\",\"timestamp\":\"2023-02-29 12:00:00\"}", "timestamp");
    assert_rejected("{\"deviceSn\":\"A\",\"timestamp\":\"2023-13-01 12:00:00\"}", "timestamp");
    assert_rejected("{\"deviceSn\":\"A\",\"timestamp\":\"2023-11-14 24:00:00\"}", "timestamp");
    assert_rejected("{\"deviceSn\":\"A\",\"timestamp\":\"2023-11-14T22:13:20\"}", "timestamp");
    assert_rejected("{\"deviceSn\":\"A\",\"timestamp\":\"2023-11-14 22:13\"}", "timestamp");
    assert_rejected("{\"deviceSn\":\"A\",\"timestamp\":\"yesterday\"}", "timestamp");
    assert_rejected("{\"deviceSn\":\"A\",\"timestamp\":true}", "timestamp");
    assert_rejected("{\"deviceSn\":\"A\",\"timestamp\":\"1999-12-31 23:59:59\"}",
                    "timestamp out of range");
    assert_rejected("{\"deviceSn\":\"A\",\"timestamp\":4102444800}", "timestamp out of range");
    assert_rejected("{\"deviceSn\":\"A\",\"timestamp\":-5}", "timestamp out of range");
    assert_rejected("{\"deviceSn\":\"A\",\"timestamp\":1e300}", "timestamp out of range");
}

static void test_timestamp_string_uses_configured_offset(void **state)
{
    rec_opts beijing = {1000, 32, 480, NOW_MS};
    const char *body = "{\"deviceSn\":\"A\",\"timestamp\":\"2023-11-15 06:13:20\"}";
    const char *msg;
    rec_batch b;

    (void)state;
    rec_batch_init(&b);
    assert_int_equal(rec_parse_body(body, strlen(body), &beijing, &b, &msg), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.recs[0].ts_ms, 1700000000000LL);
    rec_batch_cleanup(&b);
}

static void test_source_method(void **state)
{
    rec_health r;

    (void)state;
    assert_true(accepts("{\"deviceSn\":\"A\",\"uploadMethod\":\"wifi\"}", &r, NULL));
    assert_string_equal(r.source_method, "wifi");
    assert_true(accepts("{\"deviceSn\":\"A\",\"uploadMethod\":\"12345678901234567890\"}", &r,
                        NULL));
    assert_rejected("{\"deviceSn\":\"A\",\"uploadMethod\":\"123456789012345678901\"}",
                    "uploadMethod");
    assert_rejected("{\"deviceSn\":\"A\",\"uploadMethod\":5}", "uploadMethod");
}

static void test_sleep_as_text_or_json(void **state)
{
    rec_health r;

    (void)state;
    assert_true(accepts("{\"deviceSn\":\"A\",\"sleepData\":\"深睡 2h, \\\"light\\\"\\n\"}", &r,
                        NULL));
    assert_string_equal(r.sleep, "深睡 2h, \"light\"\n");
    free(r.sleep);
    assert_true(accepts("{\"deviceSn\":\"A\",\"sleep\":{ \"deep\" : 120, \"list\":[1, 2] }}", &r,
                        NULL));
    assert_string_equal(r.sleep, "{\"deep\":120,\"list\":[1,2]}");
    free(r.sleep);
    assert_true(accepts("{\"deviceSn\":\"A\",\"sleep\":7}", &r, NULL));
    assert_string_equal(r.sleep, "7");
    free(r.sleep);
}

static void test_four_body_shapes(void **state)
{
    const char *bodies[] = {
        "{\"data\":{\"deviceSn\":\"A\"}}",
        "{\"data\":[{\"deviceSn\":\"A\"},{\"deviceSn\":\"B\"}],\"batchId\":\"B-1\"}",
        "{\"deviceSn\":\"A\"}",
        "[{\"deviceSn\":\"A\"},{\"deviceSn\":\"B\"},{\"deviceSn\":\"C\"}]",
    };
    const size_t want[] = {1, 2, 1, 3};
    const char *msg;
    rec_batch b;
    size_t i;

    (void)state;
    for (i = 0; i < 4; i++) {
        assert_int_equal(parse(bodies[i], &b, &msg), 0);
        assert_int_equal(b.n, want[i]);
        assert_string_equal(b.recs[0].device_sn, "A");
        assert_string_equal(b.batch_id, i == 1 ? "B-1" : "");
        rec_batch_cleanup(&b);
    }
}

static void test_bad_bodies(void **state)
{
    const char *msg;
    rec_batch b;

    (void)state;
    assert_int_equal(parse("not json", &b, &msg), LJ_EPARSE);
    assert_string_equal(msg, "body is not valid JSON");
    assert_int_equal(parse("{\"deviceSn\":\"A\"} x", &b, &msg), LJ_EPARSE);
    assert_int_equal(parse("{\"deviceSn\":\"A\"", &b, &msg), LJ_EPARSE);
    assert_int_equal(parse("", &b, &msg), LJ_EPARSE);
    assert_int_equal(parse("42", &b, &msg), LJ_EPARSE);
    assert_non_null(strstr(msg, "body must be"));
    assert_int_equal(parse("\"text\"", &b, &msg), LJ_EPARSE);
    assert_int_equal(parse("{\"data\":5}", &b, &msg), LJ_EPARSE);
    assert_int_equal(parse("{\"data\":[]}", &b, &msg), LJ_ENOREC);
    assert_int_equal(parse("[]", &b, &msg), LJ_ENOREC);
    assert_int_equal(parse("{\"data\":[{\"deviceSn\":\"A\"}],\"batchId\":7}", &b, &msg),
                     LJ_EPARSE);
    assert_non_null(strstr(msg, "batchId"));
    assert_int_equal(parse("{\"deviceSn\":NaN}", &b, &msg), LJ_EPARSE);
    assert_int_equal(parse("{\"deviceSn\":\"A\",\"heartRate\":Infinity}", &b, &msg),
                     LJ_EPARSE);
    assert_int_equal(b.n, 0);
}

static void test_per_record_errors_keep_the_rest(void **state)
{
    const char *body = "[{\"deviceSn\":\"A\",\"heartRate\":301},{\"deviceSn\":\"B\"},7,"
                       "{\"heartRate\":1},{\"deviceSn\":\"C\",\"stress\":50}]";
    const char *msg;
    rec_batch b;

    (void)state;
    assert_int_equal(parse(body, &b, &msg), 0);
    assert_int_equal(b.total, 5);
    assert_int_equal(b.n, 2);
    assert_string_equal(b.recs[0].device_sn, "B");
    assert_string_equal(b.recs[1].device_sn, "C");
    assert_int_equal(b.nerr, 3);
    assert_int_equal(b.errs[0].index, 0);
    assert_string_equal(b.errs[0].reason, "heart_rate out of range 0..300");
    assert_int_equal(b.errs[1].index, 2);
    assert_string_equal(b.errs[1].reason, "record must be a JSON object");
    assert_int_equal(b.errs[2].index, 3);
    rec_batch_cleanup(&b);
}

static void test_record_count_limit(void **state)
{
    rec_opts two = {2, 32, 0, NOW_MS};
    const char *three = "[{\"deviceSn\":\"A\"},{\"deviceSn\":\"B\"},{\"deviceSn\":\"C\"}]";
    const char *msg;
    rec_batch b;

    (void)state;
    rec_batch_init(&b);
    assert_int_equal(rec_parse_body(three, strlen(three), &two, &b, &msg), LJ_ETOOBIG);
    assert_string_equal(msg, "too many records in one upload");
    assert_int_equal(b.n, 0);
    assert_int_equal(rec_parse_body(three, strlen(three) - 20, &two, &b, &msg), LJ_EPARSE);
}

static void test_prescan_depth_utf8_and_nul(void **state)
{
    char deep[80];
    int i;

    (void)state;
    for (i = 0; i < 32; i++)
        deep[i] = '[';
    for (i = 0; i < 32; i++)
        deep[32 + i] = ']';
    assert_int_equal(rec_prescan(deep, 64, 32), 0);
    assert_int_equal(rec_prescan(deep, 64, 31), LJ_EDEPTH);
    assert_int_equal(rec_prescan("{\"a\":\"[[[[[[\"}", 14, 1), 0);   /* inside a string */
    assert_int_equal(rec_prescan("{\"a\":\"\\\"[[\"}", 12, 1), 0);    /* escaped quote */
    assert_int_equal(rec_prescan("\"a\\u0000b\"", 10, 32), LJ_EPARSE);
    assert_int_equal(rec_prescan("\"a\\\\u0000b\"", 11, 32), 0);     /* escaped backslash */
    assert_int_equal(rec_prescan("\"a\0b\"", 5, 32), LJ_EPARSE);
    assert_int_equal(rec_prescan("\"\xc0\x80\"", 4, 32), LJ_EPARSE);  /* overlong */
    assert_int_equal(rec_prescan("\"\xed\xa0\x80\"", 5, 32), LJ_EPARSE); /* surrogate */
    assert_int_equal(rec_prescan("\"\xe6\x89\"", 4, 32), LJ_EPARSE);   /* truncated */
    assert_int_equal(rec_prescan("\"\xf4\x90\x80\x80\"", 6, 32), LJ_EPARSE); /* > U+10FFFF */
    assert_int_equal(rec_prescan("\"\xff\"", 3, 32), LJ_EPARSE);
    assert_int_equal(rec_prescan("\"睡眠 \xf0\x9f\x98\xb4\"", 13, 32), 0);
}

static void test_depth_limit_applies_to_bodies(void **state)
{
    rec_opts shallow = {1000, 3, 0, NOW_MS};
    const char *ok = "{\"data\":[{\"deviceSn\":\"A\"}]}";
    const char *deep = "{\"data\":[{\"deviceSn\":\"A\",\"sleep\":{\"x\":1}}]}";
    const char *msg;
    rec_batch b;

    (void)state;
    rec_batch_init(&b);
    assert_int_equal(rec_parse_body(ok, strlen(ok), &shallow, &b, &msg), 0);
    rec_batch_cleanup(&b);
    assert_int_equal(rec_parse_body(deep, strlen(deep), &shallow, &b, &msg), LJ_EDEPTH);
    assert_string_equal(msg, "JSON nested too deeply");
}

static void test_payload_round_trip_is_exact(void **state)
{
    const char *body = "[{\"deviceSn\":\"RT-1\",\"heartRate\":72,\"bloodOxygen\":98,"
                       "\"temperature\":36.6,\"pressureHigh\":120,\"pressureLow\":80,"
                       "\"stress\":30,\"step\":2147483647,\"distance\":0,\"calorie\":5,"
                       "\"latitude\":-33.8688,\"longitude\":151.2093,\"altitude\":-12.25,"
                       "\"sleepData\":\"tab\\tquote\\\"睡\",\"timestamp\":1700000000123,"
                       "\"uploadMethod\":\"wifi\"},{\"id\":\"RT-2\"}]";
    const char *msg;
    rec_batch in;
    rec_batch out;
    lj_buf json;
    size_t i;
    int f;

    (void)state;
    assert_int_equal(parse(body, &in, &msg), 0);
    lj_buf_init(&json);
    assert_int_equal(rec_batch_to_json(&in, &json), 0);
    assert_non_null(strstr(json.data, "\"heart_rate\":72,"));
    assert_non_null(strstr(json.data, "\"temperature\":36.6,"));
    rec_batch_init(&out);
    assert_int_equal(rec_batch_from_json(json.data, json.len, &out), 0);
    assert_int_equal(out.n, in.n);
    for (i = 0; i < in.n; i++) {
        assert_string_equal(out.recs[i].device_sn, in.recs[i].device_sn);
        assert_int_equal(out.recs[i].ts_ms, in.recs[i].ts_ms);
        assert_int_equal(out.recs[i].present, in.recs[i].present);
        for (f = 0; f < REC_NUM_FIELDS; f++)
            assert_true(out.recs[i].num[f] == in.recs[i].num[f]);
        if (in.recs[i].sleep)
            assert_string_equal(out.recs[i].sleep, in.recs[i].sleep);
        else
            assert_null(out.recs[i].sleep);
        assert_string_equal(out.recs[i].source_method, in.recs[i].source_method);
    }
    rec_batch_cleanup(&in);
    rec_batch_cleanup(&out);
    lj_buf_cleanup(&json);
}

static void test_payload_reader_refuses_other_shapes(void **state)
{
    const char *bad[] = {
        "", "{}", "[1]", "[{\"ts\":1700000000000,\"source_method\":\"api\"}]",
        "[{\"device_sn\":\"A\",\"ts\":\"x\",\"source_method\":\"api\"}]",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000}]",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000,\"source_method\":\"api\","
        "\"heart_rate\":\"80\"}]",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000,\"source_method\":\"api\",\"sleep\":1}]",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000,\"source_method\":\"api\"}] x",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000,\"source_method\":\"api\"},5]",
    };
    rec_batch b;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rec_batch_init(&b);
        if (rec_batch_from_json(bad[i], strlen(bad[i]), &b) != LJ_EPARSE)
            fail_msg("accepted payload: %s", bad[i]);
        assert_int_equal(b.n, 0);
        rec_batch_cleanup(&b);
    }
}

static void test_format_ts(void **state)
{
    char out[40];

    (void)state;
    rec_format_ts(0, out, sizeof(out));
    assert_string_equal(out, "1970-01-01 00:00:00.000+00");
    rec_format_ts(1709208000123LL, out, sizeof(out));
    assert_string_equal(out, "2024-02-29 12:00:00.123+00");
    rec_format_ts(4102444799999LL, out, sizeof(out));
    assert_string_equal(out, "2099-12-31 23:59:59.999+00");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranges_of_every_field_and_both_spellings),
        cmocka_unit_test(test_first_spelling_wins),
        cmocka_unit_test(test_numeric_strings),
        cmocka_unit_test(test_integer_fields_need_integral_values),
        cmocka_unit_test(test_null_is_absent_and_unknown_keys_are_ignored),
        cmocka_unit_test(test_device_serial_rules),
        cmocka_unit_test(test_timestamp_forms),
        cmocka_unit_test(test_timestamp_string_uses_configured_offset),
        cmocka_unit_test(test_source_method),
        cmocka_unit_test(test_sleep_as_text_or_json),
        cmocka_unit_test(test_four_body_shapes),
        cmocka_unit_test(test_bad_bodies),
        cmocka_unit_test(test_per_record_errors_keep_the_rest),
        cmocka_unit_test(test_record_count_limit),
        cmocka_unit_test(test_prescan_depth_utf8_and_nul),
        cmocka_unit_test(test_depth_limit_applies_to_bodies),
        cmocka_unit_test(test_payload_round_trip_is_exact),
        cmocka_unit_test(test_payload_reader_refuses_other_shapes),
        cmocka_unit_test(test_format_ts),
    };

    return cmocka_run_group_tests_name("record", tests, NULL, NULL);
}
