/* dashboard.h -- the live operations page's static files (docs/dashboard.md).
 *
 *   GET /dashboard, /dashboard/, /dashboard/index.html   index.html
 *   GET /dashboard/dashboard.js                          the page's script
 *   GET /dashboard/dashboard.css                         its style sheet
 *   GET /dashboard/chart.js                              Chart.js (Debian's libjs-chart.js)
 *
 * A fixed whitelist: the request path is only compared with the strings
 * above, never joined to a file name, so no request can reach another file
 * ("..", "%2e%2e" and every other spelling simply match nothing: 404). The
 * page itself reads the public JSON endpoints (ops.h, admin.h) from the
 * browser; this module serves files and nothing else.
 *
 * Every answer, 404 included, carries Cache-Control: no-cache, a
 * Content-Security-Policy allowing only this origin (no inline script, no
 * framing) and X-Content-Type-Options: nosniff.
 *
 * Threads and ownership: dashboard_init() reads the files (from --web-dir
 * and --chartjs-path) into memory it owns, once, before any loop thread
 * starts; afterwards they are read-only, so every loop thread may serve
 * them without a lock. dashboard_cleanup() frees them after the loops end.
 * A file missing or unreadable at start is logged and answered 404 until
 * the producer restarts.
 */
#ifndef LJ_PRODUCER_DASHBOARD_H
#define LJ_PRODUCER_DASHBOARD_H

#include "config.h"
#include "http_server.h"

/* Largest file served; a bigger one is refused at start (logged). */
#define DASHBOARD_MAX_FILE (8u << 20)

/* Reads every whitelisted file named by 'cfg' (borrowed, not kept).
 * Returns 0, also when some files are missing (each is logged and then
 * answered 404); LJ_ENOMEM when memory ran out (nothing is kept then). */
int dashboard_init(const lj_config *cfg);

/* Frees what dashboard_init() read. Safe to call when init failed or never ran. */
void dashboard_cleanup(void);

/* 1 when 'path' is "/dashboard" or lies under "/dashboard/": the dashboard
 * answers it (the router has no other list of its paths), with a file, a
 * 405 or a 404, all bearing the same security headers. */
int dashboard_owns(const char *path);

/* Answers 'req', whose path dashboard_owns(): the file mapped to req->path
 * exactly; 405 (Allow: GET) for another method on a whitelisted path; else
 * 404. The response body is copied by the server. */
void dashboard_serve(http_request *req);

#endif
