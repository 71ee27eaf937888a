/*
 * loop.c -- the portable half of the event loop: backend selection, the fd
 * table, watch/unwatch, and the pass that waits, dispatches fd events and
 * then runs due timers.
 *
 * Built on a backend (poll_epoll.c or poll_poll.c, chosen at run time) and
 * on timer.c. The fd table is an array indexed by fd, grown on demand up
 * to max_fds; re-watching an fd with the mask it already has touches no
 * syscall. Each entry carries a generation so events for an fd that was
 * unwatched during the pass are dropped. No Lua, no signals (signal.c), no
 * before/after-sleep hooks.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "loop_internal.h"

#define IO_INITIAL 64

static const msk__backend *pick_backend(int which, int *err)
{
    const char *env;

    *err = 0;
    if (which == MSK_BACKEND_EPOLL)
        return &msk__backend_epoll;
    if (which == MSK_BACKEND_POLL)
        return &msk__backend_poll;
    if (which != MSK_BACKEND_AUTO) {
        *err = -EINVAL;
        return NULL;
    }
    env = getenv("MSK_BACKEND");
    if (env != NULL && env[0] != '\0') {
        if (strcmp(env, "epoll") == 0)
            return &msk__backend_epoll;
        if (strcmp(env, "poll") == 0)
            return &msk__backend_poll;
        *err = -EINVAL;
        return NULL;
    }
#if defined(MSK_DEFAULT_BACKEND) && MSK_DEFAULT_BACKEND == 2
    return &msk__backend_poll;
#else
    return &msk__backend_epoll;
#endif
}

static int default_max_fds(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY
        || rl.rlim_cur > (rlim_t)INT_MAX)
        return 1 << 20;
    return rl.rlim_cur > 0 ? (int)rl.rlim_cur : 1;
}

int msk_loop_new(msk_loop **loopp, const msk_loop_opts *opts)
{
    msk_loop *loop;
    const msk__backend *be;
    int err;

    *loopp = NULL;
    be = pick_backend(opts != NULL ? opts->backend : 0, &err);
    if (be == NULL)
        return err;
    loop = calloc(1, sizeof *loop);
    if (loop == NULL)
        return -ENOMEM;
    loop->backend = be;
    loop->max_fds = opts != NULL && opts->max_fds > 0 ? opts->max_fds
                                                      : default_max_fds();
    loop->tfree = UINT32_MAX;
    loop->tseq = 1;
    err = be->init(loop);
    if (err < 0) {
        free(loop);
        return err;
    }
    *loopp = loop;
    return 0;
}

void msk_loop_free(msk_loop *loop)
{
    if (loop == NULL)
        return;
    msk__proc_fini(loop);       /* unwatches SIGCHLD */
    msk__signal_fini(loop);     /* unwatches its fd, so before fini */
    loop->backend->fini(loop);
    msk__timer_fini(loop);
    free(loop->io);
    free(loop);
}

const char *msk_loop_backend(const msk_loop *loop)
{
    return loop->backend->name;
}

void msk_loop_stop(msk_loop *loop)
{
    loop->stop = 1;
}

int msk_loop_stopped(const msk_loop *loop)
{
    return loop->stop;
}

int msk_loop_fd(const msk_loop *loop)
{
    return loop->backend->fd(loop);
}

int msk_loop_timeout(const msk_loop *loop)
{
    return msk__timer_next_ms(loop);
}

int msk_loop_step(msk_loop *loop, int timeout_ms)
{
    /* Timers armed from now on, even with ms <= 0, wait for the next pass:
     * a timer that re-adds itself cannot keep this pass going forever. */
    uint64_t limit = loop->tseq;
    int next, ran, rc;

    if (timeout_ms < 0 && loop->nwatched == 0 && loop->nheap == 0)
        return 0;               /* nothing could ever wake us */
    next = msk__timer_next_ms(loop);
    if (next >= 0 && (timeout_ms < 0 || next < timeout_ms))
        timeout_ms = next;
    ran = loop->backend->wait(loop, timeout_ms);
    if (ran < 0)
        return ran;
    if (loop->nheap > 0) {
        rc = msk__timer_run(loop, limit);
        ran += rc;
    }
    return ran;
}

