/* loadgen -- an HTTP load generator on libuv, for `make bench` and
 * tests/integration/test_stress_shape.py. Two modes.
 *
 * Open loop (the default). wrk is closed-loop: a slow answer delays the next
 * request, which hides latency (coordinated omission). Here requests are due
 * at a fixed rate from the start; a request that finds no free connection
 * waits in a queue, and its latency is counted from when it was due, not
 * from when it was sent.
 *
 *   loadgen PORT RATE SECONDS CONNECTIONS SERIAL_PREFIX [PATH [TS_BASE]]
 *
 * Each request is a one-record upload to PATH (default
 * /upload_health_data_v2; /upload_health_data is routed by the gray ratio)
 * with its own (device, timestamp) key: request n is device
 * PREFIX-(n mod 2000), timestamp TS_BASE + n ms (default 1700000000000), so
 * runs with other TS_BASEs can share the devices. Prints one JSON line: due, answered, ok, errors,
 * and latency p50/p99/max in ms.
 *
 * Closed loop with think time ("think"): the old service's acceptance stress
 * test. USERS simulated users, each on its own keep-alive connection, loop:
 * POST a batch of RECORDS camelCase records wrapped as {"data":[...],
 * "batchId":...} to /upload_health_data_batch, wait for the answer, think a
 * uniform random THINK_MIN_MS..THINK_MAX_MS; no new request after SECONDS,
 * and every request in flight is waited for (at most 30 s), so each request
 * sent is answered or counted as an error. A user's first request comes
 * after a random 0..THINK_MAX_MS (as if it had just thought: no synchronised
 * first wave). Record i of user u's request k: device "PREFIX-uuuu-iii",
 * timestamp 1750000000000 + k * 1000 ms, batchId "PREFIX-u-k": no two
 * requests share a (device_sn, ts) key. Latency runs from sending to the
 * whole answer.
 *
 *   loadgen think PORT USERS SECONDS PREFIX THINK_MIN_MS THINK_MAX_MS RECORDS [LOG]
 *
 * Prints one JSON line: requests, ok (200), errors (anything else, conn_errors
 * of them without an answer), accepted and duplicates (summed from the 200
 * answers), avg/p50/p99/max ms. LOG gets one line per request: "user seq
 * status ms", status 0 for no answer. Exit status 0 only without errors.
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
static const char *upload_path = "/upload_health_data_v2";
static unsigned long long ts_base = 1700000000000ULL;
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

/* The length of the first HTTP response in 'in' (head plus Content-Length
 * body) with '*head' its header block's length; 0 while the header block is
 * not complete. */
static size_t response_length(const char *in, size_t len, size_t *head)
{
    const char *end = memmem(in, len, "\r\n\r\n", 4);
    const char *cl;

    if (end == NULL)
        return 0;
    *head = (size_t)(end - in) + 4;
    cl = memmem(in, *head, "Content-Length: ", 16);
    return *head + (cl ? strtoul(cl + 16, NULL, 10) : 0);
}

/* A complete response is in c->in: record it, keep what follows. */
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn *c = s->data;
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
    if ((total = response_length(c->in, c->in_len, &head)) == 0 || c->in_len < total)
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
                        ts_base + (unsigned long long)seq);
    int n = snprintf(c->req, sizeof(c->req),
                     "POST %s HTTP/1.1\r\nHost: bench\r\n"
                     "Content-Length: %d\r\n\r\n%s", upload_path, blen, body);
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

/* ------------------------------------------------------------------------
 * Closed loop with think time: the old service's acceptance stress test
 * ------------------------------------------------------------------------ */

#define THINK_IN 8192           /* one response: headers and a short JSON body */
#define THINK_REC_BYTES 320     /* one record's JSON, at most */

typedef struct user {
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t think;
    unsigned id;
    uint64_t seq;               /* requests this user started */
    uint64_t sent_ns;
    int busy;                   /* a request is in flight */
    int open;                   /* tcp is initialised (until its close callback) */
    int connected;
    char *req;
    char in[THINK_IN];
    size_t in_len;
} user;

