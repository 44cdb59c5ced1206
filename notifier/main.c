/* ljwx-notifier -- delivers alerts from t_alert_info (docs/alerts.md).
 *
 * Starts --notify-workers delivery threads (deliver.h), each with its own
 * PostgreSQL connection and libcurl handle, and a status port (/health,
 * /metrics, common/status.h). Run as many processes as needed: they share
 * the outbox through row claims. The main thread waits for SIGINT/SIGTERM
 * (blocked in every thread, taken with sigwait), then the workers finish
 * the alert in hand and exit 0.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "buf.h"
#include "channel.h"
#include "config.h"
#include "deliver.h"
#include "log.h"
#include "metrics.h"
#include "pg.h"
#include "status.h"
#include "stopsig.h"

typedef struct notifier {
    channel_set channels;
    deliver_stats stats;
    deliverer *workers;
    int n;
} notifier;

typedef struct count_def {
    size_t offset;
    const char *name;
    const char *help;
} count_def;

#define ALERTS(field, name, help) {offsetof(deliver_stats, field), name, help}

/* Alert outcomes, per process. */
static const count_def alert_counts[] = {
    ALERTS(claimed, "ljwx_notifier_alerts_claimed_total", "Alerts claimed from the outbox."),
    ALERTS(notified, "ljwx_notifier_alerts_notified_total",
           "Alerts delivered to every selected channel (NOTIFIED)."),
    ALERTS(failed, "ljwx_notifier_alerts_failed_total",
           "Alerts with a delivery dead letter and nothing pending (FAILED)."),
    ALERTS(suppressed, "ljwx_notifier_alerts_suppressed_total",
           "Repeats not sent (SUPPRESSED, counted on the alert they repeat)."),
    ALERTS(unrouted, "ljwx_notifier_alerts_unrouted_total",
           "Alerts whose route selects no configured channel (UNROUTED)."),
    ALERTS(expired, "ljwx_notifier_alerts_expired_total",
           "Alerts older than --notify-max-age-s, never sent (EXPIRED)."),
    ALERTS(lost_leases, "ljwx_notifier_leases_lost_total",
           "Alerts another notifier took over while this one held them."),
};

#define TARGETS(field, name, help) {offsetof(channel_stats, field), name, help}

/* Per delivery target (label channel="webhook", ...). */
static const count_def target_counts[] = {
    TARGETS(attempts, "ljwx_notifier_attempts_total", "Delivery attempts (HTTP requests)."),
    TARGETS(delivered, "ljwx_notifier_delivered_total", "Deliveries that succeeded."),
    TARGETS(retries, "ljwx_notifier_retries_total", "Attempts that failed and will be retried."),
    TARGETS(dead, "ljwx_notifier_dead_letters_total",
            "Deliveries given up (4xx, or the retry budget spent)."),
};

static unsigned long long counter_at(const void *base, size_t offset)
{
    return atomic_load((const atomic_ullong *)(const void *)((const char *)base + offset));
}

static int render_metrics(lj_buf *out, void *arg)
{
    notifier *nt = arg;
    char labels[64];
    size_t d;
    int i;

    for (d = 0; d < sizeof(alert_counts) / sizeof(alert_counts[0]); d++) {
        metrics_write_head(out, alert_counts[d].name, "counter", alert_counts[d].help);
        metrics_write_value(out, alert_counts[d].name, "",
                            (double)counter_at(&nt->stats, alert_counts[d].offset));
    }
    for (d = 0; d < sizeof(target_counts) / sizeof(target_counts[0]); d++) {
        metrics_write_head(out, target_counts[d].name, "counter", target_counts[d].help);
        for (i = 0; i < nt->channels.n; i++) {
            snprintf(labels, sizeof(labels), "channel=\"%s\"", nt->channels.targets[i].name);
            metrics_write_value(out, target_counts[d].name, labels,
                                (double)counter_at(&nt->channels.targets[i].stats,
                                                   target_counts[d].offset));
        }
    }
    metrics_write_head(out, "ljwx_notifier_attempt_seconds", "histogram",
                       "Duration of each delivery attempt.");
    for (i = 0; i < nt->channels.n; i++) {
        snprintf(labels, sizeof(labels), "channel=\"%s\"", nt->channels.targets[i].name);
        metrics_write_hist(out, "ljwx_notifier_attempt_seconds", labels,
                           &nt->channels.targets[i].stats.seconds);
    }
    return 200;
}

