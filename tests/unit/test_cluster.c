/* Redis Cluster routing (common/cluster.c) and stream shards (streams.c).
 * The expected slots were read from a real redis-server 7.0 in cluster
 * mode with CLUSTER KEYSLOT. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cluster.h"
#include "streams.h"

static unsigned slot_of(const char *k)
{
    return cluster_key_slot(k, strlen(k));
}

static void test_slots_match_redis(void **state)
{
    (void)state;
    assert_int_equal(cluster_crc16("123456789", 9), 0x31C3);
    assert_int_equal(slot_of("123456789"), 12739);
    assert_int_equal(slot_of("foo"), 12182);
    assert_int_equal(slot_of("bar"), 5061);
    assert_int_equal(slot_of("somekey"), 11058);
    assert_int_equal(slot_of("{user1000}.following"), 3443);
    assert_int_equal(slot_of("foo{}{bar}"), 8363);      /* empty tag: whole key */
    assert_int_equal(slot_of("foo{{bar}}zap"), 4015);   /* tag "{bar" */
    assert_int_equal(slot_of("foo{bar}{zap}"), 5061);   /* first tag: "bar" */
    assert_int_equal(slot_of("{"), 4092);
    assert_int_equal(slot_of("}{x}"), 16287);
    assert_int_equal(slot_of("a{b"), 13340);            /* no '}': whole key */
}

static void test_a_shard_and_its_side_keys_share_a_slot(void **state)
{
    char name[STREAM_NAME_MAX], side[STREAM_KEY_MAX];

    (void)state;
    stream_shard_name(name, sizeof(name), "", STREAM_HEALTH, 0, 6);
    assert_string_equal(name, "health_data_stream:{0}");
    assert_int_equal(slot_of(name), 13907);
    stream_side_key(side, sizeof(side), name, STREAM_SIDE_DEAD);
    assert_string_equal(side, "health_data_stream:{0}:dead");
    assert_int_equal(slot_of(side), slot_of(name));
    stream_side_key(side, sizeof(side), name, STREAM_SIDE_COUNTS);
    assert_int_equal(slot_of(side), slot_of(name));

    stream_shard_name(name, sizeof(name), "p:", STREAM_EVENT, 5, 6);
    assert_string_equal(name, "p:common_event_stream:{5}");
    /* One shard: today's plain name. */
    stream_shard_name(name, sizeof(name), "p:", STREAM_DEVICE, 0, 1);
    assert_string_equal(name, "p:device_info_stream");
}

static void test_shards_spread_independently_of_the_gray_hash(void **state)
{
    enum { N = 6, DEVICES = 12000 };
    unsigned all[N] = {0}, low[N] = {0}, i;
    char sn[32];

    (void)state;
    for (i = 0; i < DEVICES; i++) {
        unsigned k;
        int n = snprintf(sn, sizeof(sn), "CRFTQ23409%06u", i);

        k = stream_shard_of(sn, (size_t)n, N);
        assert_true(k < N);
        assert_int_equal(stream_shard_of(sn, (size_t)n, N), k);    /* stable */
        assert_int_equal(stream_shard_of(sn, (size_t)n, 1), 0);
        all[k]++;
        /* Devices in the lower half of the gray scale (ratio 0.5). */
        if (stream_hash(sn, (size_t)n) % 10000 < 5000)
            low[k]++;
    }
    for (i = 0; i < N; i++) {
        /* Within 10% of an even share, and about half of every shard is on
         * each side of a 0.5 ratio. */
        assert_true(all[i] > DEVICES / N * 9 / 10 && all[i] < DEVICES / N * 11 / 10);
        assert_true(low[i] * 100 > all[i] * 40 && low[i] * 100 < all[i] * 60);
    }
}

static void test_redirects_parse(void **state)
{
    cluster_redirect r;
    const char *moved = "MOVED 3999 127.0.0.1:6381";
    const char *ask = "ASK 16383 ::1:7000";

    (void)state;
    assert_int_equal(cluster_redirect_parse(moved, strlen(moved), &r), CLUSTER_MOVED);
    assert_int_equal(r.slot, 3999);
    assert_string_equal(r.to.host, "127.0.0.1");
    assert_int_equal(r.to.port, 6381);
    assert_int_equal(cluster_redirect_parse(ask, strlen(ask), &r), CLUSTER_ASK);
    assert_int_equal(r.slot, 16383);
    assert_string_equal(r.to.host, "::1");
    assert_int_equal(r.to.port, 7000);
    assert_int_equal(cluster_redirect_parse("TRYAGAIN Multiple keys request during rehashing "
                                            "of slot", 51, &r), CLUSTER_RETRY);
    assert_int_equal(cluster_redirect_parse("CLUSTERDOWN The cluster is down", 31, &r),
                     CLUSTER_RETRY);
    /* Not redirects, or malformed ones: the command's own error. */
    assert_int_equal(cluster_redirect_parse("MOVED 16384 h:1", 15, &r), CLUSTER_NO_REDIRECT);
    assert_int_equal(cluster_redirect_parse("MOVED 12 h:0", 12, &r), CLUSTER_NO_REDIRECT);
    assert_int_equal(cluster_redirect_parse("MOVED 12 h", 10, &r), CLUSTER_NO_REDIRECT);
    assert_int_equal(cluster_redirect_parse("MOVEDX 1 h:1", 12, &r), CLUSTER_NO_REDIRECT);
    assert_int_equal(cluster_redirect_parse("ASKING", 6, &r), CLUSTER_NO_REDIRECT);
    assert_int_equal(cluster_redirect_parse("OOM command not allowed", 23, &r),
                     CLUSTER_NO_REDIRECT);
    assert_int_equal(r.slot, 0);
    /* The length is honoured: no read past it. */
    assert_int_equal(cluster_redirect_parse(moved, 9, &r), CLUSTER_NO_REDIRECT);
}

