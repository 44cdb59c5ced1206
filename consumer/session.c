#include "session.h"

#include <stdio.h>
#include <time.h>

int64_t session_clock_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void session_set_read(session *s, session_phase phase, const char *after)
{
    s->read.phase = phase;
    if (phase == SESSION_READ_NEW)
        after = ">";
    snprintf(s->read.after, sizeof(s->read.after), "%s", after ? after : "0");
}

const char *session_read_id(const session *s)
{
    return s->read.after;
}

redisReply *session_command(session *s, int argc, const char **argv)
{
    return rconn_command(s->redis, s->stream, argc, argv);
}
