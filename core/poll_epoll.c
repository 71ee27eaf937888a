/*
 * poll_epoll.c -- the Linux epoll backend.
 *
 * Level-triggered epoll. Each registration stores (fd | gen << 32) in
 * data.u64, so an event collected for an fd that was unwatched (and
 * perhaps watched again by a new owner) earlier in the same pass carries
 * an old generation and is dropped by msk__io_dispatch(). loop.c calls
 * set() only when a mask really changes; an unwatch does EPOLL_CTL_DEL at
 * once, because the caller closes the fd next. The events array starts at
 * 256 and doubles when a wait fills it, so no pass allocates otherwise.
 * No edge-triggered mode, no EPOLLEXCLUSIVE.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/epoll.h>

#include "loop_internal.h"

#define EVENTS_INITIAL 256
#define EVENTS_MAX     8192

typedef struct epoll_state {
    int                 epfd;
    int                 cap;
    struct epoll_event *events;
} epoll_state;

static int ep_init(msk_loop *loop)
{
    epoll_state *st = malloc(sizeof *st);

    if (st == NULL)
        return -ENOMEM;
    st->cap = EVENTS_INITIAL;
    st->events = malloc((size_t)st->cap * sizeof *st->events);
    if (st->events == NULL) {
        free(st);
        return -ENOMEM;
    }
    st->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (st->epfd < 0) {
        int err = -errno;
        free(st->events);
        free(st);
        return err;
    }
    loop->be = st;
    return 0;
}

static void ep_fini(msk_loop *loop)
{
    epoll_state *st = loop->be;

    close(st->epfd);
    free(st->events);
    free(st);
    loop->be = NULL;
}

static int ep_set(msk_loop *loop, int fd, unsigned oldmask, unsigned newmask,
                  uint32_t gen)
{
    epoll_state *st = loop->be;
    struct epoll_event ev;
    int op;

    if (newmask == 0) {
        /* The fd may already be closed (EBADF) or was never added after
         * a close and reopen (ENOENT); either way it is out of the set. */
        if (epoll_ctl(st->epfd, EPOLL_CTL_DEL, fd, &ev) < 0
            && errno != ENOENT && errno != EBADF)
            return -errno;
        return 0;
    }
    ev.events = ((newmask & MSK_READ) ? EPOLLIN : 0)
              | ((newmask & MSK_WRITE) ? EPOLLOUT : 0);
    ev.data.u64 = (uint64_t)(uint32_t)fd | (uint64_t)gen << 32;
    op = oldmask == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(st->epfd, op, fd, &ev) == 0)
        return 0;
    /* Recover from an fd closed and reused without an unwatch in between,
     * which left the kernel's set and the table out of step. */
    if (op == EPOLL_CTL_ADD && errno == EEXIST)
        op = EPOLL_CTL_MOD;
    else if (op == EPOLL_CTL_MOD && errno == ENOENT)
        op = EPOLL_CTL_ADD;
    else
        return -errno;
    return epoll_ctl(st->epfd, op, fd, &ev) == 0 ? 0 : -errno;
}

static int ep_wait(msk_loop *loop, int timeout_ms)
{
    epoll_state *st = loop->be;
    int n, i, ran = 0;

    n = epoll_wait(st->epfd, st->events, st->cap, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;   /* a signal: end the pass */
    for (i = 0; i < n; i++) {
        uint32_t e = st->events[i].events;
        uint64_t u = st->events[i].data.u64;
        unsigned ev = 0;

        if (e & (EPOLLIN | EPOLLPRI))
            ev |= MSK_READ;
        if (e & EPOLLOUT)
            ev |= MSK_WRITE;
        if (e & (EPOLLERR | EPOLLHUP))
            ev |= MSK_ERROR;
        ran += msk__io_dispatch(loop, (int)(uint32_t)u, (uint32_t)(u >> 32),
                                ev);
    }
    /* A full array means more were ready: take more next time. */
    if (n == st->cap && st->cap < EVENTS_MAX) {
        struct epoll_event *p;
        p = realloc(st->events, (size_t)st->cap * 2 * sizeof *p);
        if (p != NULL) {
            st->events = p;
            st->cap *= 2;
        }
    }
    return ran;
}

static int ep_fd(const msk_loop *loop)
{
    const epoll_state *st = loop->be;

    return st->epfd;
}

const msk__backend msk__backend_epoll = {
    "epoll", ep_init, ep_fini, ep_set, ep_wait, ep_fd
};
