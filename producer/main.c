/* ljwx-producer -- the HTTP ingest front of ljwx-ingest (SPEC §1, §2, §4).
 *
 * One libuv loop: the HTTP server, the async Redis link, the gray-release
 * ratio, signal handlers; PostgreSQL work on the pool threads (pool.c).
 * SIGINT/SIGTERM stop accepting, close connections and exit 0.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <uv.h>

#include "backlog.h"
#include "config.h"
#include "gray.h"
#include "http_server.h"
#include "ingest.h"
#include "log.h"
#include "pool.h"
#include "rlink.h"
#include "routes.h"
#include "stats.h"

typedef struct producer {
    uv_loop_t *loop;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    http_server *http;
    rlink *link;
    backlog *backlog;
    routes rt;
} producer;

static void on_stop_signal(uv_signal_t *h, int signum)
{
    producer *p = h->data;

    log_info("main", "signal %d: stopping", signum);
    uv_close((uv_handle_t *)&p->sigint, NULL);
    uv_close((uv_handle_t *)&p->sigterm, NULL);
    http_server_close(p->http);
    gray_close(p->rt.gray);
    backlog_close(p->backlog);
    rlink_close(p->link);
}

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

/* Room for every connection we may hold, plus our own descriptors. */
static void raise_fd_limit(int connections)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)connections + 256;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
        log_warn("main", "open files limited to %llu: fewer than %d connections possible",
                 (unsigned long long)rl.rlim_cur, connections);
}

static void limits_from(const lj_config *cfg, http_limits *lim)
{
    http_limits_default(lim, (size_t)cfg->max_body_bytes);
    lim->max_connections = cfg->max_connections;
    lim->header_timeout_ms = (unsigned)cfg->header_timeout_ms;
    lim->body_idle_ms = (unsigned)cfg->body_timeout_ms;
    lim->body_total_ms = (unsigned)cfg->body_timeout_ms * 6;
    lim->keepalive_ms = (unsigned)cfg->keepalive_ms;
}

static int start(producer *p, const lj_config *cfg)
{
    http_observer obs = {observe_response, observe_connections, NULL};
    http_limits lim;
    int rc;

    p->rt.loop = p->loop;
    p->rt.cfg = cfg;
    p->link = rlink_new(p->loop, cfg->redis_host, cfg->redis_port, cfg->redis_password);
    if (p->link == NULL || (p->rt.gray = gray_new(p->loop, p->link, cfg)) == NULL ||
        (p->backlog = backlog_new(p->loop, p->link, cfg)) == NULL ||
        (p->rt.ingest = ingest_new(p->loop, cfg, p->link, p->rt.gray, p->backlog)) == NULL)
        return -1;
    p->rt.link = p->link;
    limits_from(cfg, &lim);
    if ((p->http = http_server_new(p->loop, &lim, route_request, &p->rt)) == NULL)
        return -1;
    http_server_observe(p->http, &obs);
    if ((rc = http_server_listen(p->http, cfg->http_host, cfg->http_port)) != 0) {
        log_error("main", "listen on %s:%d failed: %s", cfg->http_host, cfg->http_port,
                  uv_strerror(rc));
        return -1;
    }
    log_info("main", "listening on http://%s:%d redis=%s:%d", cfg->http_host,
             http_server_port(p->http), cfg->redis_host, cfg->redis_port);
    uv_signal_init(p->loop, &p->sigint);
    uv_signal_init(p->loop, &p->sigterm);
    p->sigint.data = p->sigterm.data = p;
    uv_signal_start(&p->sigint, on_stop_signal, SIGINT);
    uv_signal_start(&p->sigterm, on_stop_signal, SIGTERM);
    return 0;
}

int main(int argc, char **argv)
{
    producer p;
    lj_config cfg;
    char err[256];
    int rc;

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
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(cfg.max_connections);
    pool_init(&cfg);
    stats_init();
    memset(&p, 0, sizeof(p));
    p.loop = uv_default_loop();
    if (start(&p, &cfg) != 0) {
        rc = 1;
        if (p.http)
            http_server_close(p.http);
        if (p.rt.gray)
            gray_close(p.rt.gray);
        if (p.backlog)
            backlog_close(p.backlog);
        if (p.link)
            rlink_close(p.link);
    }
    uv_run(p.loop, UV_RUN_DEFAULT);
    http_server_free(p.http);
    ingest_free(p.rt.ingest);
    uv_loop_close(p.loop);
    log_info("main", "stopped");
    return rc;
}
