/* Record model and validation (SPEC §2.1): every rule, at its bounds. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "buf.h"
#include "err.h"
#include "record.h"

#define NOW_MS 1750000000000LL
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static rec_opts opts = {1000, 32, 0, NOW_MS};

/* Parses 'json' (a body) into 'b' (initialised here); returns rec_parse_body's code. */
static int parse(const char *json, rec_batch *b, const char **msg)
{
    rec_batch_init(b);
    return rec_parse_body(json, strlen(json), &opts, b, msg);
}

/* Like parse(), with options 'o'. */
static int parse_with(const char *json, const rec_opts *o, rec_batch *b, const char **msg)
{
    rec_batch_init(b);
    return rec_parse_body(json, strlen(json), o, b, msg);
}

/* A body holding one record: returns 1 when accepted, 0 when rejected;
 * 'reason' gets the rejection reason. The record is copied to 'out' (its
 * sleep duplicated: the caller frees it). */
static int accepts(const char *record, rec_health *out, char *reason)
{
    rec_batch b;
    const char *msg;
    int ok;

    assert_int_equal(parse(record, &b, &msg), 0);
    assert_int_equal(b.total, 1);
    assert_int_equal(b.n + b.nerr, 1);
    ok = b.n == 1;
    if (ok && out) {
        *out = b.recs[0];
        out->sleep = b.recs[0].sleep ? strdup(b.recs[0].sleep) : NULL;
    }
    if (!ok) {
        assert_int_equal(b.errs[0].index, 0);
        if (reason)
            snprintf(reason, REC_REASON_MAX, "%s", b.errs[0].reason);
    }
    rec_batch_cleanup(&b);
    return ok;
}

/* 'record' is rejected with a reason containing 'reason_part'. */
static void assert_rejected(const char *record, const char *reason_part)
{
    char reason[REC_REASON_MAX];

    if (accepts(record, NULL, reason))
        fail_msg("accepted: %s", record);
    if (strstr(reason, reason_part) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\" for %s", reason, reason_part, record);
}

/* 'record' is rejected with exactly 'want' as its reason. */
static void assert_reason(const char *record, const char *want)
{
    char reason[REC_REASON_MAX];

    if (accepts(record, NULL, reason))
        fail_msg("accepted: %s", record);
    assert_string_equal(reason, want);
}

/* The value of field 'f' in the accepted 'record'. */
static double field_of(const char *record, rec_field f)
{
    char reason[REC_REASON_MAX];
    rec_health r;

    if (!accepts(record, &r, reason))
        fail_msg("rejected (%s): %s", reason, record);
    free(r.sleep);
    if (!(r.present & (1u << f)))
        fail_msg("field %s absent: %s", rec_field_column(f), record);
    return r.num[f];
}

/* The whole accepted record (sleep to free by the caller). */
static rec_health record_of(const char *record)
{
    char reason[REC_REASON_MAX];
    rec_health r;

    if (!accepts(record, &r, reason))
        fail_msg("rejected (%s): %s", reason, record);
    return r;
}

/* ------------------------------------------------------------------------
 * Fields
 * ------------------------------------------------------------------------ */

/* A record of device "A" whose 'key' is 'value', quoted when 'quoted'. */
static const char *one_field(char *rec, size_t size, const char *key, const char *value,
                             int quoted)
{
    const char *q = quoted ? "\"" : "";

    snprintf(rec, size, "{\"deviceSn\":\"A\",\"%s\":%s%s%s}", key, q, value, q);
    return rec;
}

/* Accepted at 'lo' and 'hi' (as a number and as a numeric string),
 * rejected just outside both with the exact range reason. */
static void check_bounds(const char *key, rec_field f, const char *lo, const char *hi,
                         const char *below, const char *above, const char *range)
{
    char rec[256];
    char want[REC_REASON_MAX];
    int quoted;

    snprintf(want, sizeof(want), "%s out of range %s", rec_field_column(f), range);
    for (quoted = 0; quoted <= 1; quoted++) {
        assert_true(field_of(one_field(rec, sizeof(rec), key, lo, quoted), f) ==
                    strtod(lo, NULL));
        assert_true(field_of(one_field(rec, sizeof(rec), key, hi, quoted), f) ==
                    strtod(hi, NULL));
        assert_reason(one_field(rec, sizeof(rec), key, below, quoted), want);
        assert_reason(one_field(rec, sizeof(rec), key, above, quoted), want);
    }
}

static void test_ranges_of_every_field_and_both_spellings(void **state)
{
    (void)state;
    check_bounds("heart_rate", REC_HEART_RATE, "0", "300", "-1", "301", "0..300");
    check_bounds("heartRate", REC_HEART_RATE, "0", "300", "-1", "301", "0..300");
    check_bounds("blood_oxygen", REC_BLOOD_OXYGEN, "0", "100", "-1", "101", "0..100");
    check_bounds("bloodOxygen", REC_BLOOD_OXYGEN, "0", "100", "-1", "101", "0..100");
    check_bounds("body_temperature", REC_TEMPERATURE, "25.0", "45.0", "24.9", "45.1",
                 "25.0..45.0");
    check_bounds("temperature", REC_TEMPERATURE, "25", "45", "24.99", "45.01", "25.0..45.0");
    check_bounds("blood_pressure_systolic", REC_PRESSURE_HIGH, "0", "300", "-1", "301",
                 "0..300");
    check_bounds("pressureHigh", REC_PRESSURE_HIGH, "0", "300", "-1", "301", "0..300");
    check_bounds("blood_pressure_diastolic", REC_PRESSURE_LOW, "0", "300", "-1", "301",
                 "0..300");
    check_bounds("pressureLow", REC_PRESSURE_LOW, "0", "300", "-1", "301", "0..300");
    check_bounds("stress", REC_STRESS, "0", "100", "-1", "101", "0..100");
    check_bounds("step", REC_STEP, "0", "2147483647", "-1", "2147483648", "0..2147483647");
    check_bounds("distance", REC_DISTANCE, "0", "2147483647", "-1", "2147483648",
                 "0..2147483647");
    check_bounds("calorie", REC_CALORIE, "0", "2147483647", "-1", "2147483648",
                 "0..2147483647");
    check_bounds("latitude", REC_LATITUDE, "-90", "90", "-90.001", "90.001", "-90..90");
    check_bounds("longitude", REC_LONGITUDE, "-180", "180", "-180.5", "180.5", "-180..180");
    check_bounds("altitude", REC_ALTITUDE, "-100000", "100000", "-100001", "100001",
                 "-100000..100000");
}

static void test_field_table(void **state)
{
    static const char *const columns[REC_NUM_FIELDS] = {
        "heart_rate", "blood_oxygen", "temperature", "pressure_high", "pressure_low", "stress",
        "step", "distance", "calorie", "latitude", "longitude", "altitude",
    };
    static const int ints[REC_NUM_FIELDS] = {1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0};
    int f;

    (void)state;
    for (f = 0; f < REC_NUM_FIELDS; f++) {
        assert_string_equal(rec_field_column((rec_field)f), columns[f]);
        assert_int_equal(!!rec_field_is_int((rec_field)f), ints[f]);
    }
}

static void test_first_spelling_wins(void **state)
{
    rec_health r;

    (void)state;
    assert_true(field_of("{\"deviceSn\":\"A\",\"heartRate\":90,\"heart_rate\":80}",
                         REC_HEART_RATE) == 80);
    assert_true(field_of("{\"deviceSn\":\"A\",\"bloodOxygen\":90,\"blood_oxygen\":95}",
                         REC_BLOOD_OXYGEN) == 95);
    assert_true(field_of("{\"deviceSn\":\"A\",\"temperature\":36,\"body_temperature\":37}",
                         REC_TEMPERATURE) == 37);
    assert_true(field_of("{\"deviceSn\":\"A\",\"pressureHigh\":1,\"blood_pressure_systolic\":2}",
                         REC_PRESSURE_HIGH) == 2);
    assert_true(field_of("{\"deviceSn\":\"A\",\"pressureLow\":1,\"blood_pressure_diastolic\":3}",
                         REC_PRESSURE_LOW) == 3);
    /* a null first spelling is absent: the second one counts */
    assert_true(field_of("{\"deviceSn\":\"A\",\"heart_rate\":null,\"heartRate\":77}",
                         REC_HEART_RATE) == 77);
    /* a repeated key keeps its first value */
    assert_true(field_of("{\"deviceSn\":\"A\",\"heartRate\":70,\"heartRate\":301}",
                         REC_HEART_RATE) == 70);
    /* the first spelling is checked even when the second is fine */
    assert_reason("{\"deviceSn\":\"A\",\"heart_rate\":400,\"heartRate\":80}",
                  "heart_rate out of range 0..300");
    r = record_of("{\"sleep\":\"s\",\"sleepData\":\"d\",\"deviceSn\":\"A\"}");
    assert_string_equal(r.sleep, "d");
    free(r.sleep);
}

