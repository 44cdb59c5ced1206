/* Retention archive files: whole under the final name with a sha256sum
 * line beside it, nothing left behind on any failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "archive.h"
#include "err.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/ljwx-archive-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int entries(void)
{
    char cmd[128];
    char line[64];
    FILE *p;

    snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
    p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(line, sizeof(line), p));
    pclose(p);
    return atoi(line);
}

static char *slurp(const char *path)
{
    static char text[4096];
    FILE *f = fopen(path, "r");
    size_t n;

    assert_non_null(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

static void test_finished_archive_has_data_and_checksum(void **state)
{
    archive_file a;
    char path[256];

    (void)state;
    assert_int_equal(archive_open(&a, dir, "p.copy"), 0);
    assert_int_equal(archive_write(&a, "a", 1), 0);
    assert_int_equal(archive_write(&a, "bc", 2), 0);
    assert_int_equal(archive_finish(&a), 0);
    assert_string_equal(a.sha256,
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(a.bytes, 3);
    snprintf(path, sizeof(path), "%s/p.copy", dir);
    assert_string_equal(a.path, path);
    assert_string_equal(slurp(path), "abc");
    snprintf(path, sizeof(path), "%s/p.copy.sha256", dir);
    assert_string_equal(slurp(path),
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                        "  p.copy\n");
    assert_int_equal(entries(), 2);     /* no .partial left */
    archive_discard(&a);                /* e.g. the drop failed */
    assert_int_equal(entries(), 0);
    archive_discard(&a);                /* twice: a no-op */
}

static void test_unfinished_archive_is_removed(void **state)
{
    archive_file a;

    (void)state;
    assert_int_equal(archive_open(&a, dir, "q.copy"), 0);
    assert_int_equal(archive_write(&a, "xyz", 3), 0);
    assert_int_equal(entries(), 1);
    archive_discard(&a);
    assert_int_equal(entries(), 0);
}

static void test_bad_places_are_refused(void **state)
{
    archive_file a;
    char sub[128];
    char file[128];
    FILE *f;

    (void)state;
    assert_int_equal(archive_open(&a, dir, "../escape.copy"), LJ_EINVAL);
    archive_discard(&a);
    snprintf(sub, sizeof(sub), "%s/missing", dir);
    assert_int_equal(archive_open(&a, sub, "p.copy"), LJ_EIO);
    archive_discard(&a);
    /* a folder that is a file (what the integration test uses as root) */
    snprintf(file, sizeof(file), "%s/file", dir);
    f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(archive_open(&a, file, "p.copy"), LJ_EIO);
    archive_discard(&a);
    unlink(file);
    assert_int_equal(entries(), 0);
}

static void test_partial_of_another_writer_is_not_touched(void **state)
{
    archive_file a;
    archive_file b;

    (void)state;
    assert_int_equal(archive_open(&a, dir, "r.copy"), 0);
    assert_int_equal(archive_open(&b, dir, "r.copy"), LJ_EIO);     /* O_EXCL */
    archive_discard(&b);
    assert_int_equal(entries(), 1);     /* a's file is still there */
    assert_int_equal(archive_write(&a, "1", 1), 0);
    assert_int_equal(archive_finish(&a), 0);
    archive_discard(&a);
    assert_int_equal(entries(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_finished_archive_has_data_and_checksum, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unfinished_archive_is_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_places_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_of_another_writer_is_not_touched, setup,
                                        teardown),
    };

    return cmocka_run_group_tests_name("archive", tests, NULL, NULL);
}