static int render_health(lj_buf *out, void *arg)
{
    notifier *nt = arg;
    int pg = 1;
    int i;

    for (i = 0; i < nt->n; i++)
        pg &= atomic_load(&nt->workers[i].pg_up);
    lj_buf_printf(out, "{\"status\":\"%s\",\"workers\":%d,\"channels\":%d,\"postgres\":%s}",
                  pg ? "healthy" : "degraded", nt->n, nt->channels.n, pg ? "true" : "false");
    return pg ? 200 : 503;
}

/* The settings must leave each alert's lease long enough for one attempt
 * at every target: else a slow receiver would let a second notifier send
 * the same alert. */
static int check_settings(const lj_config *cfg, const channel_set *ch, char *err, size_t len)
{
    long need = (long)ch->n * (cfg->notify_timeout_ms + cfg->notify_connect_timeout_ms) + 10000;

    if (ch->n == 0) {
        snprintf(err, len, "no alert channel configured (LJ_ALERT_WEBHOOK_URL, "
                           "LJ_ALERT_WECHAT_URL, LJ_ALERT_DINGTALK_URL, LJ_ALERT_SMS_URL)");
        return 1;
    }
    if (cfg->notify_lease_ms < need) {
        snprintf(err, len, "notify_lease_ms must be at least %ld with %d channels (targets x "
                           "(timeout + connect timeout) + 10 s)", need, ch->n);
        return 1;
    }
    return 0;
}

static int load(notifier *nt, lj_config *cfg, int argc, char **argv)
{
    char err[256];
    int rc = cfg_load(cfg, CFG_NOTIFIER, argc, argv, err, sizeof(err));

    if (rc == 1) {
        cfg_print_help(stdout, CFG_NOTIFIER, "ljwx-notifier");
        return 0;
    }
    if (rc == 0 && (rc = channel_set_load(&nt->channels, cfg, err, sizeof(err))) == 0)
        rc = check_settings(cfg, &nt->channels, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ljwx-notifier: %s\n", err);
        return 2;
    }
    return -1;
}

int main(int argc, char **argv)
{
    static notifier nt;     /* large (reply buffers): not on the stack */
    static lj_config cfg;
    atomic_int stop = 0;
    pthread_t *threads;
    status_server *status = NULL;
    sigset_t sigs;
    int rc;
    int i;

    if ((rc = load(&nt, &cfg, argc, argv)) >= 0)
        return rc;
    log_init("notifier", log_level_parse(cfg.log_level) < 0 ? LOG_INFO
                                                             : log_level_parse(cfg.log_level));
    pg_init(&cfg);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "ljwx-notifier: libcurl failed to start\n");
        return 1;
    }
    stopsig_block(&sigs);   /* inherited by every worker */
    nt.workers = calloc((size_t)cfg.notify_workers, sizeof(*nt.workers));
    threads = calloc((size_t)cfg.notify_workers, sizeof(*threads));
    if (nt.workers == NULL || threads == NULL) {
        fprintf(stderr, "ljwx-notifier: out of memory\n");
        return 1;
    }
    for (i = 0; i < nt.channels.n; i++)
        log_info("main", "channel %s host=%s", nt.channels.targets[i].name,
                 nt.channels.targets[i].host);
    for (nt.n = 0; nt.n < cfg.notify_workers; nt.n++) {
        deliver_init(&nt.workers[nt.n], nt.n, &cfg, &nt.channels, &nt.stats, &stop);
        if (pthread_create(&threads[nt.n], NULL, deliver_thread, &nt.workers[nt.n]) != 0) {
            log_error("main", "cannot start worker %d", nt.n);
            atomic_store(&stop, 1);
            break;
        }
    }
    if (cfg.notify_status_port >= 0)
        status = status_start(cfg.status_host, cfg.notify_status_port, render_metrics,
                              render_health, &nt);
    stopsig_wait(&sigs, &stop, "after the alerts in hand");
    for (i = 0; i < nt.n; i++)
        pthread_join(threads[i], NULL);
    status_stop(status);
    free(threads);
    free(nt.workers);
    curl_global_cleanup();
    log_info("main", "stopped");
    return 0;
}