static void test_numeric_strings(void **state)
{
    (void)state;
    assert_true(field_of("{\"deviceSn\":\"A\",\"heartRate\":\"80\"}", REC_HEART_RATE) == 80);
    assert_true(field_of("{\"deviceSn\":\"A\",\"temperature\":\"36.5\"}", REC_TEMPERATURE) ==
                36.5);
    assert_true(field_of("{\"deviceSn\":\"A\",\"latitude\":\"-12.5\"}", REC_LATITUDE) == -12.5);
    assert_true(field_of("{\"deviceSn\":\"A\",\"step\":\"1e3\"}", REC_STEP) == 1000);
    assert_reason("{\"deviceSn\":\"A\",\"heartRate\":\"abc\"}", "heart_rate must be a number");
    assert_reason("{\"deviceSn\":\"A\",\"heartRate\":\"\"}", "heart_rate must be a number");
    assert_reason("{\"deviceSn\":\"A\",\"heartRate\":\" 80\"}", "heart_rate must be a number");
    assert_reason("{\"deviceSn\":\"A\",\"heartRate\":\"80 \"}", "heart_rate must be a number");
    assert_reason("{\"deviceSn\":\"A\",\"heartRate\":\"0x10\"}", "heart_rate must be a number");
    assert_reason("{\"deviceSn\":\"A\",\"heartRate\":\"nan\"}", "heart_rate must be a number");
    assert_reason("{\"deviceSn\":\"A\",\"heartRate\":\"NAN\"}", "heart_rate must be a number");
    assert_reason("{\"deviceSn\":\"A\",\"heartRate\":\"inf\"}", "heart_rate must be a number");
    assert_reason("{\"deviceSn\":\"A\",\"heartRate\":\"1e400\"}", "heart_rate must be a number");
    assert_reason("{\"deviceSn\":\"A\",\"heartRate\":\"8e\"}", "heart_rate must be a number");
    assert_reason("{\"deviceSn\":\"A\",\"heartRate\":\"-\"}", "heart_rate must be a number");
    assert_reason("{\"deviceSn\":\"A\",\"altitude\":1e400}", "altitude must be a number");
    assert_reason("{\"deviceSn\":\"A\",\"altitude\":-1e400}", "altitude must be a number");
    assert_reason("{\"deviceSn\":\"A\",\"heartRate\":true}", "heart_rate must be a number");
    assert_reason("{\"deviceSn\":\"A\",\"heartRate\":false}", "heart_rate must be a number");
    assert_reason("{\"deviceSn\":\"A\",\"heartRate\":[80]}", "heart_rate must be a number");
    assert_reason("{\"deviceSn\":\"A\",\"temperature\":{}}", "temperature must be a number");
}

static void test_integer_fields_need_integral_values(void **state)
{
    (void)state;
    assert_true(field_of("{\"deviceSn\":\"A\",\"heartRate\":80.0}", REC_HEART_RATE) == 80);
    assert_true(field_of("{\"deviceSn\":\"A\",\"step\":\"12.0\"}", REC_STEP) == 12);
    assert_reason("{\"deviceSn\":\"A\",\"heartRate\":80.5}", "heart_rate must be an integer");
    assert_reason("{\"deviceSn\":\"A\",\"stress\":0.1}", "stress must be an integer");
    assert_reason("{\"deviceSn\":\"A\",\"step\":\"10.5\"}", "step must be an integer");
    /* a huge integer is out of range, never saturated into it */
    assert_reason("{\"deviceSn\":\"A\",\"calorie\":1e300}", "calorie out of range 0..2147483647");
    assert_true(field_of("{\"deviceSn\":\"A\",\"temperature\":36.55}", REC_TEMPERATURE) ==
                36.55);
}

static void test_null_is_absent_and_unknown_keys_are_ignored(void **state)
{
    rec_health r;

    (void)state;
    assert_true(accepts("{\"deviceSn\":\"A\",\"heartRate\":null,\"sleep\":null,"
                        "\"timestamp\":null,\"uploadMethod\":null,\"colour\":\"red\","
                        "\"HeartRate\":1000,\"nested\":{\"x\":[1,2]}}", &r, NULL));
    assert_int_equal(r.present, 0);
    assert_null(r.sleep);
    assert_int_equal(r.ts_ms, NOW_MS);
    assert_string_equal(r.source_method, "api");
}

static void test_every_field_read_into_its_column(void **state)
{
    rec_health r;

    (void)state;
    r = record_of("{\"deviceSn\":\"A\",\"heartRate\":72,\"bloodOxygen\":98,\"temperature\":36.6,"
                  "\"pressureHigh\":120,\"pressureLow\":80,\"stress\":30,\"step\":1000,"
                  "\"distance\":800,\"calorie\":50,\"latitude\":22.5,\"longitude\":114.1,"
                  "\"altitude\":-3.5}");
    assert_int_equal(r.present, (1u << REC_NUM_FIELDS) - 1);
    assert_true(r.num[REC_HEART_RATE] == 72);
    assert_true(r.num[REC_BLOOD_OXYGEN] == 98);
    assert_true(r.num[REC_TEMPERATURE] == 36.6);
    assert_true(r.num[REC_PRESSURE_HIGH] == 120);
    assert_true(r.num[REC_PRESSURE_LOW] == 80);
    assert_true(r.num[REC_STRESS] == 30);
    assert_true(r.num[REC_STEP] == 1000);
    assert_true(r.num[REC_DISTANCE] == 800);
    assert_true(r.num[REC_CALORIE] == 50);
    assert_true(r.num[REC_LATITUDE] == 22.5);
    assert_true(r.num[REC_LONGITUDE] == 114.1);
    assert_true(r.num[REC_ALTITUDE] == -3.5);
    assert_null(r.sleep);
}

static void test_device_serial_rules(void **state)
{
    char rec[256];
    char sn[70];
    rec_health r;

    (void)state;
    r = record_of("{\"id\":\"ID-1\"}");
    assert_string_equal(r.device_sn, "ID-1");
    r = record_of("{\"device_sn\":\"DS-1\"}");
    assert_string_equal(r.device_sn, "DS-1");
    r = record_of("{\"device_sn\":\"C\",\"id\":\"B\",\"deviceSn\":\"A\"}");
    assert_string_equal(r.device_sn, "A");
    r = record_of("{\"device_sn\":\"C\",\"id\":\"B\"}");
    assert_string_equal(r.device_sn, "B");
    r = record_of("{\"deviceSn\":null,\"id\":\"B\"}");
    assert_string_equal(r.device_sn, "B");
    r = record_of("{\"deviceSn\":\"!~\"}");
    assert_string_equal(r.device_sn, "!~");
    memset(sn, 'x', 64);
    sn[64] = '\0';
    snprintf(rec, sizeof(rec), "{\"deviceSn\":\"%s\"}", sn);
    r = record_of(rec);
    assert_string_equal(r.device_sn, sn);
    sn[64] = 'x';
    sn[65] = '\0';
    snprintf(rec, sizeof(rec), "{\"deviceSn\":\"%s\"}", sn);
    assert_rejected(rec, "device_sn must be 1..64");
    assert_reason("{\"heartRate\":80}", "device_sn is required (deviceSn, id or device_sn)");
    assert_rejected("{\"deviceSn\":null}", "device_sn is required");
    assert_rejected("{\"DeviceSn\":\"A\"}", "device_sn is required");
    assert_rejected("{\"deviceSn\":\"\"}", "device_sn must be 1..64");
    assert_rejected("{\"deviceSn\":\"A B\"}", "device_sn must be 1..64");
    assert_rejected("{\"deviceSn\":\"A\\tB\"}", "device_sn must be 1..64");
    assert_rejected("{\"deviceSn\":\"A\\u007fB\"}", "device_sn must be 1..64");
    assert_rejected("{\"deviceSn\":\"手表\"}", "device_sn must be 1..64");
    assert_rejected("{\"deviceSn\":\"caf\\u00e9\"}", "device_sn must be 1..64");
    assert_reason("{\"deviceSn\":12345}", "device_sn must be a string");
    assert_reason("{\"id\":true}", "device_sn must be a string");
    assert_reason("{\"deviceSn\":[\"A\"]}", "device_sn must be a string");
    /* the first spelling present decides, even when a later one would do */
    assert_reason("{\"deviceSn\":5,\"id\":\"B\"}", "device_sn must be a string");
}

