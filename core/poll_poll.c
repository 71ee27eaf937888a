/*
 * poll_poll.c -- the poll(2) backend: the portable fallback, and a second
 * backend so that the loop tests exercise the portable layer twice.
 *
 * A dense pollfd array; each fd's index lives in its table entry (slot),
 * and removal swaps the last element in, so every change is O(1). After
 * poll() returns, the ready entries are copied with the generation each
 * fd has at that moment into a scratch array, and dispatched from there:
 * callbacks may then reshuffle the pollfd array freely, and an fd that is
 * unwatched (and maybe watched again) during the pass has a new generation
 * and loses its stale event, as with epoll. Both arrays grow only when a
 * new fd is added or before a wait, never per event. There is no backend
 * fd to hand to a host's poller.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>

#include "loop_internal.h"

typedef struct ready {
    int      fd;
    uint32_t gen;
    unsigned events;
} ready;

typedef struct poll_state {
    struct pollfd *pfds;
    int            n;
    int            cap;
    ready         *ready;
    int            rcap;
} poll_state;

static int pl_init(msk_loop *loop)
{
    poll_state *st = calloc(1, sizeof *st);

    if (st == NULL)
        return -ENOMEM;
    loop->be = st;
    return 0;
}

static void pl_fini(msk_loop *loop)
{
    poll_state *st = loop->be;

    free(st->pfds);
    free(st->ready);
    free(st);
    loop->be = NULL;
}

static short to_poll(unsigned mask)
{
    return (short)(((mask & MSK_READ) ? POLLIN : 0)
                 | ((mask & MSK_WRITE) ? POLLOUT : 0));
}

static int pl_set(msk_loop *loop, int fd, unsigned oldmask, unsigned newmask,
                  uint32_t gen)
{
    poll_state *st = loop->be;
    msk__io *e = &loop->io[fd];
    int i;

    (void)gen;
    if (oldmask == 0) {
        /* poll() would only say POLLNVAL later; fail now, as epoll does. */
        if (fcntl(fd, F_GETFD) < 0)
            return -errno;
        if (st->n == st->cap) {
            int cap = st->cap > 0 ? st->cap * 2 : 64;
            struct pollfd *p = realloc(st->pfds, (size_t)cap * sizeof *p);
            if (p == NULL)
                return -ENOMEM;
            st->pfds = p;
            st->cap = cap;
        }
        i = st->n++;
        st->pfds[i].fd = fd;
        st->pfds[i].events = to_poll(newmask);
        st->pfds[i].revents = 0;
        e->slot = i;
        return 0;
    }
    i = e->slot;
    if (newmask == 0) {
        st->n--;
        if (i != st->n) {
            st->pfds[i] = st->pfds[st->n];
            loop->io[st->pfds[i].fd].slot = i;
        }
        return 0;
    }
    st->pfds[i].events = to_poll(newmask);
    return 0;
}

static int pl_wait(msk_loop *loop, int timeout_ms)
{
    poll_state *st = loop->be;
    int n, i, nready = 0, ran = 0;

    /* Grown here, never during dispatch, because dispatch reads it. */
    if (st->rcap < st->n) {
        ready *r = realloc(st->ready, (size_t)st->cap * sizeof *r);
        if (r == NULL)
            return -ENOMEM;
        st->ready = r;
        st->rcap = st->cap;
    }
    n = poll(st->pfds, (nfds_t)st->n, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (i = 0; i < st->n && nready < n; i++) {
        short re = st->pfds[i].revents;
        unsigned ev = 0;
        int fd = st->pfds[i].fd;

        if (re == 0)
            continue;
        if (re & (POLLIN | POLLPRI))
            ev |= MSK_READ;
        if (re & POLLOUT)
            ev |= MSK_WRITE;
        if (re & (POLLERR | POLLHUP | POLLNVAL))
            ev |= MSK_ERROR;
        st->ready[nready].fd = fd;
        st->ready[nready].gen = loop->io[fd].gen;
        st->ready[nready].events = ev;
        nready++;
    }
    for (i = 0; i < nready; i++)
        ran += msk__io_dispatch(loop, st->ready[i].fd, st->ready[i].gen,
                                st->ready[i].events);
    return ran;
}

static int pl_fd(const msk_loop *loop)
{
    (void)loop;
    return -1;
}

const msk__backend msk__backend_poll = {
    "poll", pl_init, pl_fini, pl_set, pl_wait, pl_fd
};
