/* libFuzzer target: one request as it comes off the wire.
 *
 * The input goes through what the producer does with untrusted bytes: the
 * framing scan (http_frame_scan), http-parser given the header block alone,
 * with the same header-name rule and body bound, then for a chunked body the
 * chunked check (http_chunked_scan) before the parser sees any of it, then
 * every body validator (health records, device info, events). A body that
 * validates must also survive the stream payload round trip unchanged in
 * size: the consumer reads back what the producer wrote. The raw input is
 * validated as a body and checked as a chunked body too, so JSON and chunk
 * framing are fuzzed directly.
 *
 * Aborts (findings) when: the chunked check gives another answer for the
 * same bytes cut into other pieces; or http-parser, given what the check
 * passed, ends the message elsewhere than the check said without refusing
 * it (the two would frame the next request differently: smuggling).
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
    int complete;
} state;

static int on_complete(http_parser *p)
{
    state *st = p->data;

    st->complete++;
    http_parser_pause(p, 1);    /* as the server does: one request at a time */
    return 0;
}

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

/* Runs the chunked check over 'n' bytes in pieces of 'piece'. Returns its
 * answer, with the bytes it passed in 'used' (when 1) and the reason (-1). */
static int chunked_in_pieces(const char *data, size_t n, size_t piece, const http_limits *lim,
                             size_t *used, const char **msg)
{
    http_chunked ck;
    size_t off = 0;
    int rc = 0;
    int status;

    http_chunked_init(&ck);
    while (off < n && rc == 0) {
        size_t len = n - off < piece ? n - off : piece;
        size_t k = 0;

        rc = http_chunked_scan(&ck, data + off, len, lim, &k, &status, msg);
        if (rc < 0)
            return rc;
        off += k;
    }
    *used = off;
    return rc;
}

/* The chunked check over 'data' whole, and cut into pieces of a size taken
 * from the input: one answer either way. Returns it, 'used' as above. */
static int chunked_check(const char *data, size_t n, const http_limits *lim, size_t *used)
{
    size_t piece = n > 0 ? (size_t)(unsigned char)data[n - 1] % 13 + 1 : 1;
    const char *msg_whole = NULL;
    const char *msg_cut = NULL;
    size_t cut = 0;
    int rc = chunked_in_pieces(data, n, n > 0 ? n : 1, lim, used, &msg_whole);

    if (chunked_in_pieces(data, n, piece, lim, &cut, &msg_cut) != rc ||
        (rc < 0 && strcmp(msg_whole, msg_cut) != 0) || (rc >= 0 && cut != *used))
        abort();    /* the answer depends on how the bytes arrived */
    return rc;
}

/* Gives the parser, past the headers, a chunked body the way the server
 * does: only what the check passed. Returns nonzero when the message is
 * complete and its body may be validated. */
static int feed_chunked(http_parser *parser, const http_parser_settings *settings,
                        const char *body, size_t n, const http_limits *lim)
{
    state *st = parser->data;
    size_t used = 0;
    int rc = chunked_check(body, n, lim, &used);
    size_t k;
    enum http_errno e;

    if (rc < 0)
        return 0;   /* 400 */
    k = http_parser_execute(parser, settings, body, used);
    e = HTTP_PARSER_ERRNO(parser);
    if (st->refused || (e != HPE_OK && e != HPE_PAUSED))
        return 0;   /* the parser refused: stricter is safe */
    if (rc == 1 && (e != HPE_PAUSED || k != used))
        abort();    /* we see the body end here, the parser elsewhere */
    if (rc == 0 && e == HPE_PAUSED)
        abort();    /* the parser ended a body we still read */
    return rc == 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static http_parser_settings settings;
    const char *in = (const char *)data;
    http_limits lim;
    http_parser parser;
    state st;
    const char *msg;
    size_t head = 0;
    size_t used;
    int status;
    int done;

    validate(in, size);
    http_limits_default(&lim, FUZZ_MAX_BODY);
    chunked_check(in, size, &lim, &used);
    if (http_frame_scan(in, size, &lim, &head, &status, &msg) != 1)
        return 0;
    settings.on_header_field = on_field;
    settings.on_body = on_body;
    settings.on_message_complete = on_complete;
    memset(&st, 0, sizeof(st));
    lj_buf_init(&st.body);
    http_parser_init(&parser, HTTP_REQUEST);
    parser.data = &st;
    http_parser_execute(&parser, &settings, in, head);
    done = st.complete;
    if (!st.refused && !done && HTTP_PARSER_ERRNO(&parser) == HPE_OK) {
        if (parser.flags & F_CHUNKED) {
            done = feed_chunked(&parser, &settings, in + head, size - head, &lim);
        } else {
            http_parser_execute(&parser, &settings, in + head, size - head);
            done = st.complete;
        }
    }
    if (!st.refused && done && st.body.len > 0)
        validate(st.body.data, st.body.len);
    lj_buf_cleanup(&st.body);
    return 0;
}
