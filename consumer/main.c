/* ljwx-consumer -- consumer-group workers of ljwx-ingest (SPEC §5).
 *
 * Starts --workers threads on the health stream, --device-workers on the
 * device info stream and --event-workers on the event stream (as many on
 * each shard of them, --stream-shards), each a worker with its own
 * connections, and a status port (/health, /metrics). The
 * main thread only waits for SIGINT/SIGTERM (blocked in every thread and
 * taken with sigwait), then asks the workers to stop after their batch in
 * flight and joins them: exit 0, nothing acknowledged that was not
 * committed.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "partition.h"
#include "pg.h"
#include "status.h"
#include "stopsig.h"
#include "streams.h"
#include "loop.h"

typedef struct fleet {
    worker *workers;
    int n;
} fleet;

typedef struct stat_def {
    size_t offset;
    const char *name;
    const char *type;
    const char *help;
} stat_def;

#define STAT(field, name, type, help) {offsetof(worker_stats, field), name, type, help}

/* Every figure a worker keeps, as exported (counters are atomic_ullong,
 * gauges atomic_llong). */
static const stat_def stats[] = {
    STAT(batches, "ljwx_consumer_batches_total", "counter", "Batches committed and acknowledged."),
    STAT(entries_acked, "ljwx_consumer_entries_acked_total", "counter",
         "Stream entries acknowledged."),
    STAT(rows_inserted, "ljwx_consumer_rows_inserted_total", "counter", "Rows inserted."),
    STAT(duplicates_skipped, "ljwx_consumer_duplicates_skipped_total", "counter",
         "Records skipped because they were already stored."),
    STAT(dead_lettered, "ljwx_consumer_dead_lettered_total", "counter",
         "Entries moved to the dead-letter stream."),
    STAT(entries_gone, "ljwx_consumer_entries_gone_total", "counter",
         "Pending entries found trimmed, acknowledged without storing."),
    STAT(claimed, "ljwx_consumer_claimed_total", "counter",
         "Entries taken over from other consumers."),
    STAT(unbound_records, "ljwx_consumer_unbound_records_total", "counter",
         "Records of devices bound to no user."),
    STAT(alerts_raised, "ljwx_consumer_alerts_total", "counter", "Alerts raised."),
    STAT(retries, "ljwx_consumer_retries_total", "counter",
         "Batches that failed and are read again."),
    STAT(partitions_dropped, "ljwx_consumer_partitions_dropped_total", "counter",
         "Health partitions dropped by retention (--retention-months), each audited."),
    STAT(retention_failures, "ljwx_consumer_retention_failures_total", "counter",
         "Retention runs that failed (archive not written, drop refused): nothing dropped."),
    STAT(lag, "ljwx_consumer_group_lag", "gauge",
         "Entries of the stream not yet delivered to the group (-1: unknown)."),
    STAT(pending, "ljwx_consumer_group_pending", "gauge",
         "Entries delivered to the group and not acknowledged."),
    STAT(length, "ljwx_consumer_stream_length", "gauge", "Entries in the stream."),
    STAT(batch_count, "ljwx_consumer_batch_count", "gauge",
         "COUNT of the worker's next XREADGROUP (adaptive: --batch-min .. --batch-size)."),
    STAT(partitions_ahead, "ljwx_consumer_partitions_ahead", "gauge",
         "Months after the current one whose health partition exists, counted hourly"
         " (-1: unknown, or a stream kind without partitions)."),
};

static int sharded(const worker *w)
{
    return stream_tagged((unsigned)w->cfg->stream_shards, w->cfg->redis_cluster[0] != '\0');
}

/* worker, stream (one shard: its name, as before; sharded: the plain name)
 * and shard labels. */
static void labels_of(const worker *w, char *out, size_t len)
{
    char stream[STREAM_NAME_MAX];

    if (!sharded(w)) {
        worker_stream(w, stream, sizeof(stream));
        snprintf(out, len, "worker=\"%d\",stream=\"%s\"", w->index, stream);
        return;
    }
    stream_name(stream, sizeof(stream), w->cfg->stream_prefix, w->kind);
    snprintf(out, len, "worker=\"%d\",stream=\"%s\",shard=\"%u\"", w->index, stream,
             w->shard);
}