static struct {
    unsigned users;
    unsigned think_min_ms;
    unsigned think_max_ms;
    unsigned records;
    uint64_t deadline_ns;
    uint64_t rng;
    FILE *log;
    user *u;
    unsigned done;              /* users past the deadline with nothing in flight */
    uint64_t requests;
    uint64_t ok;
    uint64_t errors;
    uint64_t conn_errors;       /* of 'errors': no answer (connect, write, lost) */
    uint64_t accepted;          /* sum of "accepted" in 200 answers */
    uint64_t duplicates;        /* sum of "duplicates" in 200 answers (legacy path) */
    double lat_sum;
    double *lat;
    size_t nlat;
    size_t cap;
    uv_timer_t guard;
} th;

static void user_send(user *u);
static void user_connect(user *u);

/* xorshift64: uniform think times without libc's shared state. */
static uint64_t rnd(void)
{
    th.rng ^= th.rng << 13;
    th.rng ^= th.rng >> 7;
    th.rng ^= th.rng << 17;
    return th.rng;
}

static uint64_t think_ms(unsigned lo, unsigned hi)
{
    return lo + (hi > lo ? rnd() % (hi - lo + 1) : 0);
}

static void lat_add(double ms)
{
    if (th.nlat == th.cap) {
        size_t cap = th.cap ? th.cap * 2 : 4096;
        double *p = realloc(th.lat, cap * sizeof(*p));

        if (p == NULL) {
            fprintf(stderr, "loadgen: out of memory\n");
            exit(1);
        }
        th.lat = p;
        th.cap = cap;
    }
    th.lat[th.nlat++] = ms;
    th.lat_sum += ms;
}

/* The user is past the deadline: close its connection, stop when it was the
 * last one. */
static void user_finish(user *u)
{
    if (u->open) {
        u->open = 0;
        uv_close((uv_handle_t *)&u->tcp, NULL);
    }
    uv_close((uv_handle_t *)&u->think, NULL);
    if (++th.done == th.users) {
        uv_close((uv_handle_t *)&th.guard, NULL);
    }
}

static void on_think(uv_timer_t *t)
{
    user *u = t->data;

    if (uv_hrtime() >= th.deadline_ns)
        user_finish(u);
    else if (u->connected)
        user_send(u);
    else if (!u->open)
        user_connect(u);
}

static void think_then_next(user *u)
{
    uv_timer_start(&u->think, on_think, think_ms(th.think_min_ms, th.think_max_ms), 0);
}

/* One request's outcome: 'status' the HTTP status, 0 for no answer. */
static void user_answered(user *u, int status, const char *body, size_t blen)
{
    double ms = (double)(uv_hrtime() - u->sent_ns) / 1e6;
    const char *p;

    u->busy = 0;
    lat_add(ms);
    if (status == 200) {
        th.ok++;
        if ((p = memmem(body, blen, "\"accepted\":", 11)) != NULL)
            th.accepted += strtoull(p + 11, NULL, 10);
        if ((p = memmem(body, blen, "\"duplicates\":", 13)) != NULL)
            th.duplicates += strtoull(p + 13, NULL, 10);
    } else {
        th.errors++;
        if (status == 0)
            th.conn_errors++;
    }
    if (th.log)
        fprintf(th.log, "%u %llu %d %.3f\n", u->id, (unsigned long long)u->seq, status, ms);
    think_then_next(u);
}

static void on_user_closed(uv_handle_t *h)
{
    user *u = h->data;

    u->open = 0;
    u->connected = 0;
    u->in_len = 0;
    think_then_next(u);
}

/* The connection is gone (closed, reset or refused): an in-flight request
 * counts as an error; the user reconnects after thinking. */
static void user_lost(user *u)
{
    if (uv_is_closing((uv_handle_t *)&u->tcp))
        return;
    if (u->busy) {
        u->busy = 0;
        lat_add((double)(uv_hrtime() - u->sent_ns) / 1e6);
        th.errors++;
        th.conn_errors++;
        if (th.log)
            fprintf(th.log, "%u %llu 0 0\n", u->id, (unsigned long long)u->seq);
    }
    uv_close((uv_handle_t *)&u->tcp, on_user_closed);
}

static void user_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    user *u = h->data;

    (void)n;
    b->base = u->in + u->in_len;
    b->len = sizeof(u->in) - u->in_len;
}

static void user_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    user *u = s->data;
    size_t head;
    size_t total;

    (void)b;
    if (n < 0) {
        user_lost(u);
        return;
    }
    u->in_len += (size_t)n;
    if ((total = response_length(u->in, u->in_len, &head)) == 0) {
        if (u->in_len == sizeof(u->in))
            user_lost(u);   /* a header block this big is not our producer's */
        return;
    }
    if (total > sizeof(u->in)) {
        user_lost(u);
        return;
    }
    if (u->in_len < total || !u->busy)
        return;
    user_answered(u, strncmp(u->in, "HTTP/1.1 ", 9) == 0 ? atoi(u->in + 9) : -1,
                  u->in + head, total - head);
    memmove(u->in, u->in + total, u->in_len - total);
    u->in_len -= total;
}

