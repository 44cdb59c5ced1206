/* pg_conninfo_build(): our timeouts and keepalives never clobber what the
 * DSN (key=value or URI) sets, and statement/lock timeouts travel in
 * 'options' ahead of the user's own. Checked on the parameters libpq
 * actually takes (PQconnectStartParams + PQconninfo, no server needed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "err.h"
#include "pg.h"

static const pg_settings S = {5, 30, 10, 3, 30000, 10000, 5000, 15000, 0};

/* The value libpq settled on for 'key' with 'dsn' under 's' (static copy). */
static const char *effective(const char *dsn, const pg_settings *s, const char *key)
{
    static char out[1024];
    PQconninfoOption *opts;
    PQconninfoOption *o;
    pg_conninfo ci;
    char err[256];
    PGconn *c;

    assert_int_equal(pg_conninfo_build(dsn, s, "ljwx-test", &ci, err, sizeof(err)), 0);
    /* Port 1 on loopback: the connect fails at once; the parameters stay. */
    c = PQconnectStartParams(ci.keys, ci.vals, 1);
    assert_non_null(c);
    opts = PQconninfo(c);
    out[0] = '\0';
    for (o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, key) == 0 && o->val)
            snprintf(out, sizeof(out), "%s", o->val);
    PQconninfoFree(opts);
    PQfinish(c);
    return out;
}

static void test_defaults_are_added_to_a_plain_dsn(void **state)
{
    const char *dsn = "host=127.0.0.1 port=1 dbname=x user=u";

    (void)state;
    unsetenv("PGOPTIONS");
    assert_string_equal(effective(dsn, &S, "connect_timeout"), "5");
    assert_string_equal(effective(dsn, &S, "keepalives"), "1");
    assert_string_equal(effective(dsn, &S, "keepalives_idle"), "30");
    assert_string_equal(effective(dsn, &S, "keepalives_interval"), "10");
    assert_string_equal(effective(dsn, &S, "keepalives_count"), "3");
    assert_string_equal(effective(dsn, &S, "tcp_user_timeout"), "30000");
    assert_string_equal(effective(dsn, &S, "options"),
                        "-c statement_timeout=10000 -c lock_timeout=5000");
    assert_string_equal(effective(dsn, &S, "client_encoding"), "UTF8");
    assert_string_equal(effective(dsn, &S, "application_name"), "ljwx-test");
    assert_string_equal(effective(dsn, &S, "dbname"), "x");
}

static void test_the_dsn_wins_key_value(void **state)
{
    const char *dsn = "host=127.0.0.1 port=1 dbname=x connect_timeout=9 keepalives_idle=99 "
                      "tcp_user_timeout=1234 options='-c statement_timeout=5 -c work_mem=8MB'";

    (void)state;
    assert_string_equal(effective(dsn, &S, "connect_timeout"), "9");
    assert_string_equal(effective(dsn, &S, "keepalives_idle"), "99");
    assert_string_equal(effective(dsn, &S, "tcp_user_timeout"), "1234");
    assert_string_equal(effective(dsn, &S, "keepalives_count"), "3");
    /* The server applies -c in order: the user's statement_timeout is last. */
    assert_string_equal(effective(dsn, &S, "options"),
                        "-c statement_timeout=10000 -c lock_timeout=5000 "
                        "-c statement_timeout=5 -c work_mem=8MB");
}

static void test_the_dsn_wins_uri(void **state)
{
    const char *dsn = "postgresql://u@127.0.0.1:1/x?connect_timeout=7&keepalives=0";

    (void)state;
    assert_string_equal(effective(dsn, &S, "connect_timeout"), "7");
    assert_string_equal(effective(dsn, &S, "keepalives"), "0");
    assert_string_equal(effective(dsn, &S, "dbname"), "x");
    assert_string_equal(effective(dsn, &S, "options"),
                        "-c statement_timeout=10000 -c lock_timeout=5000");
}

static void test_pgoptions_is_kept_when_the_dsn_has_none(void **state)
{
    (void)state;
    setenv("PGOPTIONS", "-c search_path=ljwx", 1);
    assert_string_equal(effective("host=127.0.0.1 port=1", &S, "options"),
                        "-c statement_timeout=10000 -c lock_timeout=5000 -c search_path=ljwx");
    unsetenv("PGOPTIONS");
}

static void test_zero_leaves_the_server_default(void **state)
{
    pg_settings s = S;

    (void)state;
    s.statement_timeout_ms = 0;
    s.lock_timeout_ms = 0;
    s.tcp_user_timeout_ms = 0;
    assert_string_equal(effective("host=127.0.0.1 port=1", &s, "options"), "");
    assert_string_equal(effective("host=127.0.0.1 port=1", &s, "tcp_user_timeout"), "");
    s.lock_timeout_ms = 700;
    assert_string_equal(effective("host=127.0.0.1 port=1", &s, "options"),
                        "-c lock_timeout=700");
}

