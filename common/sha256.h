/* sha256.h -- SHA-256 (FIPS 180-4), for the checksums of retention archives.
 *
 * A small streaming implementation, so that checksumming a file needs no
 * library beyond libc (the output is the hex digest sha256sum(1) prints).
 * Pure and reentrant: a context belongs to its caller; any thread.
 *
 *     sha256_ctx c;
 *     sha256_init(&c);
 *     sha256_update(&c, data, len);      ... any number of times
 *     sha256_hex(&c, hex);               -- 64 hex digits and a NUL
 */
#ifndef LJ_COMMON_SHA256_H
#define LJ_COMMON_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_HEX_LEN 64

typedef struct sha256_ctx {
    uint32_t h[8];
    uint64_t bytes;         /* message length so far */
    uint8_t block[64];
    size_t used;            /* bytes of 'block' filled */
} sha256_ctx;

/* Starts a digest in 'c' (embedded; nothing to free). */
void sha256_init(sha256_ctx *c);

/* Adds 'len' bytes of 'data' ('data' may be NULL when 'len' is 0). */
void sha256_update(sha256_ctx *c, const void *data, size_t len);

/* Ends the digest and writes it to 'out' as 64 lower-case hex digits and a
 * NUL (SHA256_HEX_LEN + 1 bytes). 'c' must be initialised again for reuse. */
void sha256_hex(sha256_ctx *c, char out[SHA256_HEX_LEN + 1]);

#endif
