#include "archive.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "log.h"

/* Writes all of 'len' bytes to 'fd'. 0, or -1 with errno. */
static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* fsync of the folder, so that a rename in it is on disk. 0, or -1. */
static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static int fail(archive_file *a, const char *what, const char *path)
{
    log_error("archive", "%s %s: %s", what, path, strerror(errno));
    archive_discard(a);
    return LJ_EIO;
}

int archive_open(archive_file *a, const char *dir, const char *name)
{
    char *abs;

    memset(a, 0, sizeof(*a));
    a->fd = -1;
    if ((abs = realpath(dir, NULL)) == NULL) {
        log_error("archive", "cannot resolve folder %s: %s", dir, strerror(errno));
        return LJ_EIO;
    }
    if (snprintf(a->dir, sizeof(a->dir), "%s", abs) >= (int)sizeof(a->dir))
        a->dir[0] = '\0';
    free(abs);
    if (!a->dir[0] || strchr(name, '/') ||
        snprintf(a->path, sizeof(a->path), "%s/%s", a->dir, name) >= (int)sizeof(a->path) ||
        snprintf(a->partial, sizeof(a->partial), "%s.partial", a->path) >=
            (int)sizeof(a->partial) ||
        snprintf(a->sum_path, sizeof(a->sum_path), "%s.sha256", a->path) >=
            (int)sizeof(a->sum_path)) {
        log_error("archive", "archive path too long or bad name=%s", name);
        a->partial[0] = a->path[0] = a->sum_path[0] = '\0';
        return LJ_EINVAL;
    }
    a->fd = open(a->partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (a->fd < 0) {
        log_error("archive", "cannot create %s: %s", a->partial, strerror(errno));
        a->partial[0] = '\0';   /* not ours: never removed */
        return LJ_EIO;
    }
    sha256_init(&a->sha);
    return 0;
}

int archive_write(void *arg, const char *data, size_t len)
{
    archive_file *a = arg;

    if (a->fd < 0)
        return LJ_EIO;
    if (write_all(a->fd, data, len) != 0)
        return fail(a, "cannot write", a->partial);
    sha256_update(&a->sha, data, len);
    a->bytes += (long long)len;
    return 0;
}

/* DIR/NAME.sha256, as sha256sum prints it, fsynced. 0, or -1 with errno. */
static int write_sum(const archive_file *a)
{
    const char *name = a->path + strlen(a->dir) + 1;
    char line[ARCHIVE_PATH_MAX + SHA256_HEX_LEN + 8];
    int fd = open(a->sum_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    int n;
    int rc;

    if (fd < 0)
        return -1;
    n = snprintf(line, sizeof(line), "%s  %s\n", a->sha256, name);
    rc = write_all(fd, line, (size_t)n) == 0 && fsync(fd) == 0 ? 0 : -1;
    if (close(fd) != 0)
        rc = -1;
    return rc;
}

int archive_finish(archive_file *a)
{
    if (a->fd < 0)
        return LJ_EIO;
    sha256_hex(&a->sha, a->sha256);
    if (fsync(a->fd) != 0)
        return fail(a, "cannot fsync", a->partial);
    if (close(a->fd) != 0) {
        a->fd = -1;
        return fail(a, "cannot close", a->partial);
    }
    a->fd = -1;
    if (rename(a->partial, a->path) != 0)
        return fail(a, "cannot rename", a->partial);
    a->finished = 1;
    if (write_sum(a) != 0)
        return fail(a, "cannot write", a->sum_path);
    if (sync_dir(a->dir) != 0)
        return fail(a, "cannot fsync folder", a->dir);
    return 0;
}

void archive_discard(archive_file *a)
{
    if (a->fd >= 0) {
        close(a->fd);
        a->fd = -1;
    }
    if (a->partial[0] && !a->finished)
        unlink(a->partial);
    if (a->finished) {
        unlink(a->path);
        unlink(a->sum_path);
        a->finished = 0;
    }
    a->partial[0] = '\0';
}
