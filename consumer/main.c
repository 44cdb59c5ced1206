/* ljwx-consumer -- consumer-group workers of ljwx-ingest (SPEC §5).
 *
 * Starts --workers threads, each a worker with its own connections. The
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

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "status.h"
#include "worker.h"

typedef struct fleet {
    worker *workers;
    int n;
} fleet;

#define COUNTER(field, name, help) {offsetof(worker_stats, field), name, help}

static const struct {
    size_t offset;
    const char *name;
    const char *help;
} counters[] = {
    COUNTER(batches, "ljwx_consumer_batches_total", "Batches committed and acknowledged."),
    COUNTER(entries_acked, "ljwx_consumer_entries_acked_total", "Stream entries acknowledged."),
    COUNTER(rows_inserted, "ljwx_consumer_rows_inserted_total", "Rows inserted."),
    COUNTER(duplicates_skipped, "ljwx_consumer_duplicates_skipped_total",
            "Records skipped because their (device_sn, ts) was already stored."),
    COUNTER(entries_unreadable, "ljwx_consumer_entries_unreadable_total",
            "Entries whose payload could not be read."),
    COUNTER(unbound_records, "ljwx_consumer_unbound_records_total",
            "Records of devices bound to no user."),
    COUNTER(alerts_raised, "ljwx_consumer_alerts_total", "Alerts raised."),
    COUNTER(retries, "ljwx_consumer_retries_total", "Batches that failed and are retried."),
};

static int render_metrics(const fleet *f, lj_buf *out)
{
    char labels[32];
    size_t c;
    int i;

    for (c = 0; c < sizeof(counters) / sizeof(counters[0]); c++) {
        metrics_write_head(out, counters[c].name, "counter", counters[c].help);
        for (i = 0; i < f->n; i++) {
            const atomic_ullong *v =
                (const atomic_ullong *)((const char *)&f->workers[i].stats + counters[c].offset);

            snprintf(labels, sizeof(labels), "worker=\"%d\"", i);
            metrics_write_value(out, counters[c].name, labels, (double)atomic_load(v));
        }
    }
    metrics_write_head(out, "ljwx_consumer_batch_seconds", "histogram",
                       "Time from a batch's arrival to its acknowledgement.");
    for (i = 0; i < f->n; i++) {
        snprintf(labels, sizeof(labels), "worker=\"%d\"", i);
        metrics_write_hist(out, "ljwx_consumer_batch_seconds", labels,
                           &f->workers[i].stats.batch_seconds);
    }
    return 200;
}

static int render_health(const fleet *f, lj_buf *out)
{
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

static int render(const char *path, lj_buf *out, const char **type, void *arg)
{
    if (strcmp(path, "/metrics") == 0) {
        *type = "text/plain; version=0.0.4";
        return render_metrics(arg, out);
    }
    if (strcmp(path, "/health") == 0)
        return render_health(arg, out);
    lj_buf_puts(out, "{\"status\":\"error\",\"message\":\"no such endpoint\"}");
    return 404;
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
    int sig;
    int rc;
    int i;

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
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);    /* inherited by every worker */
    signal(SIGPIPE, SIG_IGN);

    workers = calloc((size_t)cfg.workers, sizeof(*workers));
    threads = calloc((size_t)cfg.workers, sizeof(*threads));
    if (workers == NULL || threads == NULL) {
        fprintf(stderr, "ljwx-consumer: out of memory\n");
        return 1;
    }
    for (i = 0; i < cfg.workers; i++) {
        worker_init(&workers[i], i, &cfg, &stop);
        if (pthread_create(&threads[i], NULL, worker_thread, &workers[i]) != 0) {
            log_error("main", "cannot start worker %d", i);
            atomic_store(&stop, 1);
            cfg.workers = i;
            break;
        }
    }
    fl.workers = workers;
    fl.n = cfg.workers;
    if (cfg.status_port >= 0)
        status = status_start(cfg.status_host, cfg.status_port, render, &fl);
    if (!atomic_load(&stop)) {
        sigwait(&sigs, &sig);
        log_info("main", "signal %d: stopping after the batches in flight", sig);
        atomic_store(&stop, 1);
    }
    for (i = 0; i < cfg.workers; i++)
        pthread_join(threads[i], NULL);
    status_stop(status);
    free(threads);
    free(workers);
    log_info("main", "stopped");
    return 0;
}
