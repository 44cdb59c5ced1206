#include "status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "log.h"

struct status_server {
    int fd;
    pthread_t thread;
    atomic_int stop;
    status_page_fn metrics;
    status_page_fn health;
    void *arg;
};

/* Reads the request head (up to 4 KiB, 2 s) and extracts the path of a GET.
 * Returns 0, or -1 when it is not a GET request we can read. */
static int read_path(int fd, char *path, size_t pathlen)
{
    char req[4096];
    size_t len = 0;
    struct timeval tv = {2, 0};
    char *sp;
    char *end;

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (len < sizeof(req) - 1) {
        ssize_t n = read(fd, req + len, sizeof(req) - 1 - len);

        if (n <= 0)
            return -1;
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    if (strncmp(req, "GET ", 4) != 0 || (sp = strchr(req + 4, ' ')) == NULL)
        return -1;
    *sp = '\0';
    if ((end = strchr(req + 4, '?')) != NULL)
        *end = '\0';
    if (strlen(req + 4) >= pathlen)
        return -1;
    memcpy(path, req + 4, strlen(req + 4) + 1);
    return 0;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w <= 0 && errno != EINTR)
            return;
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        }
    }
}

static void serve_one(status_server *s, int fd)
{
    char path[256];
    const char *type = "application/json";
    lj_buf body;
    lj_buf head;
    int status;

    lj_buf_init(&body);
    lj_buf_init(&head);
    if (read_path(fd, path, sizeof(path)) != 0) {
        status = 400;
        lj_buf_puts(&body, "{\"status\":\"error\",\"message\":\"GET only\"}");
    } else if (strcmp(path, "/metrics") == 0) {
        type = "text/plain; version=0.0.4";
        status = s->metrics(&body, s->arg);
    } else if (strcmp(path, "/health") == 0) {
        status = s->health(&body, s->arg);
    } else {
        status = 404;
        lj_buf_puts(&body, "{\"status\":\"error\",\"message\":\"no such endpoint\"}");
    }
    if (lj_buf_printf(&head,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      status, status == 200 ? "OK" : status == 404 ? "Not Found" : "Error",
                      type, body.len) == 0) {
        write_all(fd, head.data, head.len);
        write_all(fd, body.data ? body.data : "", body.len);
    }
    lj_buf_cleanup(&head);
    lj_buf_cleanup(&body);
}

static void *status_thread(void *arg)
{
    status_server *s = arg;

    while (!atomic_load(&s->stop)) {
        struct pollfd p = {s->fd, POLLIN, 0};
        int fd;

        if (poll(&p, 1, 200) <= 0)
            continue;
        if ((fd = accept(s->fd, NULL, NULL)) < 0)
            continue;
        serve_one(s, fd);
        close(fd);
    }
    return NULL;
}

status_server *status_start(const char *host, int port, status_page_fn metrics,
                            status_page_fn health, void *arg)
{
    status_server *s = calloc(1, sizeof(*s));
    struct sockaddr_in addr;
    int one = 1;

    if (s == NULL)
        return NULL;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        log_error("status", "bad listen address %s", host);
        goto fail;
    }
    if ((s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        goto fail;
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(s->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(s->fd, 16) != 0) {
        log_error("status", "cannot listen on %s:%d: %s", host, port, strerror(errno));
        close(s->fd);
        goto fail;
    }
    s->metrics = metrics;
    s->health = health;
    s->arg = arg;
    if (pthread_create(&s->thread, NULL, status_thread, s) != 0) {
        close(s->fd);
        goto fail;
    }
    {
        socklen_t len = sizeof(addr);

        getsockname(s->fd, (struct sockaddr *)&addr, &len);
        log_info("status", "status port on http://%s:%d (/health, /metrics)", host,
                 ntohs(addr.sin_port));
    }
    return s;
fail:
    free(s);
    return NULL;
}

void status_stop(status_server *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
    close(s->fd);
    free(s);
}