static void test_seeds_parse(void **state)
{
    cluster_addr a[3];

    (void)state;
    assert_int_equal(cluster_seeds_parse("127.0.0.1:7000,localhost:7001", a, 3), 2);
    assert_string_equal(a[1].host, "localhost");
    assert_int_equal(a[1].port, 7001);
    assert_int_equal(cluster_seeds_parse("", a, 3), -1);
    assert_int_equal(cluster_seeds_parse("h:1,", a, 3), -1);
    assert_int_equal(cluster_seeds_parse("h:1,h:2,h:3,h:4", a, 3), -1);
    assert_int_equal(cluster_seeds_parse("h:70000", a, 3), -1);
    assert_int_equal(cluster_seeds_parse(":1", a, 3), -1);
}

/* Reply builders over static storage, shaped as hiredis builds them. */
static redisReply *int_reply(redisReply *r, long long v)
{
    memset(r, 0, sizeof(*r));
    r->type = REDIS_REPLY_INTEGER;
    r->integer = v;
    return r;
}

static redisReply *str_reply(redisReply *r, const char *s)
{
    memset(r, 0, sizeof(*r));
    r->type = REDIS_REPLY_STRING;
    r->str = (char *)s;
    r->len = strlen(s);
    return r;
}

static redisReply *arr_reply(redisReply *r, redisReply **el, size_t n)
{
    memset(r, 0, sizeof(*r));
    r->type = REDIS_REPLY_ARRAY;
    r->element = el;
    r->elements = n;
    return r;
}

static void test_slot_map_from_cluster_slots(void **state)
{
    static cluster_map m;
    redisReply top, ranges[2], lo[2], hi[2], master[2], replica, host[3], port[3], id[3];
    redisReply *range_el[2][4], *master_el[2][3], *replica_el[3], *top_el[2];
    const cluster_addr self = {"10.0.0.9", 7000};
    int i;

    (void)state;
    /* [0, 8191, ["", 7000, id], ["10.0.0.2", 7003, id]]: the node asked. */
    /* [8192, 16383, ["10.0.0.1", 7001, id]] */
    for (i = 0; i < 2; i++) {
        master_el[i][0] = str_reply(&host[i], i == 0 ? "" : "10.0.0.1");
        master_el[i][1] = int_reply(&port[i], 7000 + i);
        master_el[i][2] = str_reply(&id[i], "abc");
        range_el[i][0] = int_reply(&lo[i], i == 0 ? 0 : 8192);
        range_el[i][1] = int_reply(&hi[i], i == 0 ? 8191 : 16383);
        range_el[i][2] = arr_reply(&master[i], master_el[i], 3);
        top_el[i] = arr_reply(&ranges[i], range_el[i], 3);
    }
    replica_el[0] = str_reply(&host[2], "10.0.0.2");
    replica_el[1] = int_reply(&port[2], 7003);
    replica_el[2] = str_reply(&id[2], "def");
    range_el[0][3] = arr_reply(&replica, replica_el, 3);
    ranges[0].elements = 4;
    arr_reply(&top, top_el, 2);

    assert_int_equal(cluster_map_from_slots(&m, &top, &self), 0);
    assert_int_equal(m.nnodes, 2);      /* masters only */
    assert_string_equal(m.nodes[m.slot_node[0]].host, "10.0.0.9");
    assert_int_equal(m.nodes[m.slot_node[8191]].port, 7000);
    assert_string_equal(m.nodes[m.slot_node[8192]].host, "10.0.0.1");
    assert_int_equal(m.nodes[m.slot_node[16383]].port, 7001);
    assert_int_equal(cluster_map_uncovered(&m), 0);

    /* A hole: slots nobody serves. */
    lo[1].integer = 9000;
    assert_int_equal(cluster_map_from_slots(&m, &top, &self), 0);
    assert_int_equal(cluster_map_uncovered(&m), 9000 - 8192);
    assert_int_equal(m.slot_node[8500], -1);

    /* Out of range and malformed replies are refused. */
    hi[1].integer = 16384;
    assert_int_equal(cluster_map_from_slots(&m, &top, &self), -1);
    hi[1].integer = 16383;
    port[1].integer = 0;
    assert_int_equal(cluster_map_from_slots(&m, &top, &self), -1);
    port[1].integer = 7001;
    assert_int_equal(cluster_map_from_slots(&m, &top, NULL), -1);  /* "" without self */
    assert_int_equal(cluster_map_from_slots(&m, &host[0], &self), -1);
    assert_int_equal(cluster_map_from_slots(&m, NULL, &self), -1);

    /* A MOVED to a master the map does not know adds it, once. */
    assert_int_equal(cluster_map_from_slots(&m, &top, &self), 0);
    {
        const cluster_addr n = {"10.0.0.5", 7005};

        assert_int_equal(cluster_map_node(&m, &n), 2);
        assert_int_equal(cluster_map_node(&m, &n), 2);
        assert_int_equal(cluster_map_node(&m, &self), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots_match_redis),
        cmocka_unit_test(test_a_shard_and_its_side_keys_share_a_slot),
        cmocka_unit_test(test_shards_spread_independently_of_the_gray_hash),
        cmocka_unit_test(test_redirects_parse),
        cmocka_unit_test(test_seeds_parse),
        cmocka_unit_test(test_slot_map_from_cluster_slots),
    };

    return cmocka_run_group_tests_name("cluster", tests, NULL, NULL);
}
