#include "clock.h"

#include <stdio.h>
#include <sys/time.h>
#include <time.h>

int64_t clock_wall_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void clock_iso_at(int64_t ms, char *out, size_t len)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    char day[24];

    gmtime_r(&sec, &tm);
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%03d+00:00", day, (int)(ms % 1000));
}

void clock_iso_now(char *out, size_t len)
{
    clock_iso_at(clock_wall_ms(), out, len);
}
