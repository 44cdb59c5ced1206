#include "streams.h"

#include <stdio.h>
#include <stdlib.h>

#include "kinds.h"     /* the names are columns of the one table of kinds */

void stream_name(char *out, size_t outlen, const char *prefix, stream_kind kind)
{
    snprintf(out, outlen, "%s%s", prefix ? prefix : "", kind_get(kind)->stream);
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
