#include "streams.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "kinds.h"     /* the names are columns of the one table of kinds */

void stream_name(char *out, size_t outlen, const char *prefix, stream_kind kind)
{
    snprintf(out, outlen, "%s%s", prefix ? prefix : "", kind_get(kind)->stream);
}

int stream_tagged(unsigned nshards, int cluster)
{
    return nshards > 1 || cluster;
}

void stream_shard_name(char *out, size_t outlen, const char *prefix, stream_kind kind,
                       unsigned shard, int tagged)
{
    if (!tagged)
        stream_name(out, outlen, prefix, kind);
    else
        snprintf(out, outlen, "%s%s:{%u}", prefix ? prefix : "", kind_get(kind)->stream, shard);
}

unsigned stream_shard_of(const char *sn, size_t n, unsigned nshards)
{
    uint32_t h = stream_hash(sn, n) ^ 0x9e3779b9u;

    if (nshards <= 1)
        return 0;
    /* The murmur3 finaliser: every output bit depends on every input bit,
     * so the shard says nothing about hash mod 10000 (the gray position). */
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return (unsigned)(((uint64_t)h * nshards) >> 32);
}

/* Reads a shard number at '*p' (digits only), advancing '*p'; -1 if none. */
static long read_shard(const char **p)
{
    char *end;
    long v;

    if (**p < '0' || **p > '9')
        return -1;
    v = strtol(*p, &end, 10);
    *p = end;
    return v > STREAM_SHARDS_MAX ? STREAM_SHARDS_MAX : v;
}

int stream_shard_set(const char *spec, unsigned nshards, unsigned char *set, char *err,
                     size_t errlen)
{
    const char *p = spec;
    unsigned k;

    memset(set, *spec ? 0 : 1, nshards);
    while (*p) {
        long from = read_shard(&p);
        long to = from;

        if (*p == '-') {
            p++;
            to = read_shard(&p);
        }
        if (from < 0 || to < from || (*p && *p != ',') || (*p == ',' && !p[1])) {
            snprintf(err, errlen, "--serve-shards \"%s\": a list of shards K or K-L, "
                                  "comma-separated", spec);
            return -1;
        }
        if ((unsigned long)to >= nshards) {
            snprintf(err, errlen, "--serve-shards: shard %ld is not below --stream-shards %u",
                     to, nshards);
            return -1;
        }
        for (k = (unsigned)from; k <= (unsigned)to; k++) {
            if (set[k]) {
                snprintf(err, errlen, "--serve-shards: shard %u named twice", k);
                return -1;
            }
            set[k] = 1;
        }
        p += *p == ',';
    }
    return 0;
}

void stream_group(char *out, size_t outlen, const char *prefix, stream_kind kind)
{
    snprintf(out, outlen, "%s%s", prefix ? prefix : "", kind_get(kind)->group);
}

void stream_side_key(char *out, size_t outlen, const char *stream, stream_side side)
{
    static const char *const suffix[STREAM_SIDES] = {
        [STREAM_SIDE_DEAD] = ":dead",
        [STREAM_SIDE_ATTEMPTS] = ":attempts",
        [STREAM_SIDE_COUNTS] = ":counts",
    };

    snprintf(out, outlen, "%s%s", stream, suffix[side]);
}

void stream_alert_name(char *out, size_t outlen, const char *prefix)
{
    snprintf(out, outlen, "%salert_stream", prefix ? prefix : "");
}

void stream_ratio_key(char *out, size_t outlen, const char *prefix)
{
    snprintf(out, outlen, "%sstream_traffic_ratio", prefix ? prefix : "");
}

void stream_legacy_key(char *out, size_t outlen, const char *prefix)
{
    snprintf(out, outlen, "%sstream_legacy_path", prefix ? prefix : "");
}

const char *stream_message_type(stream_kind kind)
{
    return kind_get(kind)->type;
}

uint32_t stream_hash(const char *sn, size_t n)
{
    uint32_t h = 2166136261u;
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= (unsigned char)sn[i];
        h *= 16777619u;
    }
    return h;
}

