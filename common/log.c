#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int log_min_level = LOG_INFO;
static const char *log_prog = "ljwx";

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_init(const char *prog, int level)
{
    log_prog = prog;
    log_min_level = level;
}

int log_level_parse(const char *s)
{
    static const char *const lower[] = {"debug", "info", "warn", "error"};
    int i;

    for (i = 0; i < 4; i++)
        if (strcmp(s, lower[i]) == 0)
            return i;
    return -1;
}

void log_write(int level, const char *module, const char *fmt, ...)
{
    char msg[1024];
    char stamp[32];
    struct timeval tv;
    struct tm tm;
    va_list ap;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (level < LOG_DEBUG || level > LOG_ERROR)
        level = LOG_ERROR;
    fprintf(stderr, "%s.%03dZ %s %s[%d] %s: %s\n", stamp, (int)(tv.tv_usec / 1000),
            level_names[level], log_prog, (int)getpid(), module, msg);
}