static void user_written(uv_write_t *w, int status)
{
    user *u = w->data;

    if (status < 0 && u->open)
        user_lost(u);
}

/* Builds the next batch of this user into u->req: 'records' readings, one
 * per device, each device of this user reading once per request (1 s
 * apart), so no two requests share a (device_sn, ts) key. */
static size_t build_batch(user *u)
{
    size_t cap = th.records * THINK_REC_BYTES + 512;
    char *body = malloc(cap);
    size_t len = 0;
    size_t hlen;
    unsigned i;

    if (body == NULL || (u->req == NULL && (u->req = malloc(cap + 256)) == NULL)) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(1);
    }
    len += (size_t)snprintf(body + len, cap - len, "{\"data\":[");
    for (i = 0; i < th.records; i++)
        len += (size_t)snprintf(body + len, cap - len,
                                "%s{\"deviceSn\":\"%s-%04u-%03u\",\"heartRate\":%u,"
                                "\"bloodOxygen\":%u,\"temperature\":36.%u,\"pressureHigh\":%u,"
                                "\"pressureLow\":%u,\"step\":%llu,\"timestamp\":%llu,"
                                "\"uploadMethod\":\"wifi\"}",
                                i ? "," : "", prefix, u->id, i, 60 + (unsigned)(rnd() % 50),
                                94 + (unsigned)(rnd() % 6), (unsigned)(rnd() % 10),
                                110 + (unsigned)(rnd() % 20), 70 + (unsigned)(rnd() % 15),
                                (unsigned long long)(u->seq * 10),
                                (unsigned long long)(1750000000000ULL + u->seq * 1000));
    len += (size_t)snprintf(body + len, cap - len, "],\"batchId\":\"%s-%u-%llu\"}", prefix,
                            u->id, (unsigned long long)u->seq);
    hlen = (size_t)snprintf(u->req, 256, "POST /upload_health_data_batch HTTP/1.1\r\n"
                            "Host: bench\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\n\r\n", len);
    memcpy(u->req + hlen, body, len);
    free(body);
    return hlen + len;
}

static void user_send(user *u)
{
    uv_buf_t b;

    u->seq++;
    b.len = build_batch(u);
    b.base = u->req;
    th.requests++;
    u->busy = 1;
    u->sent_ns = uv_hrtime();
    if (uv_write(&u->write, (uv_stream_t *)&u->tcp, &b, 1, user_written) != 0)
        user_lost(u);
}

static void user_connected(uv_connect_t *r, int status)
{
    user *u = r->data;

    if (status < 0) {
        /* A request that never got out: counted, retried after thinking. */
        u->seq++;
        th.requests++;
        u->busy = 1;
        u->sent_ns = uv_hrtime();
        user_lost(u);
        return;
    }
    u->connected = 1;
    uv_read_start((uv_stream_t *)&u->tcp, user_alloc, user_read);
    if (uv_hrtime() >= th.deadline_ns)
        user_finish(u);     /* reconnected too late: no new request */
    else if (u->seq == 0)
        uv_timer_start(&u->think, on_think, think_ms(0, th.think_max_ms), 0);
    else
        user_send(u);
}

static void user_connect(user *u)
{
    uv_tcp_init(loop, &u->tcp);
    uv_tcp_nodelay(&u->tcp, 1);
    u->tcp.data = u;
    u->connect.data = u;
    u->write.data = u;
    u->open = 1;
    if (uv_tcp_connect(&u->connect, &u->tcp, (struct sockaddr *)&addr, user_connected) != 0)
        user_connected(&u->connect, UV_ECONNREFUSED);
}

static void on_guard(uv_timer_t *t)
{
    fprintf(stderr, "loadgen: users still busy 30 s after the end\n");
    uv_stop(t->loop);
}

static int cmp(const void *a, const void *b);

