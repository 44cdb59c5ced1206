/* ljwx-producer -- the HTTP ingest front of ljwx-ingest (SPEC §1, §2, §4).
 *
 * --threads event loops, each on its own thread with its own listener on
 * the shared port (SO_REUSEPORT), its own async Redis link (so the XADDs of
 * its requests pipeline), gray-release cache and backlog watch. PostgreSQL
 * ops work runs on the shared pool threads (pool.c). The main thread only waits
 * for SIGINT/SIGTERM (blocked in every thread, taken with sigwait), then
 * asks every loop to close its connections, and exits 0. Legacy-path
 * writes run on the legacy writer threads (legacy.c), whose answers come
 * back to each loop through its legacy port.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <uv.h>

#include "backlog.h"
#include "config.h"
#include "dashboard.h"
#include "flowctl.h"
#include "gray.h"
#include "http_server.h"
#include "ingest.h"
#include "legacy.h"
#include "log.h"
#include "ops.h"
#include "partition.h"
#include "pg.h"
#include "pool.h"
#include "rcluster.h"
#include "routes.h"
#include "stats.h"

/* Everything one loop thread owns. */
typedef struct loop_ctx {
    uv_loop_t loop;
    uv_async_t stop;
    uv_timer_t drain;       /* shutdown: checks whether the loop may close */
    uint64_t drain_deadline;
    int expired;            /* the drain deadline has passed */
    int cut;                /* requests answered 503, PostgreSQL waits cut short */
    pthread_t thread;
    const lj_config *cfg;
    http_server *http;
    rcluster *link;
    backlog *backlog;
    routes rt;
} loop_ctx;

static void observe_response(const http_request *req, int status, void *arg)
{
    (void)arg;
    stats_response(req->route, status, (double)(uv_hrtime() - req->start_ns) / 1e9);
}

static void observe_connections(int delta, void *arg)
{
    (void)arg;
    atomic_fetch_add(&stats_fault.open_connections, delta);
}

static void observe_send_timeout(void *arg)
{
    (void)arg;
    atomic_fetch_add(&stats_fault.send_timeouts, 1);
}

/* Room for every connection we may hold, plus our own descriptors. */
static void raise_fd_limit(int connections)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)connections + 256;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    if (rl.rlim_max < want) {
        struct rlimit raised = {want, want};

        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)     /* allowed to root only */
            return;
    }
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
        log_warn("main", "open files limited to %llu: fewer than %d connections possible",
                 (unsigned long long)rl.rlim_cur, connections);
}

static void limits_from(const lj_config *cfg, http_limits *lim)
{
    http_limits_default(lim, (size_t)cfg->max_body_bytes);
    /* The cap is for the process: each loop takes its share. */
    lim->max_connections = cfg->max_connections / cfg->threads > 0
                               ? cfg->max_connections / cfg->threads
                               : 1;
    lim->header_timeout_ms = (unsigned)cfg->header_timeout_ms;
    lim->body_idle_ms = (unsigned)cfg->body_timeout_ms;
    lim->body_total_ms = (unsigned)cfg->body_timeout_ms * 6;
    lim->keepalive_ms = (unsigned)cfg->keepalive_ms;
    lim->max_unsent = (size_t)cfg->max_unsent_bytes;
    lim->send_timeout_ms = (unsigned)cfg->send_timeout_ms;
}

#define DRAIN_TICK_MS 20
#define DRAIN_GRACE_MS 1000     /* past the deadline: writes and XADDs given up */

/* Closes what 'c' opened; its loop then runs out of handles and returns. */
static void close_loop(loop_ctx *c)
{
    uv_close((uv_handle_t *)&c->stop, NULL);
    uv_close((uv_handle_t *)&c->drain, NULL);
    legacy_loop_close(&c->loop);
    if (c->rt.ingest)
        ingest_close(c->rt.ingest);
    if (c->http)
        http_server_close(c->http);
    if (c->rt.gray)
        gray_close(c->rt.gray);
    if (c->backlog)
        backlog_close(c->backlog);
    if (c->rt.ledger)
        ledger_close(c->rt.ledger);
    if (c->link)
        rcluster_close(c->link);
}

/* 1 when nothing of loop 'c' is still in flight (or the grace is over for
 * what may be given up). Pool jobs are never given up: their callbacks use
 * the loop's state. */
static int drained(loop_ctx *c, uint64_t now)
{
    int grace_over = now >= c->drain_deadline + DRAIN_GRACE_MS;

    if (pool_pending() > 0 || legacy_pending(&c->loop) > 0)
        return 0;
    if (http_server_busy(c->http) > 0 && !grace_over)
        return 0;
    return rcluster_idle(c->link) || grace_over;
}

/* At the drain deadline nothing more is written (queued legacy uploads are
 * answered 503, never written), but legacy groups being written finish,
 * bounded by pg.h, and are answered with their outcome before the requests
 * left are answered 503 and every PostgreSQL wait is cut short: an upload
 * answered 503 is never stored. */