/* The figures of a stream that are its shards' own (not a worker's): read
 * by every worker of a shard, summed over shards in ljwx_consumer_stream_sum. */
static const struct {
    size_t offset;
    const char *figure;
} shard_figures[] = {
    {offsetof(worker_stats, length), "length"},
    {offsetof(worker_stats, lag), "group_lag"},
    {offsetof(worker_stats, pending), "group_pending"},
};

/* The sum over the shards of 'kind' of one figure, each shard's taken from
 * its first worker here; -1 when one is unknown; 0 rows: no such worker. */
static long long shard_sum(const fleet *f, stream_kind kind, size_t offset, int *seen)
{
    unsigned char done[STREAM_SHARDS_MAX] = {0};
    long long sum = 0;
    int i;

    *seen = 0;
    for (i = 0; i < f->n; i++) {
        const worker *w = &f->workers[i];
        long long v;

        if (w->kind != kind || w->shard >= STREAM_SHARDS_MAX || done[w->shard])
            continue;
        done[w->shard] = 1;
        v = atomic_load((const atomic_llong *)(const void *)((const char *)&w->stats + offset));
        sum = sum < 0 || v < 0 ? -1 : sum + v;
        *seen = 1;
    }
    return sum;
}

/* ljwx_consumer_stream_sum{stream="<plain name>",figure=..}: every
 * stream's length, lag and pending summed over its shards. */
static void render_sums(lj_buf *out, const fleet *f)
{
    char labels[STREAM_NAME_MAX + 64];
    char stream[STREAM_NAME_MAX];
    size_t d;
    int seen;
    int k;

    if (f->n == 0)
        return;
    metrics_write_head(out, "ljwx_consumer_stream_sum", "gauge",
                       "A stream's figure summed over its shards (each read by this "
                       "process's first worker of the shard; -1: unknown).");
    for (k = 0; k < STREAM_KINDS; k++) {
        stream_name(stream, sizeof(stream), f->workers[0].cfg->stream_prefix, (stream_kind)k);
        for (d = 0; d < sizeof(shard_figures) / sizeof(shard_figures[0]); d++) {
            long long v = shard_sum(f, (stream_kind)k, shard_figures[d].offset, &seen);

            if (!seen)
                continue;
            snprintf(labels, sizeof(labels), "stream=\"%s\",figure=\"%s\"", stream,
                     shard_figures[d].figure);
            metrics_write_value(out, "ljwx_consumer_stream_sum", labels, (double)v);
        }
    }
}

static double stat_value(const worker *w, const stat_def *d)
{
    const char *p = (const char *)&w->stats + d->offset;

    if (strcmp(d->type, "gauge") == 0)
        return (double)atomic_load((const atomic_llong *)(const void *)p);
    return (double)atomic_load((const atomic_ullong *)(const void *)p);
}

static int render_metrics(lj_buf *out, void *arg)
{
    const fleet *f = arg;
    char labels[STREAM_NAME_MAX + 64];
    size_t d;
    int i;

    for (d = 0; d < sizeof(stats) / sizeof(stats[0]); d++) {
        metrics_write_head(out, stats[d].name, stats[d].type, stats[d].help);
        for (i = 0; i < f->n; i++) {
            labels_of(&f->workers[i], labels, sizeof(labels));
            metrics_write_value(out, stats[d].name, labels, stat_value(&f->workers[i], &stats[d]));
        }
    }
    metrics_write_head(out, "ljwx_consumer_batch_seconds", "histogram",
                       "Time from a batch's arrival to its acknowledgement.");
    for (i = 0; i < f->n; i++) {
        labels_of(&f->workers[i], labels, sizeof(labels));
        metrics_write_hist(out, "ljwx_consumer_batch_seconds", labels,
                           &f->workers[i].stats.batch_seconds);
    }
    render_sums(out, f);
    return 200;
}

