/*
 * loop_internal.h -- struct msk_loop, the backend interface and the msk__
 * helpers shared by loop.c, the backends, timer.c and signal.c.
 *
 * The portable loop (loop.c) keeps an fd table indexed by fd and talks to
 * the kernel only through struct msk__backend, a table of five functions
 * that poll_epoll.c and poll_poll.c each provide. Timers (timer.c) and
 * signal state (signal.c) hang off the loop too. Nothing here is
 * installed or included by users of msk.h, and no platform type appears:
 * each backend keeps its own state behind loop->be.
 */
#ifndef MSK_LOOP_INTERNAL_H
#define MSK_LOOP_INTERNAL_H

#include <stdint.h>
#include <stddef.h>

#include "msk.h"

/* One entry of the fd table. gen changes every time the fd stops being
 * watched, so an event collected for a previous owner is recognised as
 * stale (the backends report it with the gen they recorded). */
typedef struct msk__io {
    msk_io_fn *fn;
    void      *udata;
    unsigned   mask;      /* MSK_READ | MSK_WRITE now watched, 0: none */
    uint32_t   gen;
    int        slot;      /* backend-private (poll: index in pollfds) */
} msk__io;

/* A backend. set() is called only when the mask really changes, with the
 * entry's current gen; it must finish with the kernel before returning,
 * because the caller may close the fd right after an unwatch. wait()
 * blocks at most timeout_ms (-1: no limit), then hands every event to
 * msk__io_dispatch() and returns how many callbacks ran, or -errno. */
typedef struct msk__backend {
    const char *name;
    int  (*init)(msk_loop *loop);
    void (*fini)(msk_loop *loop);
    int  (*set)(msk_loop *loop, int fd, unsigned oldmask, unsigned newmask,
                uint32_t gen);
    int  (*wait)(msk_loop *loop, int timeout_ms);
    int  (*fd)(const msk_loop *loop);
} msk__backend;

extern const msk__backend msk__backend_epoll;
extern const msk__backend msk__backend_poll;

/* One timer; see timer.c. */
typedef struct msk__timer {
    int64_t       deadline;  /* CLOCK_MONOTONIC ns */
    uint64_t      seq;       /* tie-break: order of (re)arming */
    int64_t       repeat;    /* ns, 0: one-shot */
    msk_timer_fn *fn;
    void         *udata;
    uint32_t      gen;       /* high half of the id; bumped on reuse */
    uint32_t      pos;       /* index in the heap, or next free slot */
    int           state;
} msk__timer;

typedef struct msk__signals msk__signals;   /* see signal.c */

struct msk_loop {
    const msk__backend *backend;
    void     *be;            /* backend state */

    msk__io  *io;            /* indexed by fd */
    int       nio;           /* entries allocated */
    int       max_fds;
    int       nwatched;      /* entries with mask != 0 */
    int       stop;

    /* Timers: slots addressed by id, and a min-heap of slot numbers. */
    msk__timer *timers;
    uint32_t    ntimers;     /* slots allocated */
    uint32_t    tfree;       /* first free slot, UINT32_MAX: none */
    uint32_t   *heap;
    uint32_t    nheap;
    uint32_t    heapcap;
    size_t      tcount;      /* live timers, running ones included */
    uint64_t    tseq;        /* next sequence number */

    msk__signals *sig;       /* NULL until a signal is watched */
    struct msk__procs *procs; /* proc.c; NULL until a child is spawned */
};

/* Hand one event from the backend to the fd's callback, unless gen shows
 * it belongs to an earlier owner or the fd is no longer watched. events
 * are MSK_* bits; MSK_ERROR widens to the watched mask. Returns 1 when a
 * callback ran, else 0. */
int  msk__io_dispatch(msk_loop *loop, int fd, uint32_t gen, unsigned events);

/* timer.c */
void msk__timer_fini(msk_loop *loop);
/* ms until the earliest timer, rounded up, clamped to INT_MAX; -1: none. */
int  msk__timer_next_ms(const msk_loop *loop);
/* Run due timers armed before sequence number limit; returns how many. */
int  msk__timer_run(msk_loop *loop, uint64_t limit);

/* signal.c: drop every signal watch of the loop, restoring each signal. */
void msk__signal_fini(msk_loop *loop);
/* proc.c: forget every child (they are not killed), before signal fini. */
void msk__proc_fini(msk_loop *loop);

#endif /* MSK_LOOP_INTERNAL_H */
