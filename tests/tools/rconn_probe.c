/* rconn_probe -- drives common/rconn.c from a test, one command a line.
 *
 *   rconn_probe --seeds h:p,h:p     (a cluster)
 *   rconn_probe --server h:p        (one Redis)
 * Each line of stdin is "<key or -> <command> <args...>" (single spaces);
 * each answer is one line on stdout:
 *   "R <type> <text>"  a reply (type: str, int, arr, status, nil; arr gives
 *                      its count, str/status their text, int its value)
 *   "E <text>"         an error reply
 *   "N <text>"         no reply (rconn_errstr)
 * "counts" prints "C <moved> <ask> <retries> <refreshes>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "rconn.h"

#define ARGS_MAX 32

static void print_reply(const redisReply *r)
{
    switch (r->type) {
    case REDIS_REPLY_ERROR:
        printf("E %s\n", r->str);
        break;
    case REDIS_REPLY_STRING:
        printf("R str %s\n", r->str);
        break;
    case REDIS_REPLY_STATUS:
        printf("R status %s\n", r->str);
        break;
    case REDIS_REPLY_INTEGER:
        printf("R int %lld\n", r->integer);
        break;
    case REDIS_REPLY_ARRAY:
        printf("R arr %zu\n", r->elements);
        break;
    default:
        printf("R nil -\n");
    }
}

static void run_line(rconn *c, char *line)
{
    const char *argv[ARGS_MAX + 1];
    char *save = NULL, *tok;
    int argc = 0;
    redisReply *r;

    for (tok = strtok_r(line, " \n", &save); tok && argc <= ARGS_MAX;
         tok = strtok_r(NULL, " \n", &save))
        argv[argc++] = tok;
    if (argc == 1 && strcmp(argv[0], "counts") == 0) {
        rconn_counts n;

        rconn_get_counts(c, &n);
        printf("C %llu %llu %llu %llu\n", n.moved, n.ask, n.retries, n.refreshes);
        return;
    }
    if (argc < 2 || argc > ARGS_MAX) {
        printf("N usage\n");
        return;
    }
    r = rconn_command(c, strcmp(argv[0], "-") ? argv[0] : NULL, argc - 1, argv + 1);
    if (r == NULL) {
        printf("N %s\n", rconn_errstr(c));
        return;
    }
    print_reply(r);
    freeReplyObject(r);
}

int main(int argc, char **argv)
{
    rconn_opts o = {.connect_ms = 1000, .timeout_ms = 3000};
    cluster_addr one;
    char line[4096], err[256];
    rconn *c;

    if (argc != 3 || (strcmp(argv[1], "--seeds") && strcmp(argv[1], "--server"))) {
        fprintf(stderr, "usage: rconn_probe --seeds h:p,... | --server h:p\n");
        return 2;
    }
    if (strcmp(argv[1], "--seeds") == 0) {
        o.seeds = argv[2];
    } else if (cluster_addr_parse(argv[2], strlen(argv[2]), &one) == 0) {
        o.host = one.host;
        o.port = one.port;
    } else {
        fprintf(stderr, "rconn_probe: bad address\n");
        return 2;
    }
    if ((c = rconn_open(&o, err, sizeof(err))) == NULL) {
        printf("N %s\n", err);
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("R status ready\n");
    while (fgets(line, sizeof(line), stdin))
        run_line(c, line);
    rconn_close(c);
    return 0;
}
