/* Request framing: the header block scan and the chunked body check
 * (RFC 9112 §7.1), whole and cut into pieces at every byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http_frame.h"

/* Result of one http_chunked_scan() run over a body. */
typedef struct scan_result {
    int rc;
    size_t used;        /* total bytes passed when rc is 1 */
    const char *msg;
} scan_result;

static scan_result scan_pieces(const char *body, size_t n, size_t piece, const http_limits *lim)
{
    scan_result r = {0, 0, NULL};
    http_chunked ck;
    size_t off = 0;

    http_chunked_init(&ck);
    while (off < n) {
        size_t len = n - off < piece ? n - off : piece;
        size_t used = 0;
        int status = 0;

        r.rc = http_chunked_scan(&ck, body + off, len, lim, &used, &status, &r.msg);
        if (r.rc < 0) {
            assert_int_equal(status, 400);
            return r;
        }
        assert_true(used <= len);
        if (r.rc == 0)
            assert_int_equal(used, len);
        off += used;
        if (r.rc == 1)
            break;
    }
    r.used = off;
    return r;
}

/* Scans 'body' whole, then in pieces of every size from 1 byte: each way
 * must give the same outcome. */
static scan_result scan(const char *body)
{
    http_limits lim;
    size_t n = strlen(body);
    scan_result whole;
    size_t piece;

    http_limits_default(&lim, 1 << 20);
    whole = scan_pieces(body, n, n ? n : 1, &lim);
    for (piece = 1; piece < n; piece++) {
        scan_result r = scan_pieces(body, n, piece, &lim);

        assert_int_equal(r.rc, whole.rc);
        if (whole.rc < 0)
            assert_string_equal(r.msg, whole.msg);
        else
            assert_int_equal(r.used, whole.used);
    }
    return whole;
}

static void assert_refused(const char *body, const char *why)
{
    scan_result r = scan(body);

    assert_int_equal(r.rc, -1);
    assert_string_equal(r.msg, why);
}

static void assert_complete(const char *body, size_t used)
{
    scan_result r = scan(body);

    assert_int_equal(r.rc, 1);
    assert_int_equal(r.used, used);
}

