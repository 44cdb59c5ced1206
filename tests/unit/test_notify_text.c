/* The notifier's pure text logic: markdown and form escaping, the SMS
 * template, Retry-After, backoff, the loggable host of a URL, lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "err.h"
#include "text.h"

static void test_markdown_escape_neutralises_markup_and_lines(void **state)
{
    lj_buf b;

    (void)state;
    lj_buf_init(&b);
    assert_int_equal(text_markdown_escape(&b, "**x** [a](http://e) <font>\n### h|`c`~_\\"), 0);
    assert_string_equal(b.data,
                        "\\*\\*x\\*\\* \\[a\\](http://e) \\<font\\> ### h\\|\\`c\\`\\~\\_\\\\");
    lj_buf_reset(&b);
    assert_int_equal(text_markdown_escape(&b, "NT-001 \xe5\xbc\xa0\xe4\xb8\x89\r\t\x7f"), 0);
    assert_string_equal(b.data, "NT-001 \xe5\xbc\xa0\xe4\xb8\x89   ");
    lj_buf_cleanup(&b);
}

static void test_form_escape_keeps_only_unreserved_bytes(void **state)
{
    lj_buf b;

    (void)state;
    lj_buf_init(&b);
    assert_int_equal(text_form_escape(&b, "a b&c=d+e/~.-_\xe5"), 0);
    assert_string_equal(b.data, "a%20b%26c%3Dd%2Be%2F~.-_%E5");
    lj_buf_cleanup(&b);
}

static const text_var vars[] = {{"text", "say \"hi\"\n"}, {"device_sn", "SN&1"},
                                {"value", NULL}};

static void test_template_json_values_are_quoted_strings(void **state)
{
    const char *err = NULL;
    lj_buf b;

    (void)state;
    lj_buf_init(&b);
    assert_int_equal(text_expand(&b, "{\"m\":{text},\"sn\":{device_sn},\"v\":{value},\"o\":{}}",
                                 vars, 3, TEXT_ESC_JSON, &err), 0);
    assert_string_equal(b.data,
                        "{\"m\":\"say \\\"hi\\\"\\n\",\"sn\":\"SN&1\",\"v\":\"\",\"o\":{}}");
    lj_buf_cleanup(&b);
}

static void test_template_form_values_are_percent_encoded(void **state)
{
    const char *err = NULL;
    lj_buf b;

    (void)state;
    lj_buf_init(&b);
    assert_int_equal(text_expand(&b, "to=138&msg={text}&sn={device_sn}", vars, 3, TEXT_ESC_FORM,
                                 &err), 0);
    assert_string_equal(b.data, "to=138&msg=say%20%22hi%22%0A&sn=SN%261");
    lj_buf_cleanup(&b);
}

static void test_template_unknown_placeholder_is_refused(void **state)
{
    const char *err = NULL;
    lj_buf b;

    (void)state;
    lj_buf_init(&b);
    assert_int_equal(text_expand(&b, "x={token}", vars, 3, TEXT_ESC_JSON, &err), LJ_EINVAL);
    assert_non_null(err);
    lj_buf_reset(&b);
    /* Not placeholders: capitals, digits, an unclosed brace are literal. */
    assert_int_equal(text_expand(&b, "{A}{1}{text", vars, 3, TEXT_ESC_JSON, &err), 0);
    assert_string_equal(b.data, "{A}{1}{text");
    lj_buf_cleanup(&b);
}

