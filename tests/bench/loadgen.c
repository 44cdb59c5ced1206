/* loadgen -- an open-loop HTTP load generator on libuv, for `make bench`.
 *
 * wrk is closed-loop: a slow answer delays the next request, which hides
 * latency (coordinated omission). Here requests are due at a fixed rate from
 * the start; a request that finds no free connection waits in a queue, and
 * its latency is counted from when it was due, not from when it was sent.
 *
 *   loadgen PORT RATE SECONDS CONNECTIONS SERIAL_PREFIX
 *
 * Each request is a one-record upload to /upload_health_data_v2 with its own
 * (device, timestamp) key. Prints one JSON line: due, answered, ok, errors,
 * and latency p50/p99/max in ms.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    char req[512];
    char in[4096];
    size_t in_len;
    uint64_t due_ns;    /* when the request in flight was due */
    int busy;
    struct conn *next_idle;
} conn;

static uv_loop_t *loop;
static struct sockaddr_in addr;
static uint64_t start_ns;
static uint64_t rate;
static uint64_t duration_ns;
static const char *prefix;
static uint64_t due_sent;       /* requests that came due so far */
static uint64_t queued;         /* due but waiting for a connection */
static uint64_t *queue_due;     /* due times of queued requests, FIFO */
static uint64_t queue_head;
static uint64_t answered;
static uint64_t ok;
static uint64_t errors;
static double *lat_ms;
static conn *idle;
static int connected;
static uv_timer_t tick;

static void on_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    conn *c = h->data;

    (void)n;
    b->base = c->in + c->in_len;
    b->len = sizeof(c->in) - c->in_len;
}

static void send_request(conn *c, uint64_t due_ns, uint64_t seq);
static void open_conn(void);

static void make_idle(conn *c)
{
    c->busy = 0;
    if (queued > 0) {
        uint64_t due = queue_due[queue_head++];

        queued--;
        send_request(c, due, due_sent - queued - 1);
        return;
    }
    c->next_idle = idle;
    idle = c;
}

/* A complete response is in c->in: record it, keep what follows. */
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn *c = s->data;
    char *end;
    char *cl;
    size_t head;
    size_t total;

    (void)b;
    if (n < 0) {
        /* An idle connection closed by the server (its keep-alive limit) is
         * replaced; one lost with a request in flight counts as an error. */
        conn **pp = &idle;

        while (*pp && *pp != c)
            pp = &(*pp)->next_idle;
        if (*pp)
            *pp = c->next_idle;
        if (c->busy) {
            lat_ms[answered++] = (double)(uv_hrtime() - c->due_ns) / 1e6;
            errors++;
        }
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        open_conn();
        return;
    }
    c->in_len += (size_t)n;
    if ((end = memmem(c->in, c->in_len, "\r\n\r\n", 4)) == NULL)
        return;
    head = (size_t)(end - c->in) + 4;
    cl = memmem(c->in, head, "Content-Length: ", 16);
    total = head + (cl ? strtoul(cl + 16, NULL, 10) : 0);
    if (c->in_len < total)
        return;
    lat_ms[answered++] = (double)(uv_hrtime() - c->due_ns) / 1e6;
    if (strncmp(c->in, "HTTP/1.1 200", 12) == 0)
        ok++;
    else
        errors++;
    memmove(c->in, c->in + total, c->in_len - total);
    c->in_len -= total;
    make_idle(c);
}

static void on_written(uv_write_t *w, int status)
{
    if (status < 0) {
        fprintf(stderr, "loadgen: write failed: %s\n", uv_strerror(status));
        exit(1);
    }
    (void)w;
}

static void send_request(conn *c, uint64_t due_ns, uint64_t seq)
{
    char body[256];
    int blen = snprintf(body, sizeof(body),
                        "{\"deviceSn\":\"%s-%04llu\",\"heartRate\":70,\"timestamp\":%llu}",
                        prefix, (unsigned long long)(seq % 2000),
                        (unsigned long long)(1700000000000ULL + seq));
    int n = snprintf(c->req, sizeof(c->req),
                     "POST /upload_health_data_v2 HTTP/1.1\r\nHost: bench\r\n"
                     "Content-Length: %d\r\n\r\n%s", blen, body);
    uv_buf_t b = uv_buf_init(c->req, (unsigned)n);

    c->busy = 1;
    c->due_ns = due_ns;
    uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_written);
}

static void on_tick(uv_timer_t *t)
{
    uint64_t now = uv_hrtime();
    uint64_t elapsed = now - start_ns;
    uint64_t want = elapsed >= duration_ns ? rate * duration_ns / 1000000000ULL
                                           : rate * elapsed / 1000000000ULL;

    while (due_sent < want) {
        uint64_t due = start_ns + due_sent * 1000000000ULL / rate;

        if (idle) {
            conn *c = idle;

            idle = c->next_idle;
            send_request(c, due, due_sent);
        } else {
            queue_due[queue_head + queued++] = due;
        }
        due_sent++;
    }
    if (elapsed >= duration_ns && answered == due_sent)
        uv_stop(t->loop);
    if (elapsed >= duration_ns + 30000000000ULL) {
        fprintf(stderr, "loadgen: %llu answers missing after 30 s\n",
                (unsigned long long)(due_sent - answered));
        uv_stop(t->loop);
    }
}

static void on_connected(uv_connect_t *r, int status)
{
    conn *c = r->data;

    if (status < 0) {
        fprintf(stderr, "loadgen: connect failed: %s\n", uv_strerror(status));
        exit(1);
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    c->next_idle = idle;
    idle = c;
    connected++;
}

static void open_conn(void)
{
    conn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        exit(1);
    uv_tcp_init(loop, &c->tcp);
    uv_tcp_nodelay(&c->tcp, 1);
    c->tcp.data = c;
    c->connect.data = c;
    uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&addr, on_connected);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    uint64_t seconds;
    uint64_t total;
    int nconn;
    int i;

    if (argc != 6) {
        fprintf(stderr, "usage: loadgen PORT RATE SECONDS CONNECTIONS SERIAL_PREFIX\n");
        return 2;
    }
    rate = strtoull(argv[2], NULL, 10);
    seconds = strtoull(argv[3], NULL, 10);
    nconn = atoi(argv[4]);
    prefix = argv[5];
    if (rate == 0 || seconds == 0 || nconn <= 0)
        return 2;
    total = rate * seconds + 1;
    duration_ns = seconds * 1000000000ULL;
    lat_ms = calloc(total, sizeof(*lat_ms));
    queue_due = calloc(total, sizeof(*queue_due));
    if (lat_ms == NULL || queue_due == NULL)
        return 1;
    loop = uv_default_loop();
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
    for (i = 0; i < nconn; i++)
        open_conn();
    while (connected < nconn)       /* every connection open before the clock starts */
        uv_run(loop, UV_RUN_ONCE);
    start_ns = uv_hrtime();
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, 1, 1);
    uv_run(loop, UV_RUN_DEFAULT);
    qsort(lat_ms, answered, sizeof(*lat_ms), cmp);
    printf("{\"due\":%llu,\"answered\":%llu,\"ok\":%llu,\"errors\":%llu,\"p50_ms\":%.3f,"
           "\"p99_ms\":%.3f,\"max_ms\":%.3f}\n",
           (unsigned long long)due_sent, (unsigned long long)answered, (unsigned long long)ok,
           (unsigned long long)errors, answered ? lat_ms[answered / 2] : 0.0,
           answered ? lat_ms[(size_t)((double)answered * 0.99)] : 0.0,
           answered ? lat_ms[answered - 1] : 0.0);
    return errors ? 1 : 0;
}
