#include "err.h"

const char *lj_strerror(int code)
{
    switch (code) {
    case LJ_OK:
        return "ok";
#define XX(name, text) case LJ_##name: return text;
    LJ_ERR_MAP(XX)
#undef XX
    default:
        return "unknown error";
    }
}
