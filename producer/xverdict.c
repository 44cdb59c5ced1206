#include "xverdict.h"

xverdict xverdict_of(const redisReply *xadd, const redisReply *wait, unsigned need)
{
    if (xadd == NULL)
        return XV_LOST;
    if (xadd->type != REDIS_REPLY_STRING)
        return XV_REFUSED;
    if (need == 0)
        return XV_ADDED;
    if (wait == NULL || wait->type != REDIS_REPLY_INTEGER || wait->integer < 0)
        return XV_UNREPLICATED;
    return (unsigned long long)wait->integer >= need ? XV_ADDED : XV_UNREPLICATED;
}

unsigned xverdict_wait_ms(unsigned redis_timeout_ms)
{
    unsigned ms = redis_timeout_ms / 2;

    return ms > 0 ? ms : 1;
}