/* Failover: the hosts, ports and target_session_attrs reach libpq as they
 * are, with our timeouts (connect_timeout is then per host). */
static void test_multi_host_dsn_is_passed_through(void **state)
{
    const char *dsn = "host=127.0.0.1,127.0.0.2 port=1,2 dbname=x user=u "
                      "target_session_attrs=read-write";

    (void)state;
    unsetenv("PGOPTIONS");
    assert_string_equal(effective(dsn, &S, "host"), "127.0.0.1,127.0.0.2");
    assert_string_equal(effective(dsn, &S, "port"), "1,2");
    assert_string_equal(effective(dsn, &S, "target_session_attrs"), "read-write");
    assert_string_equal(effective(dsn, &S, "connect_timeout"), "5");
    assert_string_equal(effective("postgresql://u@127.0.0.1:1,127.0.0.2:2/x"
                                  "?target_session_attrs=read-write", &S, "host"),
                        "127.0.0.1,127.0.0.2");
}

/* Behind a transaction pooler our timeouts are not startup options (pgbouncer
 * refuses the parameter); the user's own are still passed on. */
static void test_pooled_sends_no_options_of_ours(void **state)
{
    pg_settings s = S;

    (void)state;
    unsetenv("PGOPTIONS");
    s.pooled = 1;
    assert_string_equal(effective("host=127.0.0.1 port=1", &s, "options"), "");
    assert_string_equal(effective("host=127.0.0.1 port=1 options='-c search_path=a'", &s,
                                  "options"),
                        "-c search_path=a");
    assert_string_equal(effective("host=127.0.0.1 port=1", &s, "connect_timeout"), "5");
}

static void test_bad_dsn_is_refused_without_quoting_it(void **state)
{
    pg_conninfo ci;
    char err[256];

    (void)state;
    assert_int_equal(pg_conninfo_build("host=x password=s3cret bogus_key=1", &S, "a", &ci, err,
                                       sizeof(err)),
                     LJ_EINVAL);
    assert_null(strstr(err, "s3cret"));
    assert_int_equal(pg_connect("host=x password=s3cret 'unterminated", "a", err, sizeof(err)),
                     NULL);
    assert_null(strstr(err, "s3cret"));
}

static void test_options_too_long_are_refused(void **state)
{
    char dsn[1200];
    pg_conninfo ci;
    char err[256];

    (void)state;
    memset(dsn, 0, sizeof(dsn));
    strcpy(dsn, "host=x options='-c application_name=");
    memset(dsn + strlen(dsn), 'a', 1000);
    strcat(dsn, "'");
    assert_int_equal(pg_conninfo_build(dsn, &S, "a", &ci, err, sizeof(err)), LJ_EINVAL);
    assert_non_null(strstr(err, "too long"));
}

static void test_settings_come_from_the_config_table(void **state)
{
    char *argv[] = {"p", "--pg-statement-timeout-ms", "1234", "--pg-reply-timeout-ms", "4321",
                    "--pg-pooled", "1"};
    lj_config c;
    pg_settings s;
    char err[256];

    (void)state;
    assert_int_equal(cfg_load(&c, CFG_CONSUMER, 7, argv, err, sizeof(err)), 0);
    pg_settings_from(&s, &c);
    assert_int_equal(s.pooled, 1);
    assert_int_equal(s.statement_timeout_ms, 1234);
    assert_int_equal(s.reply_timeout_ms, 4321);
    assert_int_equal(s.connect_timeout_s, S.connect_timeout_s);
    assert_int_equal(s.lock_timeout_ms, S.lock_timeout_ms);
    assert_int_equal(s.keepalives_idle_s, S.keepalives_idle_s);
    assert_int_equal(s.tcp_user_timeout_ms, S.tcp_user_timeout_ms);
    assert_int_equal(cfg_load(&c, CFG_CONSUMER, 1, argv, err, sizeof(err)), 0);
    pg_settings_from(&s, &c);
    assert_memory_equal(&s, &S, sizeof(s));     /* the table's defaults are pg.c's */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_added_to_a_plain_dsn),
        cmocka_unit_test(test_the_dsn_wins_key_value),
        cmocka_unit_test(test_the_dsn_wins_uri),
        cmocka_unit_test(test_pgoptions_is_kept_when_the_dsn_has_none),
        cmocka_unit_test(test_zero_leaves_the_server_default),
        cmocka_unit_test(test_multi_host_dsn_is_passed_through),
        cmocka_unit_test(test_pooled_sends_no_options_of_ours),
        cmocka_unit_test(test_bad_dsn_is_refused_without_quoting_it),
        cmocka_unit_test(test_options_too_long_are_refused),
        cmocka_unit_test(test_settings_come_from_the_config_table),
    };

    return cmocka_run_group_tests_name("pg", tests, NULL, NULL);
}