static int render_health(lj_buf *out, void *arg)
{
    const fleet *f = arg;
    int redis = 1;
    int pg = 1;
    int i;

    for (i = 0; i < f->n; i++) {
        redis &= atomic_load(&f->workers[i].stats.redis_up);
        pg &= atomic_load(&f->workers[i].stats.pg_up);
    }
    lj_buf_printf(out, "{\"status\":\"%s\",\"workers\":%d,\"redis\":%s,\"postgres\":%s}",
                  redis && pg ? "healthy" : "degraded", f->n, redis ? "true" : "false",
                  pg ? "true" : "false");
    return redis && pg ? 200 : 503;
}

/* Starts the workers of every stream, on the shards 'served'; returns how
 * many run. */
static int start_workers(const lj_config *cfg, const unsigned char *served, atomic_int *stop,
                         worker *workers, pthread_t *threads)
{
    const int per_kind[STREAM_KINDS] = {cfg->workers, cfg->device_workers, cfg->event_workers};
    int n = 0;
    int k, i, shard;

    for (k = 0; k < STREAM_KINDS; k++) {
        for (i = 0; i < per_kind[k] * cfg->stream_shards; i++) {
            shard = i % cfg->stream_shards;
            if (!served[shard])
                continue;
            worker_init(&workers[n], n, (stream_kind)k, (unsigned)shard, cfg, stop);
            if (pthread_create(&threads[n], NULL, loop_thread, &workers[n]) != 0) {
                log_error("main", "cannot start worker %d", n);
                atomic_store(stop, 1);
                return n;
            }
            n++;
        }
    }
    return n;
}

/* --print-keys: every Redis key name and field (streams.h) as JSON, for
 * the tools in scripts/ (one list). */
static int print_keys(void)
{
    lj_buf out;
    int rc;

    lj_buf_init(&out);
    rc = stream_keys_json(&out) || lj_buf_puts(&out, "\n");
    if (rc == 0)
        fwrite(out.data, 1, out.len, stdout);
    lj_buf_cleanup(&out);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    lj_config cfg;
    atomic_int stop = 0;
    worker *workers;
    pthread_t *threads;
    status_server *status = NULL;
    fleet fl;
    sigset_t sigs;
    char err[256];
    unsigned char served[STREAM_SHARDS_MAX];
    int total;
    int rc;
    int i;

    if (argc == 2 && strcmp(argv[1], "--print-keys") == 0)
        return print_keys();
    rc = cfg_load(&cfg, CFG_CONSUMER, argc, argv, err, sizeof(err));
    if (rc == 1) {
        cfg_print_help(stdout, CFG_CONSUMER, "ljwx-consumer");
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "ljwx-consumer: %s\n", err);
        return 2;
    }
    log_init("consumer", log_level_parse(cfg.log_level) < 0 ? LOG_INFO
                                                             : log_level_parse(cfg.log_level));
    pg_init(&cfg);  /* PostgreSQL timeouts for every worker's connection (pg.h) */
    part_window_set(cfg.partition_window_months, cfg.partition_new_months);
    stopsig_block(&sigs);   /* inherited by every worker */

    if (stream_shard_set(cfg.serve_shards, (unsigned)cfg.stream_shards, served, err,
                         sizeof(err)) != 0) {
        fprintf(stderr, "ljwx-consumer: %s\n", err);
        return 2;
    }
    if (cfg.serve_shards[0])
        log_info("main", "serving stream shards %s of %d", cfg.serve_shards, cfg.stream_shards);
    total = (cfg.workers + cfg.device_workers + cfg.event_workers) * cfg.stream_shards;
    workers = calloc((size_t)total, sizeof(*workers));
    threads = calloc((size_t)total, sizeof(*threads));
    if (workers == NULL || threads == NULL) {
        fprintf(stderr, "ljwx-consumer: out of memory\n");
        return 1;
    }
    fl.workers = workers;
    fl.n = start_workers(&cfg, served, &stop, workers, threads);
    if (cfg.status_port >= 0)
        status = status_start(cfg.status_host, cfg.status_port, render_metrics, render_health,
                              &fl);
    stopsig_wait(&sigs, &stop, "after the batches in flight");
    for (i = 0; i < fl.n; i++)
        pthread_join(threads[i], NULL);
    status_stop(status);
    free(threads);
    free(workers);
    log_info("main", "stopped");
    return 0;
}
