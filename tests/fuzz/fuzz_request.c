/* libFuzzer target: one request as it comes off the wire.
 *
 * The input goes through what the producer does with untrusted bytes: the
 * framing scan (http_frame_scan), http-parser with the same header-name rule
 * and body bound, then every body validator (health records, device info,
 * events). A body that validates must also survive the stream payload round
 * trip unchanged in size: the consumer reads back what the producer wrote.
 * The raw input is validated as a body too, so JSON is fuzzed directly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "buf.h"
#include "http_frame.h"
#include "record.h"
#include "report.h"

#define FUZZ_MAX_BODY 65536

typedef struct state {
    lj_buf body;
    int refused;
} state;

static int on_field(http_parser *p, const char *at, size_t len)
{
    state *st = p->data;
    size_t i;

    for (i = 0; i < len; i++)
        if (!http_frame_is_tchar((unsigned char)at[i]))
            st->refused = 1;
    return st->refused;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    state *st = p->data;

    if (st->body.len + len > FUZZ_MAX_BODY) {
        st->refused = 1;
        return 1;
    }
    return lj_buf_append(&st->body, at, len);
}

static void validate(const char *body, size_t len)
{
    rec_opts opts = {1000, 32, 480, 1750000000000LL};
    const char *msg;
    rec_batch b;
    rep_device d;
    rep_event e;

    rec_batch_init(&b);
    if (rec_parse_body(body, len, &opts, &b, &msg) == 0 && b.n > 0) {
        lj_buf json;
        rec_batch back;

        lj_buf_init(&json);
        rec_batch_init(&back);
        if (rec_batch_to_json(&b, &json) != 0 ||
            rec_batch_from_json(json.data, json.len, &back) != 0 || back.n != b.n)
            abort();    /* the consumer could not read what the producer wrote */
        rec_batch_cleanup(&back);
        lj_buf_cleanup(&json);
    }
    rec_batch_cleanup(&b);
    if (rep_device_parse(body, len, &opts, &d, &msg) == 0) {
        lj_buf json;
        rep_device back;

        lj_buf_init(&json);
        if (rep_device_to_json(&d, &json) != 0 || rep_device_from_json(json.data, json.len,
                                                                       &back) != 0)
            abort();
        rep_device_cleanup(&back);
        lj_buf_cleanup(&json);
    }
    rep_device_cleanup(&d);
    if (rep_event_parse(body, len, &opts, &e, &msg) == 0) {
        lj_buf json;
        rep_event back;

        lj_buf_init(&json);
        if (rep_event_to_json(&e, &json) != 0 ||
            rep_event_from_json(json.data, json.len, &back) != 0)
            abort();
        rep_event_cleanup(&back);
        lj_buf_cleanup(&json);
    }
    rep_event_cleanup(&e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static http_parser_settings settings;
    http_limits lim;
    http_parser parser;
    state st;
    const char *msg;
    int status;

    validate((const char *)data, size);
    http_limits_default(&lim, FUZZ_MAX_BODY);
    if (http_frame_scan((const char *)data, size, &lim, &status, &msg) != 1)
        return 0;
    settings.on_header_field = on_field;
    settings.on_body = on_body;
    memset(&st, 0, sizeof(st));
    lj_buf_init(&st.body);
    http_parser_init(&parser, HTTP_REQUEST);
    parser.data = &st;
    http_parser_execute(&parser, &settings, (const char *)data, size);
    if (!st.refused && HTTP_PARSER_ERRNO(&parser) == HPE_OK && st.body.len > 0)
        validate(st.body.data, st.body.len);
    lj_buf_cleanup(&st.body);
    return 0;
}
