/* Configuration: defaults, environment, flags, errors, help. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    assert_int_equal(c.redis_wait_replicas, 0);         /* no WAIT unless asked */
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

static void test_retention_is_off_by_default_and_kept_out_of_the_window(void **state)
{
    lj_config c;
    char err[256];
    char *none[] = {"c"};
    char *inside[] = {"c", "--retention-months", "12"};           /* window: 24 */
    char *edge[] = {"c", "--retention-months", "24"};
    char *narrow[] = {"c", "--retention-months", "2", "--partition-window-months", "1"};
    char *negative[] = {"c", "--retention-months", "-1"};
    char *producer[] = {"p", "--retention-months", "36"};

    (void)state;
    unsetenv("LJ_RETENTION_MONTHS");
    unsetenv("LJ_PARTITION_WINDOW_MONTHS");
    assert_int_equal(load(&c, CFG_CONSUMER, 1, none, err), 0);
    assert_int_equal(c.retention_months, 0);
    assert_string_equal(c.retention_archive_dir, "");
    assert_int_equal(load(&c, CFG_CONSUMER, 3, inside, err), LJ_EINVAL);
    assert_non_null(strstr(err, "retention_months"));
    assert_non_null(strstr(err, "at least 24"));
    assert_int_equal(load(&c, CFG_CONSUMER, 3, edge, err), 0);
    assert_int_equal(c.retention_months, 24);
    assert_int_equal(load(&c, CFG_CONSUMER, 5, narrow, err), 0);
    assert_int_equal(c.retention_months, 2);
    assert_int_equal(load(&c, CFG_CONSUMER, 3, negative, err), LJ_EINVAL);
    /* the consumer's job only */
    assert_int_equal(load(&c, CFG_PRODUCER, 3, producer, err), LJ_EINVAL);
}

static void test_timezone_option(void **state)
{
    lj_config c;
    char err[256];
    char *argv[] = {"p"};
    char *flag[] = {"p", "--timezone", "America/New_York"};
    char *bad[] = {"p", "--timezone", "Mars/Olympus_Mons"};
    char *dots[] = {"p", "--timezone=../../etc/passwd"};
    char *semi[] = {"p", "--timezone=Asia/Shanghai;x"};

    (void)state;
    setenv("LJ_TIMEZONE", "Asia/Shanghai", 1);
    assert_int_equal(load(&c, CFG_PRODUCER, 1, argv, err), 0);
    assert_string_equal(c.timezone, "Asia/Shanghai");
    assert_int_equal(load(&c, CFG_PRODUCER, 3, flag, err), 0);
    assert_string_equal(c.timezone, "America/New_York");
    unsetenv("LJ_TIMEZONE");
    assert_int_equal(load(&c, CFG_PRODUCER, 3, bad, err), LJ_EINVAL);
    assert_non_null(strstr(err, "timezone"));
    assert_non_null(strstr(err, "Mars/Olympus_Mons"));
    assert_int_equal(load(&c, CFG_PRODUCER, 2, dots, err), LJ_EINVAL);
    assert_int_equal(load(&c, CFG_PRODUCER, 2, semi, err), LJ_EINVAL);
    /* the consumer has no such setting */
    assert_int_equal(load(&c, CFG_CONSUMER, 3, flag, err), LJ_EINVAL);
}

static void test_timezone_defaults_to_the_system_zone(void **state)
{
    lj_config c;
    char err[256];
    char *argv[] = {"p"};
    char *old_tz = getenv("TZ") ? strdup(getenv("TZ")) : NULL;

    (void)state;
    unsetenv("LJ_TIMEZONE");
    setenv("TZ", "Pacific/Kiritimati", 1);
    assert_int_equal(load(&c, CFG_PRODUCER, 1, argv, err), 0);
    assert_string_equal(c.timezone, "Pacific/Kiritimati");
    setenv("TZ", ":Europe/Paris", 1);
    assert_int_equal(load(&c, CFG_PRODUCER, 1, argv, err), 0);
    assert_string_equal(c.timezone, "Europe/Paris");
    if (old_tz)
        setenv("TZ", old_tz, 1);
    else
        unsetenv("TZ");
    free(old_tz);
}