static void test_well_formed_bodies_end_where_they_end(void **state)
{
    (void)state;
    assert_complete("0\r\n\r\n", 5);
    assert_complete("7\r\n{\"a\":1}\r\n0\r\n\r\n", 17);
    assert_complete("3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 13);     /* next request */
    assert_complete("A\r\n0123456789\r\n00\r\n\r\n", 21);                /* upper, zeros */
    assert_complete("1\r\n\r\r\n0\r\n\r\n", 11);               /* data is opaque */
    assert_complete("0\r\nX-Sum: a b\t c\x80\r\nY:\r\n\r\n", 25);
    assert_int_equal(scan("ffffffffffffffff\r\n").rc, 0);   /* 2^64-1: its data is to come */
}

static void test_extensions_follow_the_grammar(void **state)
{
    (void)state;
    assert_complete("1;a\r\nx\r\n0\r\n\r\n", 13);
    assert_complete("1 ;a=b ; c = d\r\nx\r\n0\r\n\r\n", 24);
    assert_complete("1;a=\"q \\\"x\\\\\" ;b\r\nx\r\n0\r\n\r\n", 26);
    assert_complete("0;last\r\n\r\n", 10);
    assert_refused("1 \r\nx\r\n0\r\n\r\n", "invalid chunk extension");
    assert_refused("1;\r\nx\r\n0\r\n\r\n", "invalid chunk extension");
    assert_refused("1;a@b\r\nx\r\n0\r\n\r\n", "invalid chunk extension");
    assert_refused("1;a \r\nx\r\n0\r\n\r\n", "invalid chunk extension");
    assert_refused("1;a=\r\nx\r\n0\r\n\r\n", "invalid chunk extension");
    assert_refused("1;a=b c\r\nx\r\n0\r\n\r\n", "invalid chunk extension");
    assert_refused("1;a=\"b\"c\r\nx\r\n0\r\n\r\n", "invalid chunk extension");
    assert_refused("1;a=\"b\r\nx\r\n0\r\n\r\n", "invalid chunk extension");
    assert_refused("1;a=\"b\\\x01\"\r\nx\r\n0\r\n\r\n", "invalid chunk extension");
    assert_refused("1;a\n\r\nx\r\n0\r\n\r\n", "bare LF in chunk size line");
    assert_refused("1=a\r\nx\r\n0\r\n\r\n", "invalid chunk size");
}

static void test_size_lines_are_hex_and_crlf(void **state)
{
    (void)state;
    assert_refused("7g\r\n", "invalid chunk size");
    assert_refused("0x7\r\n", "invalid chunk size");
    assert_refused("-1\r\n", "invalid chunk size");
    assert_refused(" 1\r\n", "invalid chunk size");
    assert_refused("\r\n", "invalid chunk size");
    assert_refused("7\rx", "bare CR in chunk size line");
    assert_refused("7\nabcdefg\r\n", "bare LF in chunk size line");
    assert_refused("10000000000000000\r\n", "chunk size too large");
    assert_refused("1ffffffffffffffff\r\n", "chunk size too large");
}

static void test_size_line_length_is_bounded(void **state)
{
    char line[5000];
    http_limits lim;
    http_chunked ck;
    size_t used;
    int status;
    const char *msg;

    (void)state;
    http_limits_default(&lim, 1 << 20);
    memset(line, '0', sizeof(line));
    /* 4,096 bytes with the CRLF pass; one more is refused */
    http_chunked_init(&ck);
    assert_int_equal(http_chunked_scan(&ck, line, 4094, &lim, &used, &status, &msg), 0);
    assert_int_equal(http_chunked_scan(&ck, "\r\n\r\n", 4, &lim, &used, &status, &msg), 1);
    http_chunked_init(&ck);
    assert_int_equal(http_chunked_scan(&ck, line, 4096, &lim, &used, &status, &msg), 0);
    assert_int_equal(http_chunked_scan(&ck, "\r\n", 2, &lim, &used, &status, &msg), -1);
    assert_string_equal(msg, "chunk size line too long");
}

static void test_chunk_data_ends_in_crlf(void **state)
{
    (void)state;
    assert_refused("7\r\n{\"a\":1}XX0\r\n\r\n", "chunk data not followed by CRLF");
    assert_refused("3\r\nabc\n0\r\n\r\n", "chunk data not followed by CRLF");
    assert_refused("3\r\nabc\rX", "chunk data not followed by CRLF");
    assert_refused("3\r\nabcd\r\n", "chunk data not followed by CRLF");
}

static void test_trailers_are_strict_fields(void **state)
{
    (void)state;
    assert_refused("0\r\nX: 1\n\r\n", "bare LF in trailer");
    assert_refused("0\r\nX\n: 1\r\n\r\n", "bare LF in trailer");
    assert_refused("0\r\n\n", "bare LF in trailer");
    assert_refused("0\r\nX: 1\r\n 2\r\n\r\n", "folded trailer line");
    assert_refused("0\r\nX: 1\r\n\t2\r\n\r\n", "folded trailer line");
    assert_refused("0\r\nX : 1\r\n\r\n", "invalid trailer field name");
    assert_refused("0\r\nX\r\n\r\n", "invalid trailer field name");
    assert_refused("0\r\n:1\r\n\r\n", "invalid trailer field name");
    assert_refused("0\r\nX: a\x01\r\n\r\n", "control character in trailer");
    assert_refused("0\r\nX: a\x7f\r\n\r\n", "control character in trailer");
    assert_refused("0\r\nX: 1\rY", "bare CR in trailer");
    assert_refused("0\r\n\rX", "bare CR in trailer");
}

static void test_trailers_are_bounded(void **state)
{
    char body[12000];
    size_t n = 0;
    int i;

    (void)state;
    n += (size_t)sprintf(body + n, "0\r\n");
    for (i = 0; i < 65; i++)
        n += (size_t)sprintf(body + n, "X%d: v\r\n", i);
    sprintf(body + n, "\r\n");
    assert_refused(body, "too many trailer fields");
    n = (size_t)sprintf(body, "0\r\nX: ");
    memset(body + n, 'v', 4100);
    strcpy(body + n + 4100, "\r\n\r\n");
    assert_refused(body, "trailer line too long");
    n = (size_t)sprintf(body, "0\r\n");
    for (i = 0; i < 3; i++) {
        n += (size_t)sprintf(body + n, "X%d: ", i);
        memset(body + n, 'v', 3000);
        n += 3000;
        n += (size_t)sprintf(body + n, "\r\n");
    }
    sprintf(body + n, "\r\n");
    assert_refused(body, "trailer section too large");
}

static void test_a_finished_body_takes_no_more_bytes(void **state)
{
    http_limits lim;
    http_chunked ck;
    size_t used = 99;
    int status;
    const char *msg;

    (void)state;
    http_limits_default(&lim, 1 << 20);
    http_chunked_init(&ck);
    assert_int_equal(http_chunked_scan(&ck, "0\r\n\r\nGET", 8, &lim, &used, &status, &msg), 1);
    assert_int_equal(used, 5);
    assert_int_equal(http_chunked_scan(&ck, "GET", 3, &lim, &used, &status, &msg), 1);
    assert_int_equal(used, 0);
}

static void test_header_scan_reports_the_block_length(void **state)
{
    static const char req[] = "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n0\r\n";
    http_limits lim;
    size_t len = 0;
    int status;
    const char *msg;

    (void)state;
    http_limits_default(&lim, 1 << 20);
    assert_int_equal(http_frame_scan(req, sizeof(req) - 1, &lim, &len, &status, &msg), 1);
    assert_int_equal(len, sizeof(req) - 1 - 3);
    assert_int_equal(http_frame_scan(req, 20, &lim, &len, &status, &msg), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_well_formed_bodies_end_where_they_end),
        cmocka_unit_test(test_extensions_follow_the_grammar),
        cmocka_unit_test(test_size_lines_are_hex_and_crlf),
        cmocka_unit_test(test_size_line_length_is_bounded),
        cmocka_unit_test(test_chunk_data_ends_in_crlf),
        cmocka_unit_test(test_trailers_are_strict_fields),
        cmocka_unit_test(test_trailers_are_bounded),
        cmocka_unit_test(test_a_finished_body_takes_no_more_bytes),
        cmocka_unit_test(test_header_scan_reports_the_block_length),
    };

    return cmocka_run_group_tests_name("http_frame", tests, NULL, NULL);
}
