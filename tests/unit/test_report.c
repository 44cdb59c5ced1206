/* Device status reports and events: validation and the stream payload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "report.h"

#define NOW_MS 1750000000000LL

static const rec_opts opts = {1000, 32, 0, NOW_MS};

static int device(const char *body, rep_device *d, const char **msg)
{
    return rep_device_parse(body, strlen(body), &opts, d, msg);
}

static int event(const char *body, rep_event *e, const char **msg)
{
    return rep_event_parse(body, strlen(body), &opts, e, msg);
}

static void test_device_report_is_read_and_kept_whole(void **state)
{
    const char *msg;
    rep_device d;

    (void)state;
    assert_int_equal(device("{\"SerialNumber\":\"W1\",\"batteryLevel\":\"80\",\"wearState\":"
                            "\"worn\",\"firmwareVersion\":\"1.2.3\",\"network\":{\"type\":\"4G\"}}",
                            &d, &msg), 0);
    assert_string_equal(d.device_sn, "W1");
    assert_int_equal(d.ts_ms, NOW_MS);
    assert_int_equal(d.battery_level, 80);
    assert_string_equal(d.wear_state, "worn");
    assert_string_equal(d.firmware_version, "1.2.3");
    assert_non_null(strstr(d.info, "\"network\":{\"type\":\"4G\"}"));
    rep_device_cleanup(&d);
    assert_int_equal(device("{\"deviceSn\":\"W2\",\"timestamp\":1700000000}", &d, &msg), 0);
    assert_int_equal(d.battery_level, -1);
    assert_int_equal(d.ts_ms, 1700000000000LL);
    rep_device_cleanup(&d);
}

static void test_device_report_rejections(void **state)
{
    const char *msg;
    rep_device d;

    (void)state;
    assert_int_equal(device("[1]", &d, &msg), LJ_EINVAL);
    assert_int_equal(device("{\"batteryLevel\":5}", &d, &msg), LJ_EINVAL);
    assert_non_null(strstr(msg, "SerialNumber"));
    assert_int_equal(device("{\"SerialNumber\":\"W 1\"}", &d, &msg), LJ_EINVAL);
    assert_int_equal(device("{\"SerialNumber\":\"W1\",\"batteryLevel\":101}", &d, &msg),
                     LJ_EINVAL);
    assert_non_null(strstr(msg, "batteryLevel"));
    assert_int_equal(device("{\"SerialNumber\":\"W1\",\"batteryLevel\":\"x\"}", &d, &msg),
                     LJ_EINVAL);
    assert_int_equal(device("{\"SerialNumber\":\"W1\",\"timestamp\":\"soon\"}", &d, &msg),
                     LJ_EINVAL);
    assert_int_equal(device("{\"SerialNumber\":\"W1\",\"wearState\":5}", &d, &msg), LJ_EINVAL);
    assert_int_equal(device("{\"SerialNumber\":\"W1\"", &d, &msg), LJ_EPARSE);
}

static void test_event_is_read(void **state)
{
    const char *msg;
    rep_event e;

    (void)state;
    assert_int_equal(event("{\"id\":\"W1\",\"eventType\":\"SOS\",\"timestamp\":"
                           "\"2025-06-15 15:06:40\",\"lat\":22.5}", &e, &msg), 0);
    assert_string_equal(e.device_sn, "W1");
    assert_string_equal(e.event_type, "SOS");
    assert_int_equal(e.ts_ms, NOW_MS);
    assert_non_null(strstr(e.payload, "\"lat\":22.5"));
    rep_event_cleanup(&e);
    assert_int_equal(event("{\"deviceSn\":\"W1\"}", &e, &msg), LJ_EINVAL);
    assert_non_null(strstr(msg, "eventType"));
    assert_int_equal(event("{\"deviceSn\":\"W1\",\"eventType\":\"A B\"}", &e, &msg), LJ_EINVAL);
    assert_int_equal(event("{\"eventType\":\"SOS\"}", &e, &msg), LJ_EINVAL);
}

static void test_payload_round_trips(void **state)
{
    const char *msg;
    rep_device d;
    rep_device d2;
    rep_event e;
    rep_event e2;
    lj_buf b;

    (void)state;
    assert_int_equal(device("{\"SerialNumber\":\"W1\",\"battery\":7,\"firmware\":\"v\\\"2\"}",
                            &d, &msg), 0);
    lj_buf_init(&b);
    assert_int_equal(rep_device_to_json(&d, &b), 0);
    assert_int_equal(rep_device_from_json(b.data, b.len, &d2), 0);
    assert_string_equal(d2.device_sn, "W1");
    assert_int_equal(d2.battery_level, 7);
    assert_string_equal(d2.firmware_version, "v\"2");
    assert_string_equal(d2.info, d.info);
    assert_int_equal(d2.ts_ms, d.ts_ms);
    rep_device_cleanup(&d);
    rep_device_cleanup(&d2);
    lj_buf_reset(&b);
    assert_int_equal(event("{\"deviceSn\":\"W1\",\"eventType\":\"FALL_DOWN\"}", &e, &msg), 0);
    assert_int_equal(rep_event_to_json(&e, &b), 0);
    assert_int_equal(rep_event_from_json(b.data, b.len, &e2), 0);
    assert_string_equal(e2.event_type, "FALL_DOWN");
    assert_string_equal(e2.payload, e.payload);
    rep_event_cleanup(&e);
    rep_event_cleanup(&e2);
    lj_buf_cleanup(&b);
    assert_int_equal(rep_event_from_json("{\"device_sn\":\"W1\",\"ts\":1}", 27, &e2), LJ_EPARSE);
    assert_int_equal(rep_device_from_json("{}", 2, &d2), LJ_EPARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_report_is_read_and_kept_whole),
        cmocka_unit_test(test_device_report_rejections),
        cmocka_unit_test(test_event_is_read),
        cmocka_unit_test(test_payload_round_trips),
    };

    return cmocka_run_group_tests_name("report", tests, NULL, NULL);
}