static void test_retry_after_seconds_and_dates(void **state)
{
    time_t now = 784111777;     /* Sun, 06 Nov 1994 08:49:37 GMT */
    int s = -5;

    (void)state;
    assert_int_equal(text_retry_after("120", now, &s), 0);
    assert_int_equal(s, 120);
    assert_int_equal(text_retry_after("  7 \t", now, &s), 0);
    assert_int_equal(s, 7);
    assert_int_equal(text_retry_after("99999999999999999999", now, &s), 0);
    assert_int_equal(s, 86400);
    assert_int_equal(text_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now, &s), 0);
    assert_int_equal(s, 30);
    assert_int_equal(text_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now, &s), 0);
    assert_int_equal(s, 0);     /* in the past: at once */
    s = -5;
    assert_int_equal(text_retry_after("", now, &s), LJ_EINVAL);
    assert_int_equal(text_retry_after("-1", now, &s), LJ_EINVAL);
    assert_int_equal(text_retry_after("12abc", now, &s), LJ_EINVAL);
    assert_int_equal(text_retry_after("Sun, 06 Nov 1994 08:50:07 PST", now, &s), LJ_EINVAL);
    assert_int_equal(text_retry_after("Sun, 06 Foo 1994 08:50:07 GMT", now, &s), LJ_EINVAL);
    assert_int_equal(text_retry_after("Sun, 06 Nov 1994 08:50:07 GMT x", now, &s), LJ_EINVAL);
    assert_int_equal(s, -5);    /* untouched on failure */
}

static void test_backoff_doubles_caps_and_honours_retry_after(void **state)
{
    (void)state;
    assert_int_equal(text_backoff_ms(1, 1000, 300000, -1, 0), 1000);
    assert_int_equal(text_backoff_ms(2, 1000, 300000, -1, 0), 2000);
    assert_int_equal(text_backoff_ms(4, 1000, 300000, -1, 0), 8000);
    assert_int_equal(text_backoff_ms(60, 1000, 300000, -1, 0), 300000);
    assert_int_equal(text_backoff_ms(1000, 1000, 300000, -1, 0), 300000);  /* no overflow */
    assert_int_equal(text_backoff_ms(1, 1000, 300000, -1, 0.5), 1050);     /* jitter <= 10% */
    assert_int_equal(text_backoff_ms(1, 200, 1000, 2, 0), 2000);           /* server longer */
    assert_int_equal(text_backoff_ms(5, 1000, 300000, 2, 0), 16000);       /* ours longer */
    assert_int_equal(text_backoff_ms(1, 200, 1000, 86400, 0), 3600000);    /* an hour at most */
}

static void test_url_host_drops_path_query_and_userinfo(void **state)
{
    char h[64];

    (void)state;
    text_url_host("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRET", h, sizeof(h));
    assert_string_equal(h, "qyapi.weixin.qq.com");
    text_url_host("http://user:pw@127.0.0.1:8080?token=x", h, sizeof(h));
    assert_string_equal(h, "127.0.0.1:8080");
    text_url_host("no-scheme/secret", h, sizeof(h));
    assert_string_equal(h, "?");
    text_url_host("http://averyveryverylonghostname.example", h, 8);
    assert_string_equal(h, "averyve");
}

static void test_split_list_trims_and_bounds(void **state)
{
    char items[3][16];

    (void)state;
    assert_int_equal(text_split_list(" a , ,b,c ", &items[0][0], 16, 3), 3);
    assert_string_equal(items[0], "a");
    assert_string_equal(items[1], "b");
    assert_string_equal(items[2], "c");
    assert_int_equal(text_split_list("", &items[0][0], 16, 3), 0);
    assert_int_equal(text_split_list("a,b,c,d", &items[0][0], 16, 3), LJ_ETOOBIG);
    assert_int_equal(text_split_list("0123456789abcdef", &items[0][0], 16, 3), LJ_ETOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_markdown_escape_neutralises_markup_and_lines),
        cmocka_unit_test(test_form_escape_keeps_only_unreserved_bytes),
        cmocka_unit_test(test_template_json_values_are_quoted_strings),
        cmocka_unit_test(test_template_form_values_are_percent_encoded),
        cmocka_unit_test(test_template_unknown_placeholder_is_refused),
        cmocka_unit_test(test_retry_after_seconds_and_dates),
        cmocka_unit_test(test_backoff_doubles_caps_and_honours_retry_after),
        cmocka_unit_test(test_url_host_drops_path_query_and_userinfo),
        cmocka_unit_test(test_split_list_trims_and_bounds),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
