#include "worker.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

void worker_init(worker *w, int index, stream_kind kind, unsigned shard, const lj_config *cfg,
                 const atomic_int *stop)
{
    memset(w, 0, sizeof(*w));
    w->index = index;
    w->kind = kind;
    w->shard = shard;
    w->cfg = cfg;
    w->stop = stop;
    atomic_store(&w->stats.lag, -1);
    atomic_store(&w->stats.partitions_ahead, -1);
    worker_host(w->host, sizeof(w->host));
    snprintf(w->name, sizeof(w->name), "%s:%d:%d", w->host, (int)getpid(), index);
}

void worker_stream(const worker *w, char *out, size_t len)
{
    stream_shard_name(out, len, w->cfg->stream_prefix, w->kind, w->shard,
                      stream_tagged((unsigned)w->cfg->stream_shards, w->cfg->redis_cluster[0] != 0));
}

/* The first line of file 'path' into 'out' ("" when unreadable). */
static void read_line(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");

    out[0] = '\0';
    if (f && fgets(out, (int)len, f) == NULL)
        out[0] = '\0';
    if (f)
        fclose(f);
    out[strcspn(out, "\n")] = '\0';
}

void worker_host(char *out, size_t len)
{
    char host[64];
    char key[160];
    char boot[64];
    char ns[64];
    ssize_t n;

    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    host[strcspn(host, ":")] = '\0';   /* ':' separates the name's parts */
    read_line("/proc/sys/kernel/random/boot_id", boot, sizeof(boot));
    if ((n = readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1)) < 0)
        n = 0;
    ns[n] = '\0';
    snprintf(key, sizeof(key), "%s|%s", boot, ns);
    snprintf(out, len, "%s~%08x", host, stream_hash(key, strlen(key)));
}

void worker_redis_opts(const worker *w, rconn_opts *o)
{
    const lj_config *cfg = w->cfg;

    *o = (rconn_opts){.host = cfg->redis_host, .port = cfg->redis_port,
                      .seeds = cfg->redis_cluster, .password = cfg->redis_password,
                      .connect_ms = cfg->redis_connect_ms, .timeout_ms = cfg->block_ms + 5000};
}

redisReply *worker_xreadgroup(rconn *c, const worker *w, const char *group, const char *stream,
                              int count, const char *id)
{
    char cnt[16];
    char block[16];
    const char *argv[] = {"XREADGROUP", "GROUP", group, w->name, "COUNT", cnt,
                          "BLOCK", block, "STREAMS", stream, id};

    snprintf(cnt, sizeof(cnt), "%d", count);
    snprintf(block, sizeof(block), "%d", w->cfg->block_ms);
    return rconn_command(c, stream, 11, argv);
}