/* ------------------------------------------------------------------------
 * Timestamps
 * ------------------------------------------------------------------------ */

static int64_t ts_of(const char *record)
{
    rec_health r = record_of(record);

    free(r.sleep);
    return r.ts_ms;
}

static void test_timestamp_epoch_forms(void **state)
{
    (void)state;
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":1700000000}"), 1700000000000LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":1700000000123}"),
                     1700000000123LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":1700000000.5}"), 1700000000500LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":1700000000.123}"),
                     1700000000123LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":1.7e9}"), 1700000000000LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":\"1700000000\"}"),
                     1700000000000LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":\"1700000000123\"}"),
                     1700000000123LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":\"1700000000.25\"}"),
                     1700000000250LL);
    /* the first and last accepted instants, in seconds and in ms */
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":946684800}"), 946684800000LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":4102444799}"), 4102444799000LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":4102444799999}"),
                     4102444799999LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\"}"), NOW_MS);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":null}"), NOW_MS);
}

static void test_timestamp_out_of_range(void **state)
{
    const char *bad[] = {
        "946684799",        /* 1999-12-31 23:59:59 in seconds */
        "946684799999",     /* ... and its last ms */
        "4102444800",       /* 2100-01-01 in seconds */
        "4102444800000",    /* ... in ms */
        "99999999999",      /* seconds up to the ms threshold: year 5138 */
        "100000000000",     /* ms from the threshold: 1973 */
        "-5", "0", "1e300", "-1e300", "\"-1700000000\"",
        "\"1999-12-31 23:59:59\"", "\"2100-01-01 00:00:00\"", "\"0000-01-01 00:00:00\"",
    };
    char rec[128];
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(bad); i++) {
        snprintf(rec, sizeof(rec), "{\"deviceSn\":\"A\",\"timestamp\":%s}", bad[i]);
        assert_reason(rec, "timestamp out of range 2000-01-01..2099-12-31");
    }
}

static void test_timestamp_date_strings(void **state)
{
    const char *bad[] = {
        "2023-02-29 12:00:00", "2100-02-29 00:00:00", "2024-02-30 00:00:00",
        "2024-04-31 00:00:00", "2024-13-01 00:00:00", "2024-00-10 00:00:00",
        "2024-01-00 00:00:00", "2023-11-14 24:00:00", "2023-11-14 23:60:00",
        "2023-11-14 23:59:60", "2023-11-14T22:13:20", "2023-11-14 22:13",
        "2023-1-14 22:13:20", "2023-11-14 22:13:20Z", " 2023-11-14 22:13:20",
        "2023-11-14  22:13:20", "2023/11/14 22:13:20", "２０２３-11-14 22:13:20",
        "yesterday", "",
    };
    const char *bad_types[] = {"true", "{}", "[1700000000]"};
    char rec[128];
    size_t i;

    (void)state;
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":\"2023-11-14 22:13:20\"}"),
                     1700000000000LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":\"2024-02-29 12:00:00\"}"),
                     1709208000000LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":\"2000-02-29 00:00:00\"}"),
                     951782400000LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":\"2000-01-01 00:00:00\"}"),
                     946684800000LL);
    assert_int_equal(ts_of("{\"deviceSn\":\"A\",\"timestamp\":\"2099-12-31 23:59:59\"}"),
                     4102444799000LL);
    for (i = 0; i < ARRAY_LEN(bad); i++) {
        snprintf(rec, sizeof(rec), "{\"deviceSn\":\"A\",\"timestamp\":\"%s\"}", bad[i]);
        assert_reason(rec, "timestamp must be epoch seconds, epoch milliseconds or "
                           "\"YYYY-MM-DD HH:MM:SS\"");
    }
    for (i = 0; i < ARRAY_LEN(bad_types); i++) {
        snprintf(rec, sizeof(rec), "{\"deviceSn\":\"A\",\"timestamp\":%s}", bad_types[i]);
        assert_rejected(rec, "timestamp must be");
    }
}

static void test_timestamp_string_uses_configured_offset(void **state)
{
    rec_opts beijing = {1000, 32, 480, NOW_MS};
    rec_opts west = {1000, 32, -300, NOW_MS};
    const char *body = "{\"deviceSn\":\"A\",\"timestamp\":\"2023-11-15 06:13:20\"}";
    const char *edge = "{\"deviceSn\":\"A\",\"timestamp\":\"2000-01-01 07:59:59\"}";
    const char *epoch = "{\"deviceSn\":\"A\",\"timestamp\":1700000000}";
    const char *msg;
    rec_batch b;

    (void)state;
    assert_int_equal(parse_with(body, &beijing, &b, &msg), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.recs[0].ts_ms, 1700000000000LL);     /* 22:13:20 UTC the day before */
    rec_batch_cleanup(&b);
    assert_int_equal(parse_with(body, &west, &b, &msg), 0);
    assert_int_equal(b.recs[0].ts_ms, 1700000000000LL + (8 + 5) * 3600000LL);
    rec_batch_cleanup(&b);
    /* the range applies to the UTC instant: 1999-12-31 23:59:59 UTC */
    assert_int_equal(parse_with(edge, &beijing, &b, &msg), 0);
    assert_int_equal(b.n, 0);
    assert_string_equal(b.errs[0].reason, "timestamp out of range 2000-01-01..2099-12-31");
    rec_batch_cleanup(&b);
    /* epoch values are UTC already: no offset */
    assert_int_equal(parse_with(epoch, &beijing, &b, &msg), 0);
    assert_int_equal(b.recs[0].ts_ms, 1700000000000LL);
    rec_batch_cleanup(&b);
}

static void test_read_ts_of_an_object(void **state)
{
    const char *msg = NULL;
    char reason[REC_REASON_MAX];
    const char *text;
    cJSON *root;
    int64_t ts = 0;

    (void)state;
    text = "{\"timestamp\":\"2024-02-29 12:00:00\"}";
    assert_int_equal(rec_json_parse(text, strlen(text), 8, &root, &msg), 0);
    assert_int_equal(rec_read_ts(root, &opts, &ts, reason), 0);
    assert_int_equal(ts, 1709208000000LL);
    rec_json_free(root);
    assert_int_equal(rec_json_parse("{\"other\":1}", 11, 8, &root, &msg), 0);
    assert_int_equal(rec_read_ts(root, &opts, &ts, reason), 0);
    assert_int_equal(ts, NOW_MS);
    rec_json_free(root);
    ts = 42;
    assert_int_equal(rec_json_parse("{\"timestamp\":12}", 16, 8, &root, &msg), 0);
    assert_int_equal(rec_read_ts(root, &opts, &ts, reason), LJ_EINVAL);
    assert_string_equal(reason, "timestamp out of range 2000-01-01..2099-12-31");
    assert_int_equal(ts, 42);   /* untouched on failure */
    rec_json_free(root);
}

/* ------------------------------------------------------------------------
 * uploadMethod, sleep
 * ------------------------------------------------------------------------ */

static void test_source_method(void **state)
{
    rec_health r;

    (void)state;
    r = record_of("{\"deviceSn\":\"A\",\"uploadMethod\":\"wifi\"}");
    assert_string_equal(r.source_method, "wifi");
    r = record_of("{\"deviceSn\":\"A\"}");
    assert_string_equal(r.source_method, "api");
    r = record_of("{\"deviceSn\":\"A\",\"uploadMethod\":\"12345678901234567890\"}");
    assert_string_equal(r.source_method, "12345678901234567890");
    r = record_of("{\"deviceSn\":\"A\",\"uploadMethod\":\"4g lte\"}");
    assert_string_equal(r.source_method, "4g lte");
    assert_reason("{\"deviceSn\":\"A\",\"uploadMethod\":\"123456789012345678901\"}",
                  "uploadMethod must be 1..20 printable ASCII characters");
    assert_rejected("{\"deviceSn\":\"A\",\"uploadMethod\":\"\"}", "uploadMethod");
    assert_rejected("{\"deviceSn\":\"A\",\"uploadMethod\":\"wi\\nfi\"}", "uploadMethod");
    assert_rejected("{\"deviceSn\":\"A\",\"uploadMethod\":\"蓝牙\"}", "uploadMethod");
    assert_rejected("{\"deviceSn\":\"A\",\"uploadMethod\":5}", "uploadMethod");
    assert_rejected("{\"deviceSn\":\"A\",\"uploadMethod\":{}}", "uploadMethod");
}

