/* archive.h -- one retention archive file: the COPY text of a partition,
 * written so that a file under its final name is whole and on disk.
 *
 *     archive_open(&a, dir, name)      DIR/NAME.partial, created (O_EXCL, 0640)
 *     archive_write(&a, data, len)     ... each COPY chunk (a pg_copy_sink);
 *                                      counts the bytes and the SHA-256
 *     archive_finish(&a)               fsync, rename to DIR/NAME, then
 *                                      DIR/NAME.sha256 ("<hex>  NAME\n", as
 *                                      sha256sum -c reads it), fsync of both
 *                                      and of DIR
 *     archive_discard(&a)              removes what was written (partial or
 *                                      finished), e.g. when the drop failed
 *
 * After a failure of open, write or finish nothing is left in DIR and the
 * reason is logged (with the path, never data). The caller owns 'a'
 * (embedded); archive_discard() on a closed or discarded one is a no-op.
 * Blocking file I/O; one thread per archive.
 */
#ifndef LJ_CONSUMER_ARCHIVE_H
#define LJ_CONSUMER_ARCHIVE_H

#include <stddef.h>

#include "sha256.h"

#define ARCHIVE_PATH_MAX 1024

typedef struct archive_file {
    int fd;                             /* -1 once closed */
    int finished;                       /* renamed to 'path' */
    char partial[ARCHIVE_PATH_MAX];
    char path[ARCHIVE_PATH_MAX];        /* DIR/NAME */
    char sum_path[ARCHIVE_PATH_MAX];    /* DIR/NAME.sha256 */
    char dir[ARCHIVE_PATH_MAX];         /* DIR, made absolute */
    sha256_ctx sha;
    long long bytes;
    char sha256[SHA256_HEX_LEN + 1];    /* set by archive_finish() */
} archive_file;

/* Creates DIR/NAME.partial ('name': no '/'; DIR must exist and is made
 * absolute, so 'a'->path names the file from anywhere). 0; LJ_EINVAL when
 * the paths do not fit or 'name' has a '/'; LJ_EIO when DIR cannot be
 * resolved or the file cannot be created (not writable, exists, ...). */
int archive_open(archive_file *a, const char *dir, const char *name);

/* Appends 'len' bytes. 0, or LJ_EIO (the partial file is removed). 'arg'
 * is the archive_file (the pg_copy_sink signature). */
int archive_write(void *arg, const char *data, size_t len);

/* Makes the file durable under its final name, with its .sha256 beside
 * it; 'a'->sha256 and 'a'->bytes describe it. 0, or LJ_EIO (everything
 * written removed). */
int archive_finish(archive_file *a);

/* Removes the file (partial or final) and its .sha256; closes it. */
void archive_discard(archive_file *a);

#endif
