/* rlink.h -- the producer's asynchronous Redis link on a libuv loop.
 *
 * One hiredis async context to one server, so every request on the loop
 * pipelines its commands to that server over one connection (rcluster.h
 * holds one rlink per loop for one Redis, or one per master of a cluster). When the connection fails, drops or stops
 * answering (--redis-timeout-ms), or a connect does not complete in time
 * (--redis-connect-ms), the link reconnects by itself with
 * exponential backoff (100 ms .. 5 s); while it is down rlink_command()
 * refuses at once, so callers answer 503 (or fall back) instead of queueing.
 *
 * Loop thread only. hiredis frees replies after the callback returns: copy
 * what you keep. A callback gets a NULL reply when the link was lost.
 */
#ifndef LJ_PRODUCER_RLINK_H
#define LJ_PRODUCER_RLINK_H

#include <stddef.h>

#include <hiredis/hiredis.h>
#include <uv.h>

typedef struct rlink rlink;

/* Called once per command with its reply, or NULL when the link was lost. */
typedef void (*rlink_cb)(redisReply *reply, void *arg);

/* Starts connecting to 'host':'port' (AUTH with 'password' unless empty).
 * A host name is resolved on libuv's thread pool at every attempt, never on
 * the loop; a connect not complete after 'connect_ms' is abandoned and
 * retried. A command unanswered after 'timeout_ms' drops the link (every
 * waiting callback gets NULL) and a reconnect follows. Returns the link, or
 * NULL when out of memory. */
rlink *rlink_new(uv_loop_t *loop, const char *host, int port, const char *password,
                 unsigned timeout_ms, unsigned connect_ms);

/* Nonzero when connected and ready for commands. */
int rlink_ready(const rlink *l);

/* Sends one command of 'argc' arguments ('lens' bytes each). 0 when sent
 * ('cb' will be called exactly once; NULL 'cb': the reply is dropped),
 * LJ_EUNAVAIL when the link is down ('cb' is not called). */
int rlink_command(rlink *l, int argc, const char **argv, const size_t *lens, rlink_cb cb,
                  void *arg);

/* Nonzero when no command waits for its reply (shutdown waits for this,
 * within the command timeout, so the last XADDs are not cut off). */
int rlink_idle(const rlink *l);

/* Disconnects (pending callbacks get NULL) and releases the link once its
 * handles are closed; run the loop afterwards. */
void rlink_close(rlink *l);

#endif