static void test_sleep_as_text_or_json(void **state)
{
    rec_health r;

    (void)state;
    r = record_of("{\"deviceSn\":\"A\",\"sleepData\":\"深睡 2h, \\\"light\\\"\\n\"}");
    assert_string_equal(r.sleep, "深睡 2h, \"light\"\n");
    free(r.sleep);
    r = record_of("{\"deviceSn\":\"A\",\"sleep\":\"\"}");
    assert_string_equal(r.sleep, "");
    free(r.sleep);
    r = record_of("{\"deviceSn\":\"A\",\"sleep\":{ \"deep\" : 120, \"list\":[1, 2.5] }}");
    assert_string_equal(r.sleep, "{\"deep\":120,\"list\":[1,2.5]}");
    free(r.sleep);
    r = record_of("{\"deviceSn\":\"A\",\"sleepData\":[ {\"阶段\":\"深睡\"} , null ]}");
    assert_string_equal(r.sleep, "[{\"阶段\":\"深睡\"},null]");
    free(r.sleep);
    r = record_of("{\"deviceSn\":\"A\",\"sleep\":7}");
    assert_string_equal(r.sleep, "7");
    free(r.sleep);
    r = record_of("{\"deviceSn\":\"A\",\"sleep\":false}");
    assert_string_equal(r.sleep, "false");
    free(r.sleep);
}

/* ------------------------------------------------------------------------
 * Bodies
 * ------------------------------------------------------------------------ */

static void test_four_body_shapes(void **state)
{
    const char *bodies[] = {
        "{\"data\":{\"deviceSn\":\"A\"}}",
        "{\"data\":[{\"deviceSn\":\"A\"},{\"deviceSn\":\"B\"}],\"batchId\":\"B-1\"}",
        "{\"deviceSn\":\"A\"}",
        "[{\"deviceSn\":\"A\"},{\"deviceSn\":\"B\"},{\"deviceSn\":\"C\"}]",
        "{\"batchId\":\"B-2\",\"data\":{\"deviceSn\":\"A\"}}",
    };
    const size_t want[] = {1, 2, 1, 3, 1};
    const char *want_id[] = {"", "B-1", "", "", "B-2"};
    const char *msg;
    rec_batch b;
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(bodies); i++) {
        assert_int_equal(parse(bodies[i], &b, &msg), 0);
        assert_null(msg);
        assert_int_equal(b.n, want[i]);
        assert_int_equal(b.total, want[i]);
        assert_int_equal(b.nerr, 0);
        assert_string_equal(b.recs[0].device_sn, "A");
        assert_int_equal(b.recs[want[i] - 1].device_sn[0], 'A' + (int)want[i] - 1);
        assert_string_equal(b.batch_id, want_id[i]);
        rec_batch_cleanup(&b);
    }
}

static void test_batch_id_rules(void **state)
{
    char body[256];
    char id[70];
    const char *msg;
    rec_batch b;

    (void)state;
    memset(id, 'b', 64);
    id[64] = '\0';
    snprintf(body, sizeof(body), "{\"data\":[{\"deviceSn\":\"A\"}],\"batchId\":\"%s\"}", id);
    assert_int_equal(parse(body, &b, &msg), 0);
    assert_string_equal(b.batch_id, id);
    rec_batch_cleanup(&b);
    assert_int_equal(parse("{\"data\":[{\"deviceSn\":\"A\"}],\"batchId\":\"b 1\"}", &b, &msg),
                     0);
    assert_string_equal(b.batch_id, "b 1");
    rec_batch_cleanup(&b);
    assert_int_equal(parse("{\"data\":[{\"deviceSn\":\"A\"}],\"batchId\":\"\"}", &b, &msg), 0);
    assert_string_equal(b.batch_id, "");
    rec_batch_cleanup(&b);
    assert_int_equal(parse("{\"data\":[{\"deviceSn\":\"A\"}],\"batchId\":null}", &b, &msg), 0);
    assert_string_equal(b.batch_id, "");
    rec_batch_cleanup(&b);

    id[64] = 'b';
    id[65] = '\0';
    snprintf(body, sizeof(body), "{\"data\":[{\"deviceSn\":\"A\"}],\"batchId\":\"%s\"}", id);
    assert_int_equal(parse(body, &b, &msg), LJ_EPARSE);
    assert_string_equal(msg, "batchId must be a string of at most 64 characters");
    assert_int_equal(b.n, 0);
    assert_string_equal(b.batch_id, "");
    assert_int_equal(parse("{\"data\":[{\"deviceSn\":\"A\"}],\"batchId\":7}", &b, &msg),
                     LJ_EPARSE);
    assert_string_equal(msg, "batchId must be a string of at most 64 characters");
    assert_int_equal(parse("{\"data\":[{\"deviceSn\":\"A\"}],\"batchId\":\"a\\nb\"}", &b, &msg),
                     LJ_EPARSE);
    assert_int_equal(parse("{\"data\":[{\"deviceSn\":\"A\"}],\"batchId\":\"批次\"}", &b, &msg),
                     LJ_EPARSE);
    assert_int_equal(b.n, 0);
}

static void assert_body_error(const char *body, int code, const char *want_msg)
{
    const char *msg = NULL;
    rec_batch b;
    int rc = parse(body, &b, &msg);

    if (rc != code)
        fail_msg("code %d, want %d for body %s", rc, code, body);
    assert_non_null(msg);
    assert_string_equal(msg, want_msg);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.nerr, 0);
    assert_null(b.recs);
    rec_batch_cleanup(&b);
}

static void test_bad_bodies(void **state)
{
    const char *not_json = "body is not valid JSON";
    const char *shape = "body must be a record, a list of records, {\"data\": ...} or "
                        "{\"devices\": [...]}";

    (void)state;
    assert_body_error("not json", LJ_EPARSE, not_json);
    assert_body_error("{\"deviceSn\":\"A\"} x", LJ_EPARSE, not_json);
    assert_body_error("{\"deviceSn\":\"A\"}{}", LJ_EPARSE, not_json);
    assert_body_error("[{\"deviceSn\":\"A\"}],", LJ_EPARSE, not_json);
    assert_body_error("{\"deviceSn\":\"A\"", LJ_EPARSE, not_json);
    assert_body_error("", LJ_EPARSE, not_json);
    assert_body_error("   ", LJ_EPARSE, not_json);
    assert_body_error("{\"deviceSn\":NaN}", LJ_EPARSE, not_json);
    assert_body_error("{\"deviceSn\":\"A\",\"heartRate\":Infinity}", LJ_EPARSE, not_json);
    assert_body_error("{'deviceSn':'A'}", LJ_EPARSE, not_json);
    assert_body_error("42", LJ_EPARSE, shape);
    assert_body_error("\"text\"", LJ_EPARSE, shape);
    assert_body_error("null", LJ_EPARSE, shape);
    assert_body_error("true", LJ_EPARSE, shape);
    assert_body_error("{\"data\":5}", LJ_EPARSE, shape);
    assert_body_error("{\"data\":\"x\"}", LJ_EPARSE, shape);
    assert_body_error("{\"data\":null}", LJ_EPARSE, shape);
    assert_body_error("{\"data\":[]}", LJ_ENOREC, "no records in upload");
    assert_body_error("[]", LJ_ENOREC, "no records in upload");
    assert_body_error("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
                      LJ_EDEPTH, "JSON nested too deeply");
    assert_body_error("{\"deviceSn\":\"\xc0\x80\"}", LJ_EPARSE,
                      "body is not valid UTF-8 or contains a NUL");
}

static void test_body_need_not_be_nul_terminated(void **state)
{
    const char buf[] = "{\"deviceSn\":\"A\"}GARBAGE";
    const char *msg;
    rec_batch b;

    (void)state;
    rec_batch_init(&b);
    assert_int_equal(rec_parse_body(buf, 16, &opts, &b, &msg), 0);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.recs[0].device_sn, "A");
    rec_batch_cleanup(&b);
    assert_int_equal(rec_parse_body(buf, sizeof(buf) - 1, &opts, &b, &msg), LJ_EPARSE);
    assert_int_equal(rec_parse_body(buf, 15, &opts, &b, &msg), LJ_EPARSE);
    assert_int_equal(b.n, 0);
}