/* The fallbacks, with the files given: TZ, /etc/timezone, /etc/localtime. */
static void test_system_timezone_sources(void **state)
{
    char dir[] = "/tmp/lj-tz-XXXXXX";
    char etc_tz[64];
    char etc_lt[64];
    char bad_tz[64];
    char zone[64];
    FILE *f;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(etc_tz, sizeof(etc_tz), "%s/timezone", dir);
    snprintf(etc_lt, sizeof(etc_lt), "%s/localtime", dir);
    snprintf(bad_tz, sizeof(bad_tz), "%s/bad", dir);
    assert_non_null(f = fopen(etc_tz, "w"));
    fputs("Asia/Tokyo\n", f);
    fclose(f);
    assert_non_null(f = fopen(bad_tz, "w"));
    fputs("Not/AZone\n", f);
    fclose(f);
    assert_int_equal(symlink("/usr/share/zoneinfo/America/Sao_Paulo", etc_lt), 0);

    cfg_system_timezone(zone, sizeof(zone), "Europe/Berlin", etc_tz, etc_lt);
    assert_string_equal(zone, "Europe/Berlin");
    cfg_system_timezone(zone, sizeof(zone), NULL, etc_tz, etc_lt);
    assert_string_equal(zone, "Asia/Tokyo");
    cfg_system_timezone(zone, sizeof(zone), "", etc_tz, etc_lt);
    assert_string_equal(zone, "Asia/Tokyo");
    /* a TZ that names no zone (a POSIX rule) is passed over */
    cfg_system_timezone(zone, sizeof(zone), "CST-8", bad_tz, etc_lt);
    assert_string_equal(zone, "America/Sao_Paulo");
    cfg_system_timezone(zone, sizeof(zone), NULL, "/nonexistent", etc_lt);
    assert_string_equal(zone, "America/Sao_Paulo");
    cfg_system_timezone(zone, sizeof(zone), NULL, "/nonexistent", "/nonexistent");
    assert_string_equal(zone, "UTC");
    cfg_system_timezone(zone, sizeof(zone), NULL, bad_tz, etc_tz);     /* not a link */
    assert_string_equal(zone, "UTC");

    assert_true(cfg_timezone_known("UTC"));
    assert_true(cfg_timezone_known("Asia/Shanghai"));
    assert_false(cfg_timezone_known(""));
    assert_false(cfg_timezone_known("Asia"));            /* a folder */
    assert_false(cfg_timezone_known("/etc/passwd"));
    assert_false(cfg_timezone_known("Asia/../Asia/Tokyo"));
    assert_false(cfg_timezone_known("Asia/Tokyo "));
    unlink(etc_tz);
    unlink(etc_lt);
    unlink(bad_tz);
    rmdir(dir);
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
    assert_non_null(strstr(text, "--stream-shards"));   /* producer and consumer */
    assert_non_null(strstr(text, "--redis-cluster"));
    assert_non_null(strstr(text, "--redis-wait-replicas"));
    free(text);
    unsetenv("LJ_ADMIN_TOKEN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_work_locally),
        cmocka_unit_test(test_env_overrides_default_and_flag_overrides_env),
        cmocka_unit_test(test_bad_values_are_refused),
        cmocka_unit_test(test_retention_is_off_by_default_and_kept_out_of_the_window),
        cmocka_unit_test(test_timezone_option),
        cmocka_unit_test(test_timezone_defaults_to_the_system_zone),
        cmocka_unit_test(test_system_timezone_sources),
        cmocka_unit_test(test_help_is_asked_for),
        cmocka_unit_test(test_help_lists_options_and_hides_secrets),
    };

    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
