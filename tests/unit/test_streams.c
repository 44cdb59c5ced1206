/* Stream naming and the device hash used for routing and shards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "streams.h"

static void test_names_carry_the_prefix(void **state)
{
    char out[STREAM_NAME_MAX];

    (void)state;
    stream_name(out, sizeof(out), "", STREAM_HEALTH);
    assert_string_equal(out, "health_data_stream");
    stream_name(out, sizeof(out), "staging:", STREAM_DEVICE);
    assert_string_equal(out, "staging:device_info_stream");
    stream_name(out, sizeof(out), NULL, STREAM_EVENT);
    assert_string_equal(out, "common_event_stream");
    stream_group(out, sizeof(out), "", STREAM_HEALTH);
    assert_string_equal(out, "health_processors");
    stream_group(out, sizeof(out), "p:", STREAM_DEVICE);
    assert_string_equal(out, "p:device_processors");
    stream_group(out, sizeof(out), "", STREAM_EVENT);
    assert_string_equal(out, "event_processors");
    assert_string_equal(stream_message_type(STREAM_HEALTH), "health_data");
}

static void test_hash_is_fnv1a(void **state)
{
    (void)state;
    /* Published FNV-1a 32-bit test vectors: the value is part of the
     * routing contract between producer instances. */
    assert_int_equal(stream_hash("", 0), 0x811c9dc5u);
    assert_int_equal(stream_hash("a", 1), 0xe40c292cu);
    assert_int_equal(stream_hash("foobar", 6), 0xbf9cf968u);
}

static void test_hash_spreads_serials(void **state)
{
    char sn[32];
    int buckets[10] = {0};
    int i;

    (void)state;
    for (i = 0; i < 10000; i++) {
        int n = snprintf(sn, sizeof(sn), "WATCH-%06d", i);
        buckets[stream_hash(sn, (size_t)n) % 10000 / 1000]++;
    }
    for (i = 0; i < 10; i++) {
        assert_true(buckets[i] > 800);
        assert_true(buckets[i] < 1200);
    }
}

static void test_ids_compare_numerically(void **state)
{
    (void)state;
    assert_true(stream_id_cmp("1-0", "2-0") < 0);
    assert_true(stream_id_cmp("10-0", "9-5") > 0);     /* not as strings */
    assert_true(stream_id_cmp("5-10", "5-9") > 0);
    assert_int_equal(stream_id_cmp("5-3", "5-3"), 0);
    assert_int_equal(stream_id_cmp("x", "5-3"), 0);
    assert_int_equal(stream_id_cmp("5-", "5-3"), 0);
    assert_int_equal(stream_id_cmp("5-3z", "5-3"), 0);
}

/* The keys beside a stream start with its name, so a hash tag in the name
 * puts them in its cluster slot (SPEC §3). */
static void test_side_keys_share_the_stream_name(void **state)
{
    char key[STREAM_KEY_MAX];

    (void)state;
    stream_side_key(key, sizeof(key), "health_data_stream:{3}", STREAM_SIDE_DEAD);
    assert_string_equal(key, "health_data_stream:{3}:dead");
    stream_side_key(key, sizeof(key), "p:health_data_stream", STREAM_SIDE_ATTEMPTS);
    assert_string_equal(key, "p:health_data_stream:attempts");
    stream_side_key(key, sizeof(key), "health_data_stream", STREAM_SIDE_COUNTS);
    assert_string_equal(key, "health_data_stream:counts");
    stream_alert_name(key, sizeof(key), "staging:");
    assert_string_equal(key, "staging:alert_stream");
    stream_alert_name(key, sizeof(key), NULL);
    assert_string_equal(key, "alert_stream");
}

/* The gray-release keys carry the prefix and sit side by side, so one MGET
 * reads both (producer/gray.c). */
static void test_control_keys_carry_the_prefix(void **state)
{
    char key[STREAM_KEY_MAX];

    (void)state;
    stream_ratio_key(key, sizeof(key), "staging:");
    assert_string_equal(key, "staging:stream_traffic_ratio");
    stream_ratio_key(key, sizeof(key), NULL);
    assert_string_equal(key, "stream_traffic_ratio");
    stream_legacy_key(key, sizeof(key), "staging:");
    assert_string_equal(key, "staging:stream_legacy_path");
    stream_legacy_key(key, sizeof(key), "");
    assert_string_equal(key, "stream_legacy_path");
}

static void test_shard_set_lists_and_ranges(void **state)
{
    unsigned char set[16];
    char err[128];
    static const char *const bad[] = {"x", "1,", ",1", "1,,2", "3-1", "-1", " 1", "1 ",
                                      "8", "0-8", "1,1", "0-2,2", "9999999999999999999"};
    size_t i;

    (void)state;
    assert_int_equal(stream_shard_set("", 8, set, err, sizeof(err)), 0);
    assert_memory_equal(set, "\1\1\1\1\1\1\1\1", 8);
    assert_int_equal(stream_shard_set("0,3", 8, set, err, sizeof(err)), 0);
    assert_memory_equal(set, "\1\0\0\1\0\0\0\0", 8);
    assert_int_equal(stream_shard_set("2-4,7", 8, set, err, sizeof(err)), 0);
    assert_memory_equal(set, "\0\0\1\1\1\0\0\1", 8);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(stream_shard_set(bad[i], 8, set, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "--serve-shards"));
    }
    assert_int_equal(stream_shard_set("8", 9, set, err, sizeof(err)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_carry_the_prefix),
        cmocka_unit_test(test_hash_is_fnv1a),
        cmocka_unit_test(test_hash_spreads_serials),
        cmocka_unit_test(test_ids_compare_numerically),
        cmocka_unit_test(test_side_keys_share_the_stream_name),
        cmocka_unit_test(test_control_keys_carry_the_prefix),
        cmocka_unit_test(test_shard_set_lists_and_ranges),
    };

    return cmocka_run_group_tests_name("streams", tests, NULL, NULL);
}