static void test_per_record_errors_keep_the_rest(void **state)
{
    const char *body = "{\"batchId\":\"K\",\"data\":[{\"deviceSn\":\"A\",\"heartRate\":301},"
                       "{\"deviceSn\":\"B\"},7,{\"heartRate\":1},"
                       "{\"deviceSn\":\"C\",\"stress\":50},"
                       "null,[],{\"deviceSn\":\"D\",\"sleep\":{\"s\":1}},"
                       "{\"deviceSn\":\"E\",\"heartRate\":\"x\",\"bloodOxygen\":101}]}";
    const char *msg;
    rec_batch b;

    (void)state;
    assert_int_equal(parse(body, &b, &msg), 0);
    assert_int_equal(b.total, 9);
    assert_int_equal(b.n, 3);
    assert_string_equal(b.recs[0].device_sn, "B");
    assert_string_equal(b.recs[1].device_sn, "C");
    assert_true(b.recs[1].num[REC_STRESS] == 50);
    assert_string_equal(b.recs[2].device_sn, "D");
    assert_string_equal(b.recs[2].sleep, "{\"s\":1}");
    assert_int_equal(b.nerr, 6);
    assert_int_equal(b.errs[0].index, 0);
    assert_string_equal(b.errs[0].reason, "heart_rate out of range 0..300");
    assert_int_equal(b.errs[1].index, 2);
    assert_string_equal(b.errs[1].reason, "record must be a JSON object");
    assert_int_equal(b.errs[2].index, 3);
    assert_string_equal(b.errs[2].reason, "device_sn is required (deviceSn, id or device_sn)");
    assert_int_equal(b.errs[3].index, 5);
    assert_string_equal(b.errs[3].reason, "record must be a JSON object");
    assert_int_equal(b.errs[4].index, 6);
    assert_string_equal(b.errs[4].reason, "record must be a JSON object");
    assert_int_equal(b.errs[5].index, 8);
    assert_string_equal(b.errs[5].reason, "heart_rate must be a number");   /* first error */
    assert_string_equal(b.batch_id, "K");
    rec_batch_cleanup(&b);
    assert_null(b.recs);
    assert_null(b.errs);
    assert_int_equal(b.n + b.nerr + b.total, 0);
    rec_batch_cleanup(&b);      /* twice is harmless */
}

static void test_every_record_rejected_is_not_a_body_error(void **state)
{
    const char *msg = "unset";
    rec_batch b;

    (void)state;
    assert_int_equal(parse("{\"data\":{\"heartRate\":80}}", &b, &msg), 0);
    assert_null(msg);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.nerr, 1);
    assert_int_equal(b.total, 1);
    rec_batch_cleanup(&b);
    assert_int_equal(parse("{\"data\":[1]}", &b, &msg), 0);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.nerr, 1);
    assert_string_equal(b.errs[0].reason, "record must be a JSON object");
    rec_batch_cleanup(&b);
}

/* The oldest batch shape, {"devices": [RECORD, ...]} (SPEC §7). */
static void test_devices_shape(void **state)
{
    const char *msg;
    rec_batch b;

    (void)state;
    assert_int_equal(parse("{\"devices\":[{\"deviceSn\":\"A\"},{\"deviceSn\":\"B\",\"heartRate\":999},"
                           "{\"deviceSn\":\"C\"}]}", &b, &msg), 0);
    assert_null(msg);
    assert_int_equal(b.total, 3);
    assert_int_equal(b.n, 2);
    assert_int_equal(b.nerr, 1);
    assert_int_equal(b.errs[0].index, 1);
    assert_string_equal(b.recs[0].device_sn, "A");
    assert_string_equal(b.recs[1].device_sn, "C");
    assert_int_equal(b.devices, 1);
    assert_string_equal(b.batch_id, "");
    rec_batch_cleanup(&b);
    /* with a batchId beside it */
    assert_int_equal(parse("{\"batchId\":\"D-1\",\"devices\":[{\"deviceSn\":\"A\"}]}", &b, &msg), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.devices, 1);
    assert_string_equal(b.batch_id, "D-1");
    rec_batch_cleanup(&b);
    /* the other shapes do not set the mark */
    assert_int_equal(parse("{\"data\":[{\"deviceSn\":\"A\"}]}", &b, &msg), 0);
    assert_int_equal(b.devices, 0);
    rec_batch_cleanup(&b);
    assert_int_equal(parse("{\"deviceSn\":\"A\"}", &b, &msg), 0);
    assert_int_equal(b.devices, 0);
    rec_batch_cleanup(&b);
}

/* "devices" that is no list, or beside a serial, is an unknown key of a
 * bare record: ignored (SPEC §2.1). */
static void test_devices_key_of_a_bare_record(void **state)
{
    static const char *const bodies[] = {
        "{\"deviceSn\":\"A\",\"heartRate\":70,\"devices\":2}",
        "{\"deviceSn\":\"A\",\"devices\":[{\"deviceSn\":\"B\"}]}",
        "{\"id\":\"A\",\"devices\":[]}",
        "{\"device_sn\":\"A\",\"devices\":null}",
    };
    const char *msg;
    rec_batch b;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        if (parse(bodies[i], &b, &msg) != 0)
            fail_msg("refused: %s (%s)", bodies[i], msg ? msg : "-");
        assert_int_equal(b.total, 1);
        assert_int_equal(b.n, 1);
        assert_int_equal(b.devices, 0);
        assert_string_equal(b.recs[0].device_sn, "A");
        rec_batch_cleanup(&b);
    }
    /* no serial and no list: a bare record without a serial, refused as one */
    assert_int_equal(parse("{\"devices\":\"A\"}", &b, &msg), 0);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.nerr, 1);
    assert_int_equal(b.devices, 0);
    rec_batch_cleanup(&b);
}

static void test_devices_shape_errors(void **state)
{
    (void)state;
    assert_body_error("{\"devices\":[]}", LJ_ENOREC, "no records in upload");
    assert_body_error("{\"devices\":[{\"deviceSn\":\"A\"}],\"data\":[{\"deviceSn\":\"B\"}]}",
                      LJ_EPARSE, "body has both \"data\" and \"devices\": send one");
    assert_body_error("{\"devices\":[{\"deviceSn\":\"A\"}],\"batchId\":7}", LJ_EPARSE,
                      "batchId must be a string of at most 64 characters");
}

static void test_devices_shape_record_limit(void **state)
{
    rec_opts two = {2, 32, 0, NOW_MS};
    const char *msg;
    rec_batch b;

    (void)state;
    assert_int_equal(parse_with("{\"devices\":[{\"deviceSn\":\"A\"},{\"deviceSn\":\"B\"},"
                                "{\"deviceSn\":\"C\"}]}", &two, &b, &msg), LJ_ETOOBIG);
    assert_int_equal(b.n, 0);
    assert_int_equal(parse_with("{\"devices\":[1,2]}", &two, &b, &msg), 0);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.nerr, 2);
    rec_batch_cleanup(&b);
}

static void test_record_count_limit(void **state)
{
    rec_opts two = {2, 32, 0, NOW_MS};
    const char *three = "[{\"deviceSn\":\"A\"},{\"deviceSn\":\"B\"},{\"deviceSn\":\"C\"}]";
    const char *bad_three = "{\"data\":[1,2,3],\"batchId\":\"X\"}";
    const char *two_recs = "[{\"deviceSn\":\"A\"},{\"deviceSn\":\"B\"}]";
    const char *msg;
    rec_batch b;

    (void)state;
    assert_int_equal(parse_with(three, &two, &b, &msg), LJ_ETOOBIG);
    assert_string_equal(msg, "too many records in one upload");
    assert_int_equal(b.n, 0);
    assert_int_equal(b.total, 0);
    /* counted before validation: the records' own errors are never reached */
    assert_int_equal(parse_with(bad_three, &two, &b, &msg), LJ_ETOOBIG);
    assert_int_equal(b.nerr, 0);
    assert_string_equal(b.batch_id, "");
    assert_int_equal(parse_with(two_recs, &two, &b, &msg), 0);
    assert_int_equal(b.n, 2);
    rec_batch_cleanup(&b);
}

static void test_many_records(void **state)
{
    rec_opts big = {5000, 32, 0, NOW_MS};
    size_t cap = 5000 * 40;
    char *body = malloc(cap);
    const char *msg;
    size_t len = 0;
    rec_batch b;
    int i;

    (void)state;
    assert_non_null(body);
    body[len++] = '[';
    for (i = 0; i < 5000; i++)
        len += (size_t)snprintf(body + len, cap - len, "%s{\"id\":\"S%d\",\"step\":%d}",
                                i ? "," : "", i, i);
    body[len++] = ']';
    rec_batch_init(&b);
    assert_int_equal(rec_parse_body(body, len, &big, &b, &msg), 0);
    assert_int_equal(b.n, 5000);
    assert_string_equal(b.recs[4321].device_sn, "S4321");
    assert_true(b.recs[4999].num[REC_STEP] == 4999);
    rec_batch_cleanup(&b);
    big.max_records = 4999;
    assert_int_equal(rec_parse_body(body, len, &big, &b, &msg), LJ_ETOOBIG);
    free(body);
}