static int parse_id(const char *id, unsigned long long *ms, unsigned long long *seq)
{
    char *end;

    if (*id < '0' || *id > '9')
        return -1;
    *ms = strtoull(id, &end, 10);
    if (*end != '-' || end[1] < '0' || end[1] > '9')
        return -1;
    *seq = strtoull(end + 1, &end, 10);
    return *end == '\0' ? 0 : -1;
}

int stream_id_cmp(const char *a, const char *b)
{
    unsigned long long ams;
    unsigned long long aseq;
    unsigned long long bms;
    unsigned long long bseq;

    if (parse_id(a, &ams, &aseq) != 0 || parse_id(b, &bms, &bseq) != 0)
        return 0;
    if (ams != bms)
        return ams < bms ? -1 : 1;
    return aseq < bseq ? -1 : aseq > bseq;
}

/* "name":"value" pairs of 'n' strings (name, value, ...), comma-separated. */
static int json_pairs(lj_buf *out, const char *const *kv, size_t n)
{
    size_t i;
    int rc = 0;

    for (i = 0; rc == 0 && i + 1 < n; i += 2)
        rc = lj_buf_printf(out, "%s\"%s\":\"%s\"", i ? "," : "", kv[i], kv[i + 1]);
    return rc;
}

static int kind_keys_json(lj_buf *out, stream_kind k)
{
    char stream[STREAM_NAME_MAX];
    char group[STREAM_NAME_MAX];
    char side[STREAM_SIDES][STREAM_KEY_MAX];
    const char *kv[12];
    int i;

    stream_name(stream, sizeof(stream), "", k);
    stream_group(group, sizeof(group), "", k);
    for (i = 0; i < STREAM_SIDES; i++)
        stream_side_key(side[i], sizeof(side[i]), stream, (stream_side)i);
    kv[0] = "stream", kv[1] = stream;
    kv[2] = "group", kv[3] = group;
    kv[4] = "message_type", kv[5] = stream_message_type(k);
    kv[6] = "dead", kv[7] = side[STREAM_SIDE_DEAD];
    kv[8] = "attempts", kv[9] = side[STREAM_SIDE_ATTEMPTS];
    kv[10] = "counts", kv[11] = side[STREAM_SIDE_COUNTS];
    return lj_buf_printf(out, "\"%s\":{", kind_get(k)->key) || json_pairs(out, kv, 12) ||
           lj_buf_puts(out, "}");
}

int stream_keys_json(lj_buf *out)
{
    static const char *const dead[] = {"reason", STREAM_DEAD_REASON, "id", STREAM_DEAD_ID,
                                       "deliveries", STREAM_DEAD_DELIVERIES,
                                       "consumer", STREAM_DEAD_CONSUMER};
    static const char *const counts[] = {"stored", STREAM_COUNT_STORED,
                                         "duplicate", STREAM_COUNT_DUPLICATE,
                                         "dead", STREAM_COUNT_DEAD, "gone", STREAM_COUNT_GONE,
                                         "batches", STREAM_COUNT_BATCHES,
                                         "errors", STREAM_COUNT_ERRORS};
    static const char *const legacy[] = {"retired", STREAM_LEGACY_RETIRED, "on", STREAM_LEGACY_ON};
    char key[3][STREAM_NAME_MAX];
    const char *kv[6];
    int k;
    int rc;

    stream_alert_name(key[0], sizeof(key[0]), "");
    stream_ratio_key(key[1], sizeof(key[1]), "");
    stream_legacy_key(key[2], sizeof(key[2]), "");
    kv[0] = "alert_stream", kv[1] = key[0];
    kv[2] = "ratio_key", kv[3] = key[1];
    kv[4] = "legacy_key", kv[5] = key[2];
    rc = lj_buf_puts(out, "{\"kinds\":{");
    for (k = 0; rc == 0 && k < STREAM_KINDS; k++)
        rc = (k && lj_buf_puts(out, ",")) || kind_keys_json(out, (stream_kind)k);
    return rc || lj_buf_puts(out, "},") || json_pairs(out, kv, 6) ||
           lj_buf_puts(out, ",\"legacy_values\":{") || json_pairs(out, legacy, 4) ||
           lj_buf_puts(out, "},\"dead_fields\":{") || json_pairs(out, dead, 8) ||
           lj_buf_puts(out, "},\"count_fields\":{") || json_pairs(out, counts, 12) ||
           lj_buf_puts(out, "}}");
}
