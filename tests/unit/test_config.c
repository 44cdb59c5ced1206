/* Configuration: defaults, environment, flags, errors, help. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "err.h"

static int load(lj_config *c, unsigned prog, int argc, char **argv, char *err)
{
    return cfg_load(c, prog, argc, argv, err, 256);
}

static void test_defaults_work_locally(void **state)
{
    lj_config c;
    char err[256];
    char *argv[] = {"p"};

    (void)state;
    unsetenv("LJ_HTTP_PORT");
    assert_int_equal(load(&c, CFG_PRODUCER, 1, argv, err), 0);
    assert_int_equal(c.http_port, 8080);
    assert_int_equal(c.max_body_bytes, 1048576);
    assert_int_equal(c.max_records, 1000);
    assert_int_equal(c.max_depth, 32);
    assert_int_equal(c.max_unsent_bytes, 262144);
    assert_int_equal(c.send_timeout_ms, 10000);
    assert_string_equal(c.redis_host, "127.0.0.1");
    assert_string_equal(c.stream_prefix, "");
    assert_string_equal(c.admin_token, "");
}

static void test_env_overrides_default_and_flag_overrides_env(void **state)
{
    lj_config c;
    char err[256];
    char *argv1[] = {"p"};
    char *argv2[] = {"p", "--http-port", "9001"};
    char *argv3[] = {"p", "--http_port=9002"};

    (void)state;
    setenv("LJ_HTTP_PORT", "9000", 1);
    assert_int_equal(load(&c, CFG_PRODUCER, 1, argv1, err), 0);
    assert_int_equal(c.http_port, 9000);
    assert_int_equal(load(&c, CFG_PRODUCER, 3, argv2, err), 0);
    assert_int_equal(c.http_port, 9001);
    assert_int_equal(load(&c, CFG_PRODUCER, 2, argv3, err), 0);
    assert_int_equal(c.http_port, 9002);
    unsetenv("LJ_HTTP_PORT");
}

static void test_bad_values_are_refused(void **state)
{
    lj_config c;
    char err[256];
    char *range[] = {"p", "--http-port", "70000"};
    char *word[] = {"p", "--max-records=many"};
    char *unknown[] = {"p", "--no-such-thing", "1"};
    char *missing[] = {"p", "--http-port"};
    char *stray[] = {"p", "oops"};
    char *wrong_prog[] = {"c", "--http-port", "1"};
    char *tiny_bound[] = {"p", "--max-unsent-bytes", "100"};

    (void)state;
    assert_int_equal(load(&c, CFG_PRODUCER, 3, range, err), LJ_EINVAL);
    assert_non_null(strstr(err, "http_port"));
    assert_int_equal(load(&c, CFG_PRODUCER, 2, word, err), LJ_EINVAL);
    assert_int_equal(load(&c, CFG_PRODUCER, 3, unknown, err), LJ_EINVAL);
    assert_non_null(strstr(err, "--no-such-thing"));
    assert_int_equal(load(&c, CFG_PRODUCER, 2, missing, err), LJ_EINVAL);
    assert_int_equal(load(&c, CFG_PRODUCER, 2, stray, err), LJ_EINVAL);
    /* the consumer has no HTTP port */
    assert_int_equal(load(&c, CFG_CONSUMER, 3, wrong_prog, err), LJ_EINVAL);
    /* below one small answer: every connection would stall */
    assert_int_equal(load(&c, CFG_PRODUCER, 3, tiny_bound, err), LJ_EINVAL);
    assert_non_null(strstr(err, "max_unsent_bytes"));
    setenv("LJ_WORKERS", "0", 1);
    assert_int_equal(load(&c, CFG_CONSUMER, 1, range, err), LJ_EINVAL);
    unsetenv("LJ_WORKERS");
}

static void test_help_is_asked_for(void **state)
{
    lj_config c;
    char err[256];
    char *argv[] = {"p", "--help"};

    (void)state;
    assert_int_equal(load(&c, CFG_PRODUCER, 2, argv, err), 1);
}

static void test_help_lists_options_and_hides_secrets(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    (void)state;
    setenv("LJ_ADMIN_TOKEN", "s3cret-token", 1);
    cfg_print_help(f, CFG_PRODUCER, "ljwx-producer");
    fclose(f);
    assert_non_null(strstr(text, "--http-port"));
    assert_non_null(strstr(text, "LJ_MAX_BODY_BYTES"));
    assert_non_null(strstr(text, "--admin-token"));
    assert_null(strstr(text, "s3cret-token"));
    assert_null(strstr(text, "--workers"));     /* consumer only */
    free(text);
    unsetenv("LJ_ADMIN_TOKEN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_work_locally),
        cmocka_unit_test(test_env_overrides_default_and_flag_overrides_env),
        cmocka_unit_test(test_bad_values_are_refused),
        cmocka_unit_test(test_help_is_asked_for),
        cmocka_unit_test(test_help_lists_options_and_hides_secrets),
    };

    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