/* ------------------------------------------------------------------------
 * Pre-scan
 * ------------------------------------------------------------------------ */

static int prescan(const char *s, int max_depth)
{
    return rec_prescan(s, strlen(s), max_depth);
}

static void test_prescan_depth(void **state)
{
    char deep[80];
    int i;

    (void)state;
    for (i = 0; i < 32; i++)
        deep[i] = i % 2 ? '[' : '{';
    for (i = 0; i < 32; i++)
        deep[32 + i] = ']';
    assert_int_equal(rec_prescan(deep, 64, 32), 0);
    assert_int_equal(rec_prescan(deep, 64, 31), LJ_EDEPTH);
    assert_int_equal(prescan("[[],[],[[]]]", 3), 0);     /* siblings do not add up */
    assert_int_equal(prescan("[[],[],[[[]]]]", 3), LJ_EDEPTH);
    assert_int_equal(prescan("{\"a\":\"[[[[[[{{{{\"}", 1), 0);   /* inside a string */
    assert_int_equal(prescan("{\"a\":\"\\\"[[\"}", 1), 0);       /* escaped quote */
    assert_int_equal(prescan("{\"a\":\"\\\\\",\"b\":[[]]}", 2), LJ_EDEPTH); /* "\\" ends */
    assert_int_equal(prescan("{\"a\":\"\\\\\",\"b\":[[]]}", 3), 0);
    assert_int_equal(prescan("]", 32), LJ_EPARSE);
    assert_int_equal(prescan("}}}}[[[[", 2), LJ_EPARSE);
    assert_int_equal(prescan("", 0), 0);
}

static void test_prescan_nul_escapes(void **state)
{
    (void)state;
    assert_int_equal(prescan("\"a\\u0000b\"", 32), LJ_EPARSE);
    assert_int_equal(prescan("{\"k\\u0000\":1}", 32), LJ_EPARSE);          /* in a key */
    assert_int_equal(prescan("\"a\\\\u0000b\"", 32), 0);                  /* "\\" then text */
    assert_int_equal(prescan("\"a\\\\\\u0000b\"", 32), LJ_EPARSE);        /* "\\" then \u0000 */
    assert_int_equal(prescan("\"a\\u00001\"", 32), LJ_EPARSE);
    assert_int_equal(prescan("\"a\\u0001\\u1000\\u00e9\"", 32), 0);
    assert_int_equal(prescan("\"\\u000", 32), 0);      /* short: cJSON refuses it */
    assert_int_equal(rec_prescan("\"a\0b\"", 5, 32), LJ_EPARSE);
    assert_int_equal(rec_prescan("\"a\\\0\"", 5, 32), LJ_EPARSE);     /* NUL after a backslash */
    assert_int_equal(rec_prescan("{}\0", 3, 32), LJ_EPARSE);
}

static void test_prescan_utf8(void **state)
{
    (void)state;
    assert_int_equal(prescan("\"\xc0\x80\"", 32), LJ_EPARSE);              /* overlong NUL */
    assert_int_equal(prescan("\"\xc1\xbf\"", 32), LJ_EPARSE);              /* overlong */
    assert_int_equal(prescan("\"\xe0\x80\xaf\"", 32), LJ_EPARSE);          /* overlong '/' */
    assert_int_equal(prescan("\"\xf0\x80\x80\xaf\"", 32), LJ_EPARSE);      /* overlong */
    assert_int_equal(prescan("\"\xed\xa0\x80\"", 32), LJ_EPARSE);          /* U+D800 */
    assert_int_equal(prescan("\"\xed\xbf\xbf\"", 32), LJ_EPARSE);          /* U+DFFF */
    assert_int_equal(prescan("\"\xf4\x90\x80\x80\"", 32), LJ_EPARSE);      /* > U+10FFFF */
    assert_int_equal(prescan("\"\xf5\x80\x80\x80\"", 32), LJ_EPARSE);
    assert_int_equal(prescan("\"\xe6\x89\"", 32), LJ_EPARSE);              /* truncated */
    assert_int_equal(rec_prescan("\"\xe6\x89", 3, 32), LJ_EPARSE);         /* at the end */
    assert_int_equal(prescan("\"\x80\"", 32), LJ_EPARSE);                  /* lone continuation */
    assert_int_equal(prescan("\"\xff\"", 32), LJ_EPARSE);
    assert_int_equal(prescan("\"\\\xc0\"", 32), LJ_EPARSE);                /* after a backslash */
    assert_int_equal(prescan("\xc3\xa9", 32), 0);   /* the grammar is cJSON's to judge */
    assert_int_equal(prescan("\"\xed\x9f\xbf\xee\x80\x80\"", 32), 0);      /* U+D7FF U+E000 */
    assert_int_equal(prescan("\"\xf4\x8f\xbf\xbf\"", 32), 0);              /* U+10FFFF */
    assert_int_equal(prescan("\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xf0\x90\x80\x80\"", 32), 0);
    assert_int_equal(prescan("\"睡眠 \xf0\x9f\x98\xb4\"", 32), 0);
}

static void test_sleep_with_chinese_text_is_accepted(void **state)
{
    rec_health r;

    (void)state;
    r = record_of("{\"deviceSn\":\"A\",\"sleepData\":\"深睡眠 3小时 😴\"}");
    assert_string_equal(r.sleep, "深睡眠 3小时 😴");
    free(r.sleep);
}

static void test_depth_limit_applies_to_bodies(void **state)
{
    rec_opts shallow = {1000, 3, 0, NOW_MS};
    const char *ok = "{\"data\":[{\"deviceSn\":\"A\",\"x\":\"{[{[\"}]}";
    const char *deep = "{\"data\":[{\"deviceSn\":\"A\",\"sleep\":{\"x\":1}}]}";
    const char *msg;
    rec_batch b;

    (void)state;
    assert_int_equal(parse_with(ok, &shallow, &b, &msg), 0);
    assert_int_equal(b.n, 1);
    rec_batch_cleanup(&b);
    assert_int_equal(parse_with(deep, &shallow, &b, &msg), LJ_EDEPTH);
    assert_string_equal(msg, "JSON nested too deeply");
    assert_int_equal(b.n, 0);
    /* found by the scan even when the rest is not JSON at all */
    assert_int_equal(parse_with("[[[[ nonsense", &shallow, &b, &msg), LJ_EDEPTH);
}

/* ------------------------------------------------------------------------
 * The parse helpers shared with report.c
 * ------------------------------------------------------------------------ */

static void test_json_parse_and_print(void **state)
{
    const char *text = "{ \"a\" : [1, 2.5, \"x\", {\"b\": null}], \"c\": true }";
    const char *msg = NULL;
    cJSON *root = NULL;
    cJSON *inner = NULL;
    char *printed;

    (void)state;
    assert_int_equal(rec_json_parse(text, strlen(text), 3, &root, &msg), 0);
    assert_non_null(root);
    /* a second tree on the same thread while the first is alive */
    assert_int_equal(rec_json_parse("[7]", 3, 3, &inner, &msg), 0);
    printed = rec_json_print(cJSON_GetObjectItemCaseSensitive(root, "a"));
    assert_string_equal(printed, "[1,2.5,\"x\",{\"b\":null}]");
    free(printed);
    rec_json_free(inner);
    printed = rec_json_print(root);
    assert_string_equal(printed, "{\"a\":[1,2.5,\"x\",{\"b\":null}],\"c\":true}");
    free(printed);
    rec_json_free(root);
    rec_json_free(NULL);

    assert_int_equal(rec_json_parse(text, strlen(text), 2, &root, &msg), LJ_EDEPTH);
    assert_string_equal(msg, "JSON nested too deeply");
    assert_int_equal(rec_json_parse("{} {}", 5, 2, &root, &msg), LJ_EPARSE);
    assert_string_equal(msg, "body is not valid JSON");
    assert_int_equal(rec_json_parse("\"\\u0000\"", 8, 2, &root, &msg), LJ_EPARSE);
    assert_string_equal(msg, "body is not valid UTF-8 or contains a NUL");
}

static void test_is_token(void **state)
{
    (void)state;
    assert_true(rec_is_token("A", 1));
    assert_true(rec_is_token("!~az09", 6));
    assert_false(rec_is_token("abc", 2));
    assert_false(rec_is_token("", 5));
    assert_false(rec_is_token("a b", 5));
    assert_false(rec_is_token("a\x7f", 5));
    assert_false(rec_is_token("\xc3\xa9", 5));
}

