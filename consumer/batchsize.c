#include "batchsize.h"

static int clamp(const batchsize *z, double n)
{
    if (n < z->min)
        return z->min;
    if (n > z->max)
        return z->max;
    return (int)n;
}

void batchsize_init(batchsize *z, int min, int max, int target_ms, int adaptive)
{
    z->max = max < 1 ? 1 : max;
    z->min = min < 1 ? 1 : min > z->max ? z->max : min;
    z->target_ms = target_ms;
    z->adaptive = adaptive;
    z->count = adaptive ? z->min : z->max;
}

int batchsize_update(batchsize *z, size_t got, long long lag, double took_ms)
{
    double next;

    if (!z->adaptive)
        return z->count;
    if (got == 0) {
        next = z->min;
    } else if (got < (size_t)z->count) {
        next = 2.0 * (double)got;
    } else {
        next = 2.0 * z->count;
        if (lag > 0 && (double)lag > next)
            next = (double)lag;
    }
    if (z->target_ms > 0 && got > 0 && took_ms > z->target_ms) {
        double fits = (double)got * z->target_ms / took_ms;

        if (fits < next)
            next = fits;
    }
    z->count = clamp(z, next);
    return z->count;
}
