/* The import's CSV reader (import/csv.c) and the month index of the
 * partition cache (common/partition.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "csv.h"
#include "err.h"
#include "partition.h"

static csv_reader rd;   /* 64 KiB */

static FILE *text(const char *s)
{
    FILE *f = fmemopen((void *)s, strlen(s), "r");

    assert_non_null(f);
    csv_init(&rd, f);
    return f;
}

static void test_fields_quotes_and_line_numbers(void **state)
{
    char err[64];
    FILE *f = text("a,b,c\r\n\n\"x, \"\"y\"\"\",,\"two\nlines\"\nlast,1,2");

    (void)state;
    assert_int_equal(csv_next(&rd, err, sizeof(err)), 1);
    assert_int_equal(rd.rec_line, 1);
    assert_int_equal(csv_nfields(&rd), 3);
    assert_string_equal(csv_field(&rd, 2), "c");
    assert_int_equal(csv_next(&rd, err, sizeof(err)), 1);   /* the blank line is skipped */
    assert_int_equal(rd.rec_line, 3);
    assert_string_equal(csv_field(&rd, 0), "x, \"y\"");
    assert_string_equal(csv_field(&rd, 1), "");
    assert_string_equal(csv_field(&rd, 2), "two\nlines");
    assert_int_equal(csv_next(&rd, err, sizeof(err)), 1);   /* no newline at the end */
    assert_int_equal(rd.rec_line, 5);
    assert_string_equal(csv_field(&rd, 0), "last");
    assert_int_equal(csv_next(&rd, err, sizeof(err)), 0);
    fclose(f);
}

static void test_bad_records_are_skipped_to_their_line_end(void **state)
{
    static const struct {
        const char *line;
        const char *why;
    } bad[] = {
        {"a,b\"c\n", "quote inside an unquoted field"},
        {"\"a\"b,c\n", "text after a closing quote"},
        {"a\rb\n", "bare CR"},
    };
    char err[64];
    char buf[64];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        FILE *f;

        snprintf(buf, sizeof(buf), "%sok,1\n", bad[i].line);
        f = text(buf);
        assert_int_equal(csv_next(&rd, err, sizeof(err)), LJ_EPARSE);
        assert_string_equal(err, bad[i].why);
        assert_int_equal(rd.rec_line, 1);
        assert_int_equal(csv_next(&rd, err, sizeof(err)), 1);
        assert_int_equal(rd.rec_line, 2);
        assert_string_equal(csv_field(&rd, 0), "ok");
        fclose(f);
    }
    text("\"never closed\n");
    assert_int_equal(csv_next(&rd, err, sizeof(err)), LJ_EPARSE);
    assert_string_equal(err, "unterminated quote");
    fclose(rd.in);
}

static void test_records_are_bounded(void **state)
{
    size_t n = CSV_MAX_BYTES + 100;
    char *big = malloc(n + 16);
    char err[64];
    FILE *f;
    size_t i;

    (void)state;
    assert_non_null(big);
    memset(big, 'x', n);
    memcpy(big + n, "\nok\n", 5);
    f = text(big);
    assert_int_equal(csv_next(&rd, err, sizeof(err)), LJ_EPARSE);
    assert_string_equal(err, "record longer than 64 KiB");
    assert_int_equal(csv_next(&rd, err, sizeof(err)), 1);
    assert_string_equal(csv_field(&rd, 0), "ok");
    fclose(f);
    for (i = 0; i < CSV_MAX_FIELDS; i++)
        big[i] = ',';
    memcpy(big + CSV_MAX_FIELDS, "\n", 2);
    f = text(big);
    assert_int_equal(csv_next(&rd, err, sizeof(err)), LJ_EPARSE);
    assert_string_equal(err, "more than 64 columns");
    fclose(f);
    free(big);
}

static void test_month_index_covers_the_validation_range(void **state)
{
    part_months m;

    (void)state;
    assert_int_equal(part_month_index(946684800000LL), 0);              /* 2000-01-01 */
    assert_int_equal(part_month_index(946684799999LL), -1);             /* 1999-12-31 */
    assert_int_equal(part_month_index(4102444799999LL), PART_MONTHS - 1); /* 2099-12-31 */
    assert_int_equal(part_month_index(4102444800000LL), -1);            /* 2100-01-01 */
    assert_int_equal(part_month_index(1299196800000LL), 11 * 12 + 2);   /* 2011-03-04 */
    memset(&m, 0, sizeof(m));
    part_months_add(&m, 1299196800000LL);
    part_months_add(&m, -5);
    assert_int_equal(m.bits[(11 * 12 + 2) / 8], 1u << ((11 * 12 + 2) % 8));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_quotes_and_line_numbers),
        cmocka_unit_test(test_bad_records_are_skipped_to_their_line_end),
        cmocka_unit_test(test_records_are_bounded),
        cmocka_unit_test(test_month_index_covers_the_validation_range),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