static void think_report(uint64_t start_ns)
{
    double elapsed = (double)(uv_hrtime() - start_ns) / 1e9;
    size_t n = th.nlat;

    qsort(th.lat, n, sizeof(*th.lat), cmp);
    printf("{\"users\":%u,\"elapsed_s\":%.3f,\"requests\":%llu,\"ok\":%llu,\"errors\":%llu,"
           "\"conn_errors\":%llu,\"accepted\":%llu,\"duplicates\":%llu,\"answered\":%zu,"
           "\"avg_ms\":%.3f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}\n",
           th.users, elapsed, (unsigned long long)th.requests, (unsigned long long)th.ok,
           (unsigned long long)th.errors, (unsigned long long)th.conn_errors,
           (unsigned long long)th.accepted, (unsigned long long)th.duplicates, n,
           n ? th.lat_sum / (double)n : 0.0, n ? th.lat[n / 2] : 0.0,
           n ? th.lat[(size_t)((double)n * 0.99)] : 0.0, n ? th.lat[n - 1] : 0.0);
}

/* loadgen think PORT USERS SECONDS PREFIX THINK_MIN_MS THINK_MAX_MS RECORDS [LOG] */
static int think_main(int argc, char **argv)
{
    uint64_t start_ns;
    uint64_t seconds;
    unsigned i;
    int rc;

    if (argc != 9 && argc != 10) {
        fprintf(stderr, "usage: loadgen think PORT USERS SECONDS PREFIX THINK_MIN_MS "
                        "THINK_MAX_MS RECORDS [LOG]\n");
        return 2;
    }
    th.users = (unsigned)strtoul(argv[3], NULL, 10);
    seconds = strtoull(argv[4], NULL, 10);
    prefix = argv[5];
    th.think_min_ms = (unsigned)strtoul(argv[6], NULL, 10);
    th.think_max_ms = (unsigned)strtoul(argv[7], NULL, 10);
    th.records = (unsigned)strtoul(argv[8], NULL, 10);
    if (th.users == 0 || th.users > 9999 || seconds == 0 || seconds > 86400 ||
        strlen(prefix) == 0 || strlen(prefix) > 32 || th.think_min_ms > th.think_max_ms ||
        th.think_max_ms > 600000 || th.records == 0 || th.records > 1000) {
        fprintf(stderr, "loadgen: users 1..9999, seconds 1..86400, prefix 1..32 bytes, "
                        "think min <= max <= 600000 ms, records 1..1000\n");
        return 2;
    }
    if (argc == 10 && (th.log = fopen(argv[9], "w")) == NULL) {
        perror(argv[9]);
        return 1;
    }
    th.rng = 0x9E3779B97F4A7C15ULL;
    for (i = 0; prefix[i]; i++)
        th.rng = (th.rng ^ (unsigned char)prefix[i]) * 0x100000001B3ULL;
    if ((th.u = calloc(th.users, sizeof(*th.u))) == NULL)
        return 1;
    loop = uv_default_loop();
    uv_ip4_addr("127.0.0.1", atoi(argv[2]), &addr);
    start_ns = uv_hrtime();
    th.deadline_ns = start_ns + seconds * 1000000000ULL;
    uv_timer_init(loop, &th.guard);
    uv_timer_start(&th.guard, on_guard, seconds * 1000 + 30000, 0);
    uv_unref((uv_handle_t *)&th.guard);
    for (i = 0; i < th.users; i++) {
        th.u[i].id = i;
        uv_timer_init(loop, &th.u[i].think);
        th.u[i].think.data = &th.u[i];
        user_connect(&th.u[i]);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    think_report(start_ns);
    rc = th.done == th.users && th.errors == 0 ? 0 : 1;
    if (th.log)
        fclose(th.log);
    for (i = 0; i < th.users; i++)
        free(th.u[i].req);
    free(th.u);
    free(th.lat);
    return rc;
}

static int open_main(int argc, char **argv)
{
    uint64_t seconds;
    uint64_t total;
    int nconn;
    int i;

    if (argc < 6 || argc > 8) {
        fprintf(stderr, "usage: loadgen PORT RATE SECONDS CONNECTIONS SERIAL_PREFIX "
                        "[PATH [TS_BASE]]\n");
        return 2;
    }
    if (argc >= 7)
        upload_path = argv[6];
    if (argc == 8)
        ts_base = strtoull(argv[7], NULL, 10);
    if (strlen(upload_path) > 64 || upload_path[0] != '/') {
        fprintf(stderr, "loadgen: PATH: an absolute path of at most 64 bytes\n");
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

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "think") == 0)
        return think_main(argc, argv);
    return open_main(argc, argv);
}