/* ------------------------------------------------------------------------
 * The normalised payload
 * ------------------------------------------------------------------------ */

static void assert_same_record(const rec_health *a, const rec_health *b)
{
    int f;

    assert_string_equal(a->device_sn, b->device_sn);
    assert_int_equal(a->ts_ms, b->ts_ms);
    assert_int_equal(a->present, b->present);
    for (f = 0; f < REC_NUM_FIELDS; f++)
        if (a->num[f] != b->num[f])
            fail_msg("%s: %.17g != %.17g", rec_field_column((rec_field)f), a->num[f],
                     b->num[f]);
    if (a->sleep)
        assert_string_equal(a->sleep, b->sleep);
    else
        assert_null(b->sleep);
    assert_string_equal(a->source_method, b->source_method);
}

static void test_payload_text(void **state)
{
    const char *body = "[{\"deviceSn\":\"A\",\"latitude\":-33.8688,\"heartRate\":\"80\","
                       "\"temperature\":36.6,\"step\":1e3,\"sleep\":{\"d\" : \"深\"},"
                       "\"timestamp\":1700000000123,\"uploadMethod\":\"wifi\"},"
                       "{\"id\":\"B\\\"\",\"altitude\":0.1}]";
    const char *want = "[{\"device_sn\":\"A\",\"ts\":1700000000123,\"heart_rate\":80,"
                       "\"temperature\":36.6,\"step\":1000,\"latitude\":-33.8688,"
                       "\"sleep\":\"{\\\"d\\\":\\\"深\\\"}\",\"source_method\":\"wifi\"},"
                       "{\"device_sn\":\"B\\\"\",\"ts\":1750000000000,\"altitude\":0.1,"
                       "\"source_method\":\"api\"}]";
    const char *msg;
    rec_batch in;
    lj_buf json;

    (void)state;
    assert_int_equal(parse(body, &in, &msg), 0);
    lj_buf_init(&json);
    assert_int_equal(rec_batch_to_json(&in, &json), 0);
    assert_string_equal(json.data, want);
    assert_int_equal(json.len, strlen(want));
    rec_batch_cleanup(&in);
    /* an empty batch is an empty array, appended after what was there */
    assert_int_equal(rec_batch_to_json(&in, &json), 0);
    assert_string_equal(json.data + strlen(want), "[]");
    lj_buf_cleanup(&json);
}

static void test_payload_round_trip_is_exact(void **state)
{
    const char *body = "[{\"deviceSn\":\"RT-1\",\"heartRate\":72,\"bloodOxygen\":98,"
                       "\"temperature\":36.6,\"pressureHigh\":120,\"pressureLow\":80,"
                       "\"stress\":30,\"step\":2147483647,\"distance\":0,\"calorie\":5,"
                       "\"latitude\":-33.8688,\"longitude\":151.2093,\"altitude\":-12.25,"
                       "\"sleepData\":\"tab\\tquote\\\"睡\\\\ \\u0001\",\"timestamp\":1700000000123,"
                       "\"uploadMethod\":\"wifi\"},{\"id\":\"RT-2\"},"
                       "{\"id\":\"RT-3\",\"temperature\":36.600000000000001,"
                       "\"latitude\":0.30000000000000004,\"longitude\":-179.99999999999997,"
                       "\"altitude\":1e-300,\"sleep\":[1,{\"a\":\"b\"}],"
                       "\"timestamp\":\"2099-12-31 23:59:59\",\"uploadMethod\":\"a b\"}]";
    const char *msg;
    rec_batch in;
    rec_batch out;
    lj_buf json;
    lj_buf again;
    size_t i;

    (void)state;
    assert_int_equal(parse(body, &in, &msg), 0);
    assert_int_equal(in.n, 3);
    assert_int_equal(in.recs[0].present, (1u << REC_NUM_FIELDS) - 1);
    lj_buf_init(&json);
    assert_int_equal(rec_batch_to_json(&in, &json), 0);
    rec_batch_init(&out);
    assert_int_equal(rec_batch_from_json(json.data, json.len, &out), 0);
    assert_int_equal(out.n, in.n);
    assert_int_equal(out.total, in.n);
    for (i = 0; i < in.n; i++)
        assert_same_record(&in.recs[i], &out.recs[i]);
    /* and the text of the second trip is the same */
    lj_buf_init(&again);
    assert_int_equal(rec_batch_to_json(&out, &again), 0);
    assert_string_equal(again.data, json.data);
    rec_batch_cleanup(&in);
    rec_batch_cleanup(&out);
    lj_buf_cleanup(&json);
    lj_buf_cleanup(&again);
}

static void test_payload_reader_appends(void **state)
{
    const char *one = "[{\"device_sn\":\"A\",\"ts\":1700000000000,\"source_method\":\"api\"}]";
    const char *bad = "[{\"device_sn\":\"B\",\"ts\":1700000000000,\"source_method\":\"api\","
                      "\"sleep\":\"s\"},{\"device_sn\":\"C\"}]";
    rec_batch b;

    (void)state;
    rec_batch_init(&b);
    assert_int_equal(rec_batch_from_json(one, strlen(one), &b), 0);
    assert_int_equal(rec_batch_from_json(one, strlen(one), &b), 0);
    assert_int_equal(b.n, 2);
    assert_int_equal(b.total, 2);
    assert_int_equal(b.recs[1].ts_ms, 1700000000000LL);
    assert_int_equal(b.recs[1].present, 0);
    assert_null(b.recs[1].sleep);
    /* a bad payload leaves the batch as it was */
    assert_int_equal(rec_batch_from_json(bad, strlen(bad), &b), LJ_EPARSE);
    assert_int_equal(b.n, 2);
    assert_int_equal(b.total, 2);
    assert_int_equal(rec_batch_from_json("[]", 2, &b), 0);
    assert_int_equal(b.n, 2);
    rec_batch_cleanup(&b);
}

static void test_payload_reader_refuses_other_shapes(void **state)
{
    const char *bad[] = {
        "", "{}", "null", "[1]", "[null]", "[[]]",
        "[{\"ts\":1700000000000,\"source_method\":\"api\"}]",
        "[{\"device_sn\":\"\",\"ts\":1700000000000,\"source_method\":\"api\"}]",
        "[{\"device_sn\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
        "\"ts\":1700000000000,\"source_method\":\"api\"}]",
        "[{\"device_sn\":5,\"ts\":1700000000000,\"source_method\":\"api\"}]",
        "[{\"device_sn\":\"A\",\"ts\":\"1700000000000\",\"source_method\":\"api\"}]",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000.5,\"source_method\":\"api\"}]",
        "[{\"device_sn\":\"A\",\"ts\":1e300,\"source_method\":\"api\"}]",
        "[{\"device_sn\":\"A\",\"source_method\":\"api\"}]",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000}]",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000,\"source_method\":\"123456789012345678901\"}]",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000,\"source_method\":null}]",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000,\"source_method\":\"api\","
        "\"heart_rate\":\"80\"}]",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000,\"source_method\":\"api\","
        "\"heart_rate\":80.5}]",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000,\"source_method\":\"api\","
        "\"step\":1e300}]",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000,\"source_method\":\"api\","
        "\"altitude\":1e400}]",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000,\"source_method\":\"api\","
        "\"latitude\":null}]",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000,\"source_method\":\"api\",\"sleep\":1}]",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000,\"source_method\":\"api\"}] x",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000,\"source_method\":\"api\"},5]",
        "[{\"device_sn\":\"A\",\"ts\":1700000000000,\"source_method\":\"api\"}",
    };
    rec_batch b;
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(bad); i++) {
        rec_batch_init(&b);
        if (rec_batch_from_json(bad[i], strlen(bad[i]), &b) != LJ_EPARSE)
            fail_msg("accepted payload: %s", bad[i]);
        assert_int_equal(b.n, 0);
        assert_int_equal(b.total, 0);
        rec_batch_cleanup(&b);
    }
}

static void test_format_ts(void **state)
{
    char out[40];

    (void)state;
    rec_format_ts(0, out, sizeof(out));
    assert_string_equal(out, "1970-01-01 00:00:00.000+00");
    rec_format_ts(1700000000000LL, out, sizeof(out));
    assert_string_equal(out, "2023-11-14 22:13:20.000+00");
    rec_format_ts(1709208000123LL, out, sizeof(out));
    assert_string_equal(out, "2024-02-29 12:00:00.123+00");
    rec_format_ts(946684800000LL, out, sizeof(out));
    assert_string_equal(out, "2000-01-01 00:00:00.000+00");
    rec_format_ts(951868799999LL, out, sizeof(out));
    assert_string_equal(out, "2000-02-29 23:59:59.999+00");
    rec_format_ts(4102444799999LL, out, sizeof(out));
    assert_string_equal(out, "2099-12-31 23:59:59.999+00");
    rec_format_ts(-1, out, sizeof(out));
    assert_string_equal(out, "1969-12-31 23:59:59.999+00");
}

