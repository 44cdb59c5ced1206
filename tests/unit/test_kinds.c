/* The table of stream kinds (kinds.h): complete rows, and for each kind a
 * value survives encode -> decode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "kinds.h"

static const rec_opts opts = {1000, 32, 0, 1750000000000LL};

static void test_every_row_is_complete(void **state)
{
    int k;

    (void)state;
    for (k = 0; k < STREAM_KINDS; k++) {
        const kind_ops *o = kind_get((stream_kind)k);
        char name[STREAM_NAME_MAX];

        assert_non_null(o->key);
        assert_non_null(o->what);
        assert_non_null(o->undecodable);
        assert_non_null(o->encode);
        assert_non_null(o->decode);
        assert_non_null(o->device_sn);
        assert_non_null(o->store);
        assert_non_null(o->cleanup);
        /* streams.h reads its names from this row */
        stream_name(name, sizeof(name), "", (stream_kind)k);
        assert_string_equal(name, o->stream);
        stream_group(name, sizeof(name), "", (stream_kind)k);
        assert_string_equal(name, o->group);
        assert_string_equal(stream_message_type((stream_kind)k), o->type);
    }
    /* reports are parsed through the table; health uploads have their own shapes */
    assert_null(kind_get(STREAM_HEALTH)->parse);
    assert_non_null(kind_get(STREAM_DEVICE)->parse);
    assert_non_null(kind_get(STREAM_EVENT)->parse);
    assert_int_equal(kind_get(STREAM_HEALTH)->partitioned, 1);
    assert_int_equal(kind_get(STREAM_DEVICE)->partitioned, 0);
    assert_string_equal(kind_get(STREAM_DEVICE)->what, "device info");
    assert_string_equal(kind_get(STREAM_EVENT)->what, "event");
}

/* parse (or the records' own JSON), encode, decode: same device, same data. */
static void round_trip(stream_kind kind, const char *body)
{
    const kind_ops *o = kind_get(kind);
    const char *msg = NULL;
    kind_value in;
    kind_value out;
    lj_buf p1;
    lj_buf p2;

    lj_buf_init(&p1);
    lj_buf_init(&p2);
    memset(&in, 0, sizeof(in));
    if (o->parse) {
        assert_int_equal(o->parse(body, strlen(body), &opts, &in, &msg), 0);
        assert_int_equal(o->encode(&in, &p1), 0);
    } else {
        assert_int_equal(lj_buf_puts(&p1, body), 0);
    }
    assert_int_equal(o->decode(p1.data, p1.len, "b-1", &out), 0);
    assert_string_equal(o->device_sn(&out), "W1");
    assert_int_equal(o->encode(&out, &p2), 0);
    if (o->parse)
        assert_int_equal(p1.len, p2.len);
    if (kind == STREAM_HEALTH)
        assert_string_equal(out.health.batch_id, "b-1");
    if (o->parse)
        o->cleanup(&in);
    o->cleanup(&out);
    lj_buf_cleanup(&p1);
    lj_buf_cleanup(&p2);
}

static void test_values_survive_encode_and_decode(void **state)
{
    (void)state;
    round_trip(STREAM_DEVICE, "{\"SerialNumber\":\"W1\",\"batteryLevel\":80}");
    round_trip(STREAM_EVENT, "{\"deviceSn\":\"W1\",\"eventType\":\"SOS\"}");
    round_trip(STREAM_HEALTH,
               "[{\"device_sn\":\"W1\",\"ts\":1700000000000,\"source_method\":\"api\"}]");
}

static void test_undecodable_payloads_are_refused(void **state)
{
    int k;

    (void)state;
    for (k = 0; k < STREAM_KINDS; k++) {
        kind_value v;

        assert_int_not_equal(kind_get((stream_kind)k)->decode("{\"x\":", 5, NULL, &v), 0);
        assert_int_not_equal(kind_get((stream_kind)k)->decode("[]", 2, NULL, &v), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_row_is_complete),
        cmocka_unit_test(test_values_survive_encode_and_decode),
        cmocka_unit_test(test_undecodable_payloads_are_refused),
    };

    return cmocka_run_group_tests_name("kinds", tests, NULL, NULL);
}
