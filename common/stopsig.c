#include "stopsig.h"

#include <pthread.h>

#include "log.h"

void stopsig_block(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void stopsig_wait(const sigset_t *set, atomic_int *stop, const char *what)
{
    int sig;

    if (atomic_load(stop))
        return;
    sigwait(set, &sig);
    log_info("main", "signal %d: stopping %s", sig, what);
    atomic_store(stop, 1);
}
