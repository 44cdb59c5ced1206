#include "rds.h"

#include <stdio.h>
#include <string.h>


redisContext *rds_connect(const char *host, int port, const char *password, int connect_ms,
                          int timeout_ms, char *err, size_t errlen)
{
    struct timeval ctv = {connect_ms / 1000, (connect_ms % 1000) * 1000};
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(host, port, ctv);
    redisReply *r;

    if (c == NULL || c->err) {
        snprintf(err, errlen, "%s", c ? c->errstr : "out of memory");
        goto fail;
    }
    /* The command timeout is a socket option, apart from the connect's. */
    if (timeout_ms == 0)
        tv = (struct timeval){0, 0};
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(err, errlen, "cannot set timeout");
        goto fail;
    }
    if (password && *password) {
        const char *argv[] = {"AUTH", password};

        r = rds_command(c, 2, argv);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "AUTH refused");
            if (r)
                freeReplyObject(r);
            goto fail;
        }
        freeReplyObject(r);
    }
    return c;
fail:
    if (c)
        redisFree(c);
    return NULL;
}

redisReply *rds_command(redisContext *c, int argc, const char **argv)
{
    return redisCommandArgv(c, argc, argv, NULL);   /* NULL lengths: hiredis uses strlen */
}

const redisReply *rds_map_get(const redisReply *m, const char *key)
{
    size_t i;

    if (m == NULL || m->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (i = 0; i + 1 < m->elements; i += 2)
        if (m->element[i]->type == REDIS_REPLY_STRING && strcmp(m->element[i]->str, key) == 0)
            return m->element[i + 1];
    return NULL;
}

long long rds_map_int(const redisReply *m, const char *key)
{
    const redisReply *v = rds_map_get(m, key);

    return v && v->type == REDIS_REPLY_INTEGER ? v->integer : -1;
}
