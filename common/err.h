/* err.h -- project-wide error codes.
 *
 * Every function that can fail returns 0 or a negative LJ_E* code. The one
 * LJ_ERR_MAP list yields both the enum and the text of lj_strerror(), so the
 * two can never drift apart.
 */
#ifndef LJ_COMMON_ERR_H
#define LJ_COMMON_ERR_H

#define LJ_ERR_MAP(XX)                                          \
    XX(EINVAL,   "invalid argument or input")                   \
    XX(ENOMEM,   "out of memory")                               \
    XX(EPARSE,   "malformed input")                             \
    XX(EDEPTH,   "nesting too deep")                            \
    XX(ETOOBIG,  "too large")                                   \
    XX(ENOREC,   "no valid record")                             \
    XX(EIO,      "I/O error")                                   \
    XX(EREDIS,   "redis error")                                 \
    XX(EPG,      "postgresql error")                            \
    XX(EUNAVAIL, "service unavailable")                         \
    XX(EPOISON,  "entry cannot be stored")                      \
    XX(ELIMIT,   "rate limit exceeded")                         \
    XX(ECONFLICT, "transaction conflict (deadlock or serialization), retry") \
    XX(ESTALE,   "read too long ago: read again")

enum lj_err {
    LJ_OK = 0,
#define XX(name, text) LJ_##name,
    LJ_ERR_FIRST_ = -100,
    LJ_ERR_MAP(XX)
#undef XX
};

/* Static text for 'code' (0 or an LJ_E* value); never NULL. */
const char *lj_strerror(int code);

#endif
