/* admin.h -- gray-release control (SPEC §4) and its authentication.
 *
 *   GET  /api/stream_traffic_ratio   {"current_ratio":r,"description":..,
 *                                     "legacy_path":"on"|"retired"}
 *   POST /api/stream_traffic_ratio   {"ratio":x} -> old and new ratio   (admin)
 *   POST /api/emergency_rollback     ratio 0 everywhere at once, and the
 *                                    legacy path on again                (admin)
 *   POST /api/legacy_path            {"enabled":false} retires the legacy
 *                                    path (409 unless ratio 1 here),
 *                                    {"enabled":true} restores it       (admin)
 *
 * While the legacy path is retired, a ratio below 1 is refused (409): it
 * would not route anything back. Redis down: 503 + Retry-After, nothing
 * changed.
 *
 * Admin calls need "Authorization: Bearer <token>" when --admin-token is
 * set (compared in constant time; 401 without, 403 when wrong); with no
 * token configured only loopback clients may call them (403 otherwise).
 * Every change is appended to t_stream_ratio_audit (old, new, time, caller
 * address; a legacy switch change as its own row with the ratio unchanged
 * and reason legacy_retired / legacy_restored) from a pool thread, after
 * the answer. Loop thread only.
 */
#ifndef LJ_PRODUCER_ADMIN_H
#define LJ_PRODUCER_ADMIN_H

#include <uv.h>

#include "config.h"
#include "gray.h"
#include "http_server.h"

/* Nonzero when 'req' may call admin endpoints; otherwise it has been
 * answered (401/403). With a token configured the token decides (401 when
 * absent, 403 when wrong). Without one only a loopback client whose request
 * carries no forwarding header is admitted (a proxy on this host makes every
 * client loopback): 403 otherwise. */
int admin_authorized(const lj_config *cfg, http_request *req);

void admin_get_ratio(gray *g, http_request *req);
void admin_set_ratio(uv_loop_t *loop, const lj_config *cfg, gray *g, http_request *req);
void admin_rollback(uv_loop_t *loop, const lj_config *cfg, gray *g, http_request *req);
void admin_set_legacy(uv_loop_t *loop, const lj_config *cfg, gray *g, http_request *req);

#endif
