/* log.h -- levelled, one-line-per-event logging to stderr.
 *
 * Line format:  2025-05-01T08:00:00.123Z INFO producer[812] ingest: msg k=v
 * The level check happens before any formatting, so a disabled log_debug()
 * costs one comparison. Safe from any thread (one fprintf per line).
 * Never log secrets (tokens, passwords, DSNs).
 */
#ifndef LJ_COMMON_LOG_H
#define LJ_COMMON_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

extern int log_min_level;

/* 'prog' is the process label (static string). */
void log_init(const char *prog, int level);
/* Parses "debug", "info", "warn", "error"; returns -1 when unknown. */
int log_level_parse(const char *s);
void log_write(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_at(lvl, mod, ...)                          \
    do {                                               \
        if ((lvl) >= log_min_level)                    \
            log_write((lvl), (mod), __VA_ARGS__);      \
    } while (0)
#define log_debug(mod, ...) log_at(LOG_DEBUG, mod, __VA_ARGS__)
#define log_info(mod, ...)  log_at(LOG_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...)  log_at(LOG_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_at(LOG_ERROR, mod, __VA_ARGS__)

#endif
