#include "ingest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "err.h"
#include "log.h"
#include "record.h"
#include "streams.h"

struct ingest {
    const lj_config *cfg;
    rlink *link;
    char health_stream[STREAM_NAME_MAX];
    uint64_t rng;           /* xorshift state for entry UUIDs */
};

/* What the XADD callback needs to answer; the batch itself is gone by then. */
typedef struct upload {
    http_request *req;
    size_t accepted;
    size_t rejected;
    char *errors_json;      /* "[{...},...]", owned */
} upload;

static int64_t now_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static uint64_t next_random(ingest *in)
{
    uint64_t x = in->rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return in->rng = x;
}

/* A version 4 UUID; unique per upload, not a secret. */
static void make_uuid(ingest *in, char out[37])
{
    uint64_t hi = next_random(in);
    uint64_t lo = next_random(in);

    hi = (hi & ~0xF000ull) | 0x4000ull;
    lo = (lo & ~(3ull << 62)) | (2ull << 62);
    snprintf(out, 37, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(hi >> 32),
             (unsigned)(hi >> 16) & 0xFFFF, (unsigned)hi & 0xFFFF, (unsigned)(lo >> 48),
             (unsigned long long)(lo & 0xFFFFFFFFFFFFull));
}

ingest *ingest_new(const lj_config *cfg, rlink *link)
{
    ingest *in = calloc(1, sizeof(*in));

    if (in == NULL)
        return NULL;
    in->cfg = cfg;
    in->link = link;
    in->rng = ((uint64_t)now_ms() << 20) ^ (uint64_t)(uintptr_t)in ^ 0x9E3779B97F4A7C15ull;
    stream_name(in->health_stream, sizeof(in->health_stream), cfg->stream_prefix,
                STREAM_HEALTH);
    return in;
}

void ingest_free(ingest *in)
{
    free(in);
}

static int errors_to_json(const rec_batch *b, lj_buf *out)
{
    size_t i;

    if (lj_buf_puts(out, "[") != 0)
        return LJ_ENOMEM;
    for (i = 0; i < b->nerr; i++) {
        const rec_error *e = &b->errs[i];

        if (lj_buf_printf(out, "%s{\"index\":%d,\"reason\":", i ? "," : "", e->index) != 0 ||
            lj_buf_json_str(out, e->reason, strlen(e->reason)) != 0 ||
            lj_buf_puts(out, "}") != 0)
            return LJ_ENOMEM;
    }
    return lj_buf_puts(out, "]");
}

static void respond_unavailable(http_request *req, const char *msg)
{
    static const char retry[] = "Retry-After: 1\r\n";
    char body[160];
    int n = snprintf(body, sizeof(body), "{\"status\":\"error\",\"message\":\"%s\"}", msg);

    http_respond(req, 503, retry, body, (size_t)n);
}

static void upload_free(upload *u)
{
    free(u->errors_json);
    free(u);
}

static void on_xadd(redisReply *r, void *arg)
{
    upload *u = arg;
    lj_buf body;

    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        log_warn("ingest", "XADD failed: %s", r ? (r->type == REDIS_REPLY_ERROR ? r->str
                                                                              : "bad reply")
                                                : "link lost");
        respond_unavailable(u->req, "stream unavailable, retry later");
        upload_free(u);
        return;
    }
    lj_buf_init(&body);
    if (lj_buf_puts(&body, "{\"status\":\"accepted\",\"stream_id\":") != 0 ||
        lj_buf_json_str(&body, r->str, r->len) != 0 ||
        lj_buf_printf(&body,
                      ",\"message\":\"health data accepted for processing\","
                      "\"processing\":\"async\",\"accepted\":%zu,\"rejected\":%zu,\"errors\":%s}",
                      u->accepted, u->rejected, u->errors_json) != 0) {
        http_respond_error(u->req, 500, "out of memory");
    } else {
        http_respond(u->req, 200, NULL, body.data, body.len);
    }
    lj_buf_cleanup(&body);
    upload_free(u);
}

/* XADD <stream> * timestamp <ms> uuid <uuid> device_sn <sn> message_type health_data
 *      api_version v2 batch_id <id> payload <json> */
static int send_xadd(ingest *in, const rec_batch *b, const lj_buf *payload, upload *u)
{
    char ts[24];
    char uuid[37];
    const char *argv[] = {"XADD", in->health_stream, "*",
                          "timestamp", ts,
                          "uuid", uuid,
                          "device_sn", b->recs[0].device_sn,
                          "message_type", stream_message_type(STREAM_HEALTH),
                          "api_version", "v2",
                          "batch_id", b->batch_id,
                          "payload", payload->data};
    size_t lens[sizeof(argv) / sizeof(argv[0])];
    size_t i;

    snprintf(ts, sizeof(ts), "%lld", (long long)now_ms());
    make_uuid(in, uuid);
    for (i = 0; i + 1 < sizeof(argv) / sizeof(argv[0]); i++)
        lens[i] = strlen(argv[i]);
    lens[i] = payload->len;
    return rlink_command(in->link, (int)(i + 1), argv, lens, on_xadd, u);
}

static void respond_rejected(http_request *req, const rec_batch *b, const char *errors_json)
{
    lj_buf body;

    lj_buf_init(&body);
    if (lj_buf_printf(&body,
                      "{\"status\":\"error\",\"message\":\"no valid record\","
                      "\"accepted\":0,\"rejected\":%zu,\"errors\":%s}",
                      b->nerr, errors_json) != 0)
        http_respond_error(req, 500, "out of memory");
    else
        http_respond(req, 400, NULL, body.data, body.len);
    lj_buf_cleanup(&body);
}

static int parse_status(int rc)
{
    return rc == LJ_ETOOBIG ? 413 : rc == LJ_ENOMEM ? 500 : 400;
}

void ingest_health_v2(ingest *in, http_request *req)
{
    rec_opts opts = {(size_t)in->cfg->max_records, in->cfg->max_depth,
                     in->cfg->tz_offset_min, now_ms()};
    rec_batch b;
    lj_buf errors;
    lj_buf payload;
    const char *msg = NULL;
    upload *u = NULL;
    int rc;

    rec_batch_init(&b);
    lj_buf_init(&errors);
    lj_buf_init(&payload);
    if ((rc = rec_parse_body(req->body, req->body_len, &opts, &b, &msg)) != 0) {
        http_respond_error(req, parse_status(rc), msg ? msg : lj_strerror(rc));
        goto out;
    }
    if (errors_to_json(&b, &errors) != 0)
        goto oom;
    if (b.n == 0) {
        respond_rejected(req, &b, errors.data);
        goto out;
    }
    if (rec_batch_to_json(&b, &payload) != 0 || (u = calloc(1, sizeof(*u))) == NULL)
        goto oom;
    u->req = req;
    u->accepted = b.n;
    u->rejected = b.nerr;
    u->errors_json = lj_buf_take(&errors, NULL);
    if (send_xadd(in, &b, &payload, u) != 0) {
        upload_free(u);
        respond_unavailable(req, "stream unavailable, retry later");
        goto out;
    }
    http_defer(req);
    goto out;
oom:
    http_respond_error(req, 500, "out of memory");
out:
    lj_buf_cleanup(&payload);
    lj_buf_cleanup(&errors);
    rec_batch_cleanup(&b);
}