static void on_drain_tick(uv_timer_t *t)
{
    loop_ctx *c = t->data;
    uint64_t now = uv_now(&c->loop);

    if (!c->expired && now >= c->drain_deadline) {
        c->expired = 1;
        if (http_server_busy(c->http) > 0 || pool_pending() > 0 ||
            legacy_pending(&c->loop) > 0)
            log_warn("main", "drain deadline passed: %d requests in flight, %d pool jobs, "
                             "%d legacy writes (%d being written finish first)",
                     http_server_busy(c->http), pool_pending(), legacy_pending(&c->loop),
                     legacy_writing());
        legacy_abort();
    }
    if (c->expired && !c->cut && legacy_pending(&c->loop) == 0 && legacy_writing() == 0) {
        c->cut = 1;
        http_server_expire(c->http);
        pg_abort_waits();
    }
    if ((c->expired && !c->cut) || !drained(c, now))
        return;
    uv_timer_stop(t);
    close_loop(c);
}

static void on_stop(uv_async_t *a)
{
    loop_ctx *c = a->data;

    http_server_drain(c->http);
    c->drain_deadline = uv_now(&c->loop) + (uint64_t)c->cfg->shutdown_timeout_ms;
    uv_timer_start(&c->drain, on_drain_tick, 0, DRAIN_TICK_MS);
}

/* Builds loop 'c' listening on 'port'. 0, or -1 (logged). */
static int open_loop(loop_ctx *c, const lj_config *cfg, int port)
{
    http_observer obs = {observe_response, observe_connections, observe_send_timeout, NULL};
    http_limits lim;
    int rc;

    uv_loop_init(&c->loop);
    uv_async_init(&c->loop, &c->stop, on_stop);
    c->stop.data = c;
    uv_timer_init(&c->loop, &c->drain);
    c->drain.data = c;
    c->cfg = cfg;
    if (legacy_loop_open(&c->loop) != 0)
        return -1;
    c->rt.loop = &c->loop;
    c->rt.cfg = cfg;
    c->link = rcluster_new(&c->loop, cfg);
    if (c->link == NULL || (c->rt.gray = gray_new(&c->loop, c->link, cfg)) == NULL ||
        (c->backlog = backlog_new(&c->loop, c->link, cfg)) == NULL ||
        (c->rt.ledger = ledger_new(&c->loop, c->link, cfg)) == NULL ||
        (c->rt.ingest = ingest_new(&c->loop, cfg, c->link, c->rt.gray, c->backlog)) == NULL)
        return -1;
    c->rt.link = c->link;
    limits_from(cfg, &lim);
    if ((c->http = http_server_new(&c->loop, &lim, route_request, &c->rt)) == NULL)
        return -1;
    http_server_observe(c->http, &obs);
    if ((rc = http_server_listen(c->http, cfg->http_host, port)) != 0) {
        log_error("main", "listen on %s:%d failed: %s", cfg->http_host, port, uv_strerror(rc));
        return -1;
    }
    return 0;
}

static void *run_loop(void *arg)
{
    loop_ctx *c = arg;

    uv_run(&c->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void free_loop(loop_ctx *c)
{
    http_server_free(c->http);
    ingest_free(c->rt.ingest);
    uv_loop_close(&c->loop);
}

int main(int argc, char **argv)
{
    lj_config cfg;
    loop_ctx *loops;
    sigset_t sigs;
    char err[256];
    int started = 0;
    int port;
    int sig;
    int rc;
    int i;

    rc = cfg_load(&cfg, CFG_PRODUCER, argc, argv, err, sizeof(err));
    if (rc == 1) {
        cfg_print_help(stdout, CFG_PRODUCER, "ljwx-producer");
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "ljwx-producer: %s\n", err);
        return 2;
    }
    log_init("producer", log_level_parse(cfg.log_level) < 0 ? LOG_INFO
                                                             : log_level_parse(cfg.log_level));
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);    /* inherited by every thread */
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(cfg.max_connections);
    pg_init(&cfg);
    part_window_set(cfg.partition_window_months, cfg.partition_new_months);
    pool_init(&cfg);
    stats_init();
    if (flowctl_init(&cfg) != 0 || dashboard_init(&cfg) != 0 || legacy_start(&cfg) != 0) {
        log_error("main", "out of memory");
        return 1;
    }
    if ((loops = calloc((size_t)cfg.threads, sizeof(*loops))) == NULL)
        return 1;
    port = cfg.http_port;
    rc = 0;
    for (i = 0; i < cfg.threads && rc == 0; i++) {
        if (open_loop(&loops[i], &cfg, port) != 0) {
            close_loop(&loops[i]);
            uv_run(&loops[i].loop, UV_RUN_DEFAULT);
            free_loop(&loops[i]);
            rc = 1;
            break;
        }
        port = http_server_port(loops[i].http);    /* port 0: the others join the chosen one */
        if (pthread_create(&loops[i].thread, NULL, run_loop, &loops[i]) != 0) {
            close_loop(&loops[i]);
            uv_run(&loops[i].loop, UV_RUN_DEFAULT);
            free_loop(&loops[i]);
            rc = 1;
            break;
        }
        started++;
    }
    if (rc == 0) {
        log_info("main", "listening on http://%s:%d threads=%d redis=%s:%d", cfg.http_host, port,
                 cfg.threads, cfg.redis_host, cfg.redis_port);
        sigwait(&sigs, &sig);
        log_info("main", "signal %d: stopping", sig);
    }
    for (i = 0; i < started; i++)
        uv_async_send(&loops[i].stop);
    for (i = 0; i < started; i++) {
        pthread_join(loops[i].thread, NULL);
        free_loop(&loops[i]);
    }
    free(loops);
    legacy_stop();
    flowctl_cleanup();
    dashboard_cleanup();
    ops_cleanup();
    log_info("main", "stopped");
    return rc;
}