int msk_loop_run(msk_loop *loop)
{
    int rc = 0;

    loop->stop = 0;
    while (!loop->stop && (loop->nwatched > 0 || loop->nheap > 0)) {
        rc = msk_loop_step(loop, -1);
        if (rc < 0)
            break;
        rc = 0;
    }
    loop->stop = 0;
    return rc;
}

/* Make room for fd in the table. Only ever grows; new entries start
 * unwatched with generation 0. Small tables double; one that would pass
 * IO_WHOLE entries is made max_fds long at once, with calloc: a block
 * that large is fresh zero pages from mmap, which cost no memory until
 * an fd on them is watched, where doubling would zero, and so touch,
 * every new entry (20 bytes of RSS a connection at 10,000 connections). */
#define IO_WHOLE 4096

static int io_grow(msk_loop *loop, int fd)
{
    msk__io *io;
    size_t n = loop->nio > 0 ? (size_t)loop->nio : IO_INITIAL;

    while (n <= (size_t)fd)
        n *= 2;
    if (n > IO_WHOLE)
        n = (size_t)loop->max_fds;
    if (n > (size_t)loop->max_fds)
        n = (size_t)loop->max_fds;
    io = calloc(n, sizeof *io);
    if (io == NULL)
        return -ENOMEM;
    if (loop->nio > 0)
        memcpy(io, loop->io, (size_t)loop->nio * sizeof *io);
    free(loop->io);
    loop->io = io;
    loop->nio = (int)n;
    return 0;
}

int msk_io_watch(msk_loop *loop, int fd, unsigned mask, msk_io_fn *fn,
                 void *udata)
{
    msk__io *e;
    int rc;

    mask &= MSK_READ | MSK_WRITE;
    if (fd < 0)
        return -EBADF;
    if (fd >= loop->max_fds)
        return -ERANGE;
    if (mask == 0) {
        msk_io_unwatch(loop, fd);
        return 0;
    }
    if (fn == NULL)
        return -EINVAL;
    if (fd >= loop->nio && (rc = io_grow(loop, fd)) < 0)
        return rc;
    e = &loop->io[fd];
    /* The hot path: the same mask again costs no syscall. */
    if (e->mask != mask) {
        rc = loop->backend->set(loop, fd, e->mask, mask, e->gen);
        if (rc < 0)
            return rc;
        if (e->mask == 0)
            loop->nwatched++;
        e->mask = mask;
    }
    e->fn = fn;
    e->udata = udata;
    return 0;
}

void msk_io_unwatch(msk_loop *loop, int fd)
{
    msk__io *e;

    if (fd < 0 || fd >= loop->nio || loop->io[fd].mask == 0)
        return;
    e = &loop->io[fd];
    (void)loop->backend->set(loop, fd, e->mask, 0, e->gen);
    e->mask = 0;
    e->fn = NULL;
    e->udata = NULL;
    e->gen++;                   /* events already collected are stale */
    loop->nwatched--;
}

unsigned msk_io_mask(const msk_loop *loop, int fd)
{
    if (fd < 0 || fd >= loop->nio)
        return 0;
    return loop->io[fd].mask;
}

int msk__io_dispatch(msk_loop *loop, int fd, uint32_t gen, unsigned events)
{
    msk__io *e;
    unsigned ev;

    if (fd < 0 || fd >= loop->nio)
        return 0;
    e = &loop->io[fd];
    if (e->gen != gen || e->mask == 0)
        return 0;
    /* An error or hang-up wakes whatever is watched, so a reader sees the
     * end of stream and a writer sees the failure. */
    if (events & MSK_ERROR)
        ev = e->mask | MSK_ERROR;
    else
        ev = events & e->mask;
    if ((ev & (MSK_READ | MSK_WRITE)) == 0)
        return 0;
    e->fn(loop, fd, ev, e->udata);
    return 1;
}