/* The digits written without printf are printf's, over the accepted
 * range (2000..2100) and with microseconds. */
static void test_format_ts_like_gmtime(void **state)
{
    uint64_t x = 88172645463325252ull;
    char got[40];
    char want[64];
    int i;

    (void)state;
    for (i = 0; i < 100000; i++) {
        int64_t ms = 946684800000LL + (int64_t)(x % 3155760000000ull);
        time_t secs = (time_t)(ms / 1000);
        unsigned us = (unsigned)(x >> 40) % 1000;
        struct tm tm;

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        gmtime_r(&secs, &tm);
        snprintf(want, sizeof(want), "%04d-%02d-%02d %02d:%02d:%02d.%03d%03u+00",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(ms % 1000), us);
        rec_format_ts_us(ms, us, got, sizeof(got));
        if (us == 0)
            want[23] = '\0', strcat(want, "+00");
        assert_string_equal(got, want);
    }
}

/* Records moved to the errors keep their place in the upload, between the
 * records that were invalid from the start, and own nothing any more. */
static void test_reject_marked_records(void **state)
{
    static const unsigned char mark[] = {1, 0, 1, 1};
    const char *msg = NULL;
    rec_batch b;

    (void)state;
    /* valid at 0, 2, 3, 5; invalid at 1 and 4 */
    assert_int_equal(parse("[{\"deviceSn\":\"A\",\"sleepData\":\"x\"},{\"heartRate\":1},"
                           "{\"deviceSn\":\"B\"},{\"deviceSn\":\"C\",\"sleepData\":\"y\"},"
                           "{\"deviceSn\":\"D\",\"heartRate\":999},{\"deviceSn\":\"E\"}]",
                           &b, &msg),
                     0);
    assert_int_equal(b.n, 4);
    assert_int_equal(b.nerr, 2);
    assert_int_equal(rec_batch_reject(&b, mark, "rate_limited"), 0);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.recs[0].device_sn, "B");
    assert_int_equal(b.nerr, 5);
    assert_int_equal(b.errs[0].index, 0);
    assert_string_equal(b.errs[0].reason, "rate_limited");
    assert_int_equal(b.errs[1].index, 1);
    assert_string_not_equal(b.errs[1].reason, "rate_limited");
    assert_int_equal(b.errs[2].index, 3);
    assert_int_equal(b.errs[3].index, 4);
    assert_string_not_equal(b.errs[3].reason, "rate_limited");
    assert_int_equal(b.errs[4].index, 5);
    assert_string_equal(b.errs[4].reason, "rate_limited");
    assert_int_equal(b.total, 6);
    rec_batch_cleanup(&b);      /* LeakSanitizer: the sleep texts were freed */
}

/* Issue 15: two readings of one upload without a timestamp must not share
 * a key. Each gets its own microsecond, in order; sent times stay as sent. */
static void test_records_without_timestamp_get_instants_of_their_own(void **state)
{
    const char *body = "[{\"deviceSn\":\"W1\",\"heartRate\":70},"
                       "{\"deviceSn\":\"W1\",\"heartRate\":80,\"timestamp\":1750000000},"
                       "{\"deviceSn\":\"W1\",\"heartRate\":130}]";
    const int64_t first = NOW_MS * 1000 + 999;    /* the next one crosses a millisecond */
    const char *msg = NULL;
    rec_batch b;
    rec_batch back;
    lj_buf json;
    char ts[48];

    (void)state;
    assert_int_equal(parse(body, &b, &msg), 0);
    assert_int_equal(rec_batch_stamp(&b, 0), 2);            /* counts only */
    assert_int_equal(b.recs[0].ts_ms, NOW_MS);
    assert_int_equal(rec_batch_stamp(&b, first), 2);
    assert_int_equal(b.recs[0].ts_ms, NOW_MS);
    assert_int_equal(b.recs[0].ts_us, 999);
    assert_int_equal(b.recs[1].ts_ms, 1750000000000LL);    /* sent: untouched */
    assert_int_equal(b.recs[1].ts_us, 0);
    assert_int_equal(b.recs[2].ts_ms, NOW_MS + 1);
    assert_int_equal(b.recs[2].ts_us, 0);
    rec_format_ts_us(b.recs[0].ts_ms, b.recs[0].ts_us, ts, sizeof(ts));
    assert_string_equal(ts, "2025-06-15 15:06:40.000999+00");
    rec_format_ts_us(b.recs[2].ts_ms, b.recs[2].ts_us, ts, sizeof(ts));
    assert_string_equal(ts, "2025-06-15 15:06:40.001+00");
    /* The microseconds travel in the payload to the consumer. */
    lj_buf_init(&json);
    assert_int_equal(rec_batch_to_json(&b, &json), 0);
    assert_non_null(strstr(json.data, "\"ts_us\":999"));
    rec_batch_init(&back);
    assert_int_equal(rec_batch_from_json(json.data, json.len, &back), 0);
    assert_int_equal(back.recs[0].ts_us, 999);
    assert_int_equal(back.recs[2].ts_us, 0);
    rec_batch_cleanup(&back);
    for (int us = 999; us <= 1000; us++) {      /* 0..999 only */
        char one[128];

        snprintf(one, sizeof(one), "[{\"device_sn\":\"W1\",\"ts\":1750000000000,"
                 "\"ts_us\":%d,\"source_method\":\"api\"}]", us);
        rec_batch_init(&back);
        assert_int_equal(rec_batch_from_json(one, strlen(one), &back) == 0, us < 1000);
        rec_batch_cleanup(&back);
    }
    lj_buf_cleanup(&json);
    rec_batch_cleanup(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranges_of_every_field_and_both_spellings),
        cmocka_unit_test(test_field_table),
        cmocka_unit_test(test_devices_shape),
        cmocka_unit_test(test_devices_shape_errors),
        cmocka_unit_test(test_devices_key_of_a_bare_record),
        cmocka_unit_test(test_devices_shape_record_limit),
        cmocka_unit_test(test_first_spelling_wins),
        cmocka_unit_test(test_numeric_strings),
        cmocka_unit_test(test_integer_fields_need_integral_values),
        cmocka_unit_test(test_null_is_absent_and_unknown_keys_are_ignored),
        cmocka_unit_test(test_every_field_read_into_its_column),
        cmocka_unit_test(test_device_serial_rules),
        cmocka_unit_test(test_timestamp_epoch_forms),
        cmocka_unit_test(test_timestamp_out_of_range),
        cmocka_unit_test(test_timestamp_date_strings),
        cmocka_unit_test(test_timestamp_string_uses_configured_offset),
        cmocka_unit_test(test_read_ts_of_an_object),
        cmocka_unit_test(test_source_method),
        cmocka_unit_test(test_sleep_as_text_or_json),
        cmocka_unit_test(test_four_body_shapes),
        cmocka_unit_test(test_batch_id_rules),
        cmocka_unit_test(test_bad_bodies),
        cmocka_unit_test(test_body_need_not_be_nul_terminated),
        cmocka_unit_test(test_per_record_errors_keep_the_rest),
        cmocka_unit_test(test_every_record_rejected_is_not_a_body_error),
        cmocka_unit_test(test_record_count_limit),
        cmocka_unit_test(test_many_records),
        cmocka_unit_test(test_prescan_depth),
        cmocka_unit_test(test_prescan_nul_escapes),
        cmocka_unit_test(test_prescan_utf8),
        cmocka_unit_test(test_sleep_with_chinese_text_is_accepted),
        cmocka_unit_test(test_depth_limit_applies_to_bodies),
        cmocka_unit_test(test_json_parse_and_print),
        cmocka_unit_test(test_is_token),
        cmocka_unit_test(test_payload_text),
        cmocka_unit_test(test_payload_round_trip_is_exact),
        cmocka_unit_test(test_payload_reader_appends),
        cmocka_unit_test(test_payload_reader_refuses_other_shapes),
        cmocka_unit_test(test_format_ts),
        cmocka_unit_test(test_format_ts_like_gmtime),
        cmocka_unit_test(test_records_without_timestamp_get_instants_of_their_own),
        cmocka_unit_test(test_reject_marked_records),
    };

    return cmocka_run_group_tests_name("record", tests, NULL, NULL);
}
