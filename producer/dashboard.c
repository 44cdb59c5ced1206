#include "dashboard.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "log.h"

/* Sent with every answer. 'self' only: the page keeps all script and style
 * in its own files, and no other site may frame its admin buttons. */
#define DASH_HEADERS                                                            \
    "Cache-Control: no-cache\r\n"                                               \
    "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'\r\n"   \
    "X-Content-Type-Options: nosniff\r\n"                                       \
    "Referrer-Policy: no-referrer\r\n"

enum dash_source { DASH_WEB_DIR, DASH_CHARTJS };

enum dash_file_id { DASH_INDEX, DASH_JS, DASH_CSS, DASH_CHART, DASH_FILES };

/* One file of the page; 'data' is owned here and NULL when not loaded. */
typedef struct dash_file {
    enum dash_source source;
    const char *name;           /* under --web-dir; unused for DASH_CHARTJS */
    const char *type;
    char *data;
    size_t len;
} dash_file;

static dash_file files[DASH_FILES] = {
    [DASH_INDEX] = {DASH_WEB_DIR, "index.html", "text/html; charset=utf-8", NULL, 0},
    [DASH_JS] = {DASH_WEB_DIR, "dashboard.js", "text/javascript; charset=utf-8", NULL, 0},
    [DASH_CSS] = {DASH_WEB_DIR, "dashboard.css", "text/css; charset=utf-8", NULL, 0},
    [DASH_CHART] = {DASH_CHARTJS, NULL, "text/javascript; charset=utf-8", NULL, 0},
};

/* The whitelist: exact request paths, nothing else reaches a file. */
static const struct {
    const char *path;
    enum dash_file_id file;
} urls[] = {
    {"/dashboard", DASH_INDEX},
    {"/dashboard/", DASH_INDEX},
    {"/dashboard/index.html", DASH_INDEX},
    {"/dashboard/dashboard.js", DASH_JS},
    {"/dashboard/dashboard.css", DASH_CSS},
    {"/dashboard/chart.js", DASH_CHART},
};

#define N_URLS (sizeof(urls) / sizeof(urls[0]))

/* ------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------ */

/* Reads the whole regular file 'path' into a new buffer: 0 with '*out'
 * (caller frees) and '*len'; LJ_EIO (missing, unreadable, not a regular
 * file), LJ_ETOOBIG (over DASHBOARD_MAX_FILE) or LJ_ENOMEM. */
static int read_whole(const char *path, char **out, size_t *len)
{
    struct stat st;
    char *data = NULL;
    size_t got = 0;
    ssize_t n = 0;
    int fd;
    int rc;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return LJ_EIO;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = LJ_EIO;
        goto close_fd;
    }
    if ((unsigned long long)st.st_size > DASHBOARD_MAX_FILE) {
        rc = LJ_ETOOBIG;
        goto close_fd;
    }
    if ((data = malloc((size_t)st.st_size + 1)) == NULL) {
        rc = LJ_ENOMEM;
        goto close_fd;
    }
    while (got < (size_t)st.st_size) {
        n = read(fd, data + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;      /* shrank meanwhile: serve what was there */
        got += (size_t)n;
    }
    if (n < 0) {
        rc = LJ_EIO;
        goto free_data;
    }
    data[got] = '\0';
    *out = data;
    *len = got;
    rc = 0;
    goto close_fd;
free_data:
    free(data);
close_fd:
    close(fd);
    return rc;
}

/* The file system path of 'f' under 'cfg' into 'out'; LJ_ETOOBIG if too long. */
static int file_path(const lj_config *cfg, const dash_file *f, char *out, size_t outlen)
{
    int n;

    if (f->source == DASH_CHARTJS)
        n = snprintf(out, outlen, "%s", cfg->chartjs_path);
    else
        n = snprintf(out, outlen, "%s/%s", cfg->web_dir, f->name);
    return n < 0 || (size_t)n >= outlen ? LJ_ETOOBIG : 0;
}

/* Loads 'f'. 0 also when the file is missing (logged); LJ_ENOMEM otherwise. */
static int load_one(const lj_config *cfg, dash_file *f)
{
    char path[PATH_MAX];
    int rc;

    if ((rc = file_path(cfg, f, path, sizeof(path))) == 0)
        rc = read_whole(path, &f->data, &f->len);
    if (rc == LJ_ENOMEM)
        return rc;
    if (rc != 0) {
        log_warn("dashboard", "not serving %s: %s (check --web-dir, --chartjs-path)", path,
                 lj_strerror(rc));
        return 0;
    }
    log_debug("dashboard", "loaded %s bytes=%zu", path, f->len);
    return 0;
}

int dashboard_init(const lj_config *cfg)
{
    int i;

    for (i = 0; i < DASH_FILES; i++) {
        if (load_one(cfg, &files[i]) != 0) {
            dashboard_cleanup();
            log_error("dashboard", "out of memory loading the dashboard");
            return LJ_ENOMEM;
        }
    }
    return 0;
}

void dashboard_cleanup(void)
{
    int i;

    for (i = 0; i < DASH_FILES; i++) {
        free(files[i].data);
        files[i].data = NULL;
        files[i].len = 0;
    }
}

/* ------------------------------------------------------------------------
 * Serving
 * ------------------------------------------------------------------------ */

int dashboard_owns(const char *path)
{
    return strncmp(path, "/dashboard", 10) == 0 && (path[10] == '\0' || path[10] == '/');
}

/* The whitelisted file for exactly 'path' (loaded or not), or NULL. */
static const dash_file *lookup(const char *path)
{
    size_t i;

    for (i = 0; i < N_URLS; i++)
        if (strcmp(urls[i].path, path) == 0)
            return &files[urls[i].file];
    return NULL;
}

void dashboard_serve(http_request *req)
{
    static const char missing[] = "{\"status\":\"error\",\"message\":\"no such dashboard file\"}";
    static const char get_only[] = "{\"status\":\"error\",\"message\":\"method not allowed\"}";
    const dash_file *f = lookup(req->path);

    if (f != NULL && req->method != HTTP_GET)
        http_respond(req, 405, DASH_HEADERS "Allow: GET\r\n", get_only, sizeof(get_only) - 1);
    else if (f == NULL || f->data == NULL)
        http_respond(req, 404, DASH_HEADERS, missing, sizeof(missing) - 1);
    else
        http_respond_typed(req, 200, f->type, DASH_HEADERS, f->data, f->len);
}
