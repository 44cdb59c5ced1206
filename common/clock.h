/* clock.h -- wall-clock time as the APIs show it.
 *
 * clock_wall_ms(): milliseconds since the epoch (gettimeofday).
 * clock_iso_now(), clock_iso_at(): a time as ISO 8601 in UTC with milliseconds and
 * an explicit offset, "2026-12-02T15:14:16.006+00:00": the form every ISO
 * reader parses (Python's datetime.fromisoformat before 3.11 refuses "Z").
 */
#ifndef LJ_COMMON_CLOCK_H
#define LJ_COMMON_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#define CLOCK_ISO_MAX 40

int64_t clock_wall_ms(void);

/* Writes 'ms' (since the epoch) / the current time into 'out'
 * (CLOCK_ISO_MAX bytes suffice). */
void clock_iso_at(int64_t ms, char *out, size_t len);
void clock_iso_now(char *out, size_t len);

#endif
