#include "streams.h"

#include <stdio.h>

static const struct {
    const char *stream;
    const char *group;
    const char *type;
} kinds[STREAM_KINDS] = {
    [STREAM_HEALTH] = {"health_data_stream", "health_processors", "health_data"},
    [STREAM_DEVICE] = {"device_info_stream", "device_processors", "device_info"},
    [STREAM_EVENT] = {"common_event_stream", "event_processors", "common_event"},
};

void stream_name(char *out, size_t outlen, const char *prefix, stream_kind kind)
{
    snprintf(out, outlen, "%s%s", prefix ? prefix : "", kinds[kind].stream);
}

void stream_group(char *out, size_t outlen, const char *prefix, stream_kind kind)
{
    snprintf(out, outlen, "%s%s", prefix ? prefix : "", kinds[kind].group);
}

const char *stream_message_type(stream_kind kind)
{
    return kinds[kind].type;
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
